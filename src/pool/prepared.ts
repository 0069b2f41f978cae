/* Protocol-level prepared statements in transaction and statement pooling.
 *
 * A client's named statement is mapped to one pooler-wide statement per distinct (query text, parameter types),
 * which has its own server-side name (PGTIDE_<n>). A server prepares it the first time a client that uses it is
 * linked to that server and binds or describes it; each server keeps at most max_prepared_statements and evicts the
 * least recently used with Close. Every request sent to a server in these modes is recorded in the server's
 * ReplyQueue, so the replies the client did not ask for (ParseComplete of a re-prepare, CloseComplete of an
 * eviction) can be hidden, and the ones the pooler answers itself (ParseComplete of a statement the server already
 * has) are inserted at the right place. */

import { BE, FE } from '../protocol/codes.js';
import { readsSequenceState } from './session-state.js';

/** Prefix of the statement names pgtide uses on servers. */
export const SERVER_NAME_PREFIX = 'PGTIDE_';
/** The name a ParseCheck prepares under, closed again at once. */
const CHECK_NAME_Z = Buffer.from(`${SERVER_NAME_PREFIX}CHECK\0`, 'latin1');

/** Close('S', name), the name given as a C string. */
function closeStatementMsg(nameZ: Buffer): Buffer {
  const msg = Buffer.allocUnsafe(1 + 4 + 1 + nameZ.length);
  msg[0] = FE.Close;
  msg.writeUInt32BE(msg.length - 1, 1);
  msg[5] = 0x53; // 'S'
  nameZ.copy(msg, 6);
  return msg;
}

/** Close('S', CHECK_NAME). */
export const CLOSE_CHECK = closeStatementMsg(CHECK_NAME_Z);

/** ParseComplete, answered by the pooler when the server already has the statement. */
export const PARSE_COMPLETE = Buffer.from([BE.ParseComplete, 0, 0, 0, 4]);

export class Stmt {
  /** Client names mapped to this statement, across all clients. */
  clientRefs = 0;
  /** Servers that have it prepared. */
  serverRefs = 0;
  /** Batches sent again after the server's copy failed (stale plan after DDL, or gone). */
  retries = 0;
  /** Whether running it may leave session state (session-state.ts Hazard), once looked at; -1 = not yet. */
  hazard = -1;
  /** Its text calls currval() or lastval() (session-state.ts readsSequenceState). */
  readonly readsSequence: boolean;
  /** Server-side name. */
  readonly name: string;
  /** The name as a C string, for rewriting Bind/Describe. */
  readonly nameZ: Buffer;
  /** The Parse message that prepares it on a server. */
  readonly parseMsg: Buffer;

  constructor(
    readonly id: number,
    /** Query text, NUL, parameter count and types, as the client sent them (latin1: one char per byte). */
    readonly key: string,
  ) {
    this.name = SERVER_NAME_PREFIX + id;
    this.nameZ = Buffer.from(this.name + '\0', 'latin1');
    const body = Buffer.from(key, 'latin1');
    const msg = Buffer.allocUnsafe(1 + 4 + this.nameZ.length + body.length);
    msg[0] = FE.Parse;
    msg.writeUInt32BE(msg.length - 1, 1);
    this.nameZ.copy(msg, 5);
    body.copy(msg, 5 + this.nameZ.length);
    this.parseMsg = msg;
    const textAt = 5 + this.nameZ.length;
    this.readsSequence = readsSequenceState(msg, textAt, queryEnd(msg, textAt, msg.length));
  }

  /** The query text (for SHOW PREPARED_STATEMENTS). */
  get query(): string {
    const nul = this.key.indexOf('\0');
    return Buffer.from(nul >= 0 ? this.key.slice(0, nul) : this.key, 'latin1').toString('utf8');
  }

  /** parseMsg under CHECK_NAME (a ParseCheck). */
  checkParseMsg(): Buffer {
    return withName(this.parseMsg, 0, this.parseMsg.length, 5, 5 + this.nameZ.length, CHECK_NAME_Z);
  }

  /** Close('S', name) for evicting it from a server. */
  closeMsg(): Buffer {
    return closeStatementMsg(this.nameZ);
  }
}

/** Every statement some client or server holds, by query text and parameter types. */
export class StmtRegistry {
  private readonly byKey = new Map<string, Stmt>();
  private nextId = 1;
  /** Some statement ever made reads sequence values: Binds are then looked at when a client gets a server. */
  sequenceReaders = false;

  /** The statement for the Parse body bytes buf[start..end) (after the statement name). */
  intern(buf: Buffer, start: number, end: number): Stmt {
    const key = buf.toString('latin1', start, end);
    let s = this.byKey.get(key);
    if (!s) {
      s = new Stmt(this.nextId++, key);
      this.byKey.set(key, s);
      if (s.readsSequence) this.sequenceReaders = true;
    }
    return s;
  }

  /** A client name / a server let go of the statement; it is forgotten once nobody holds it. */
  unrefClient(s: Stmt): void {
    s.clientRefs--;
    this.drop(s);
  }

  unrefServer(s: Stmt): void {
    s.serverRefs--;
    this.drop(s);
  }

  private drop(s: Stmt): void {
    if (s.clientRefs === 0 && s.serverRefs === 0 && this.byKey.get(s.key) === s) this.byKey.delete(s.key);
  }

  get size(): number {
    return this.byKey.size;
  }

  all(): IterableIterator<Stmt> {
    return this.byKey.values();
  }
}

/** What each request sent to a server will be answered with, and what happens to that answer. */
export const enum Rq {
  None = 0,
  /** The client's Parse, forwarded: its ParseComplete goes to the client. */
  Parse = 1,
  /** A Parse the pooler added (the server lacked the statement): its ParseComplete is hidden. */
  ParseHidden = 2,
  /** The client's Parse of a statement the server already has: nothing was sent, the pooler answers. */
  ParseFake = 3,
  Bind = 4,
  /** Describe: done at RowDescription or NoData. */
  Describe = 5,
  /** Execute: done at CommandComplete, EmptyQueryResponse or PortalSuspended. */
  Execute = 6,
  /** The client's Close, forwarded. */
  Close = 7,
  /** A Close the pooler added to evict a statement: its CloseComplete is hidden. */
  CloseHidden = 8,
  /** Sync: done at ReadyForQuery. */
  Sync = 9,
  /** Query: done at ReadyForQuery. It also drops the session's unnamed statement. */
  Simple = 10,
  /** The client's Parse of the unnamed statement, forwarded: once done, the server's unnamed statement is the client's. */
  ParseUnnamed = 11,
  /** A Parse of the client's unnamed statement the pooler added (the server holds another one): its ParseComplete is hidden. */
  ParseUnnamedHidden = 12,
  /** The client's Close of the unnamed statement, forwarded. */
  CloseUnnamed = 13,
  /** A Close of the unnamed statement the pooler added (the server holds another client's; this client has none): hidden. */
  CloseUnnamedHidden = 14,
  /** FunctionCall: done at ReadyForQuery (the unnamed statement stays). */
  FunctionCall = 15,
  /**
   * The client's Parse of a statement the server already has, where the transaction may have failed: sent under a
   * name closed again at once (a CloseHidden follows), so that PostgreSQL answers it as the client's own session
   * would (25P02 in a failed transaction block). Its ParseComplete goes to the client.
   */
  ParseCheck = 16,
}

/** What a kind of request does, as bits of RQ_FLAGS[kind]: ends a batch, changes the unnamed statement, changes what is prepared. */
export const RQ_ENDS = 1;
export const RQ_UNNAMED = 2;
export const RQ_STMTS = 4;
export const RQ_FLAGS = (() => {
  const f = new Uint8Array(32);
  f[Rq.Sync] = f[Rq.FunctionCall] = RQ_ENDS;
  f[Rq.Simple] = RQ_ENDS | RQ_UNNAMED;
  f[Rq.ParseUnnamed] = f[Rq.ParseUnnamedHidden] = f[Rq.CloseUnnamed] = f[Rq.CloseUnnamedHidden] = RQ_UNNAMED | RQ_STMTS;
  f[Rq.Parse] = f[Rq.ParseHidden] = f[Rq.ParseFake] = f[Rq.ParseCheck] = f[Rq.Close] = f[Rq.CloseHidden] = RQ_STMTS;
  return f;
})();

/** Bits of ServerConn.unsettledEffects(): what unanswered earlier batches changed, and whether the current one did. */
export const FX_NAMED = 1;
export const FX_UNNAMED = 2;
export const FX_OWN_UNNAMED = 4;

/**
 * Whether a Parse, Bind, Describe or Close of a statement must wait for the answers to earlier batches (fx, from
 * ServerConn.unsettledEffects()). One naming a statement depends on the earlier changes to named statements. A Parse
 * or Close of the unnamed statement replaces whatever there was, and depends on nothing. A Bind or Describe of the
 * unnamed statement depends on the earlier changes to it, unless its own batch has changed it since.
 */
export function mustWait(fx: number, unnamed: boolean, parseOrClose: boolean): boolean {
  if (!unnamed) return (fx & FX_NAMED) !== 0;
  return !parseOrClose && (fx & (FX_UNNAMED | FX_OWN_UNNAMED)) === FX_UNNAMED;
}

/** The empty name, for sending a Bind or Describe of the unnamed statement through the rewriting path unchanged. */
export const UNNAMED_Z = Buffer.from([0]);
/** Close('S', ''): drops the unnamed statement. */
export const CLOSE_UNNAMED = closeStatementMsg(UNNAMED_Z);
/** ServerConn.unnamed of a session whose unnamed statement is not known (a link without tracking used it). */
export const UNNAMED_UNKNOWN = Buffer.alloc(0);

/** A ring of outstanding requests with the statement and client name each one concerns (for undoing on error). */
export class ReplyQueue {
  private kinds = new Uint8Array(16);
  private stmts: (Stmt | null)[] = new Array<Stmt | null>(16).fill(null);
  private names: (string | null)[] = new Array<string | null>(16).fill(null);
  /** A Parse of the unnamed statement: the message itself (it becomes the client's copy once done). */
  private msgs: (Buffer | null)[] = new Array<Buffer | null>(16).fill(null);
  private head = 0;
  count = 0;
  /** Outstanding requests that end a batch (Sync, Query, FunctionCall): more than one batch is in flight when > 0 before the last. */
  ends = 0;

  get front(): Rq {
    return this.count === 0 ? Rq.None : (this.kinds[this.head] as Rq);
  }

  get frontStmt(): Stmt | null {
    return this.count === 0 ? null : this.stmts[this.head]!;
  }

  get frontName(): string | null {
    return this.count === 0 ? null : this.names[this.head]!;
  }

  get frontMsg(): Buffer | null {
    return this.count === 0 ? null : this.msgs[this.head]!;
  }

  /** The j-th outstanding request (0 = front), its statement and client name. */
  kindAt(j: number): Rq {
    return this.kinds[(this.head + j) & (this.kinds.length - 1)] as Rq;
  }

  stmtAt(j: number): Stmt | null {
    return this.stmts[(this.head + j) & (this.kinds.length - 1)]!;
  }

  nameAt(j: number): string | null {
    return this.names[(this.head + j) & (this.kinds.length - 1)]!;
  }

  push(kind: Rq, stmt: Stmt | null = null, name: string | null = null, msg: Buffer | null = null): void {
    const cap = this.kinds.length;
    if (this.count === cap) this.grow();
    const i = (this.head + this.count) & (this.kinds.length - 1);
    this.kinds[i] = kind;
    this.stmts[i] = stmt;
    this.names[i] = name;
    this.msgs[i] = msg;
    this.count++;
    if ((RQ_FLAGS[kind]! & RQ_ENDS) !== 0) this.ends++;
  }

  shift(): void {
    if (this.count === 0) return;
    const h = this.head;
    if ((RQ_FLAGS[this.kinds[h]!]! & RQ_ENDS) !== 0) this.ends--;
    this.stmts[h] = null;
    this.names[h] = null;
    this.msgs[h] = null;
    this.head = (h + 1) & (this.kinds.length - 1);
    this.count--;
  }

  clear(): void {
    while (this.count > 0) this.shift();
    this.head = 0;
  }

  private grow(): void {
    const cap = this.kinds.length;
    const kinds = new Uint8Array(cap * 2);
    const stmts = new Array<Stmt | null>(cap * 2).fill(null);
    const names = new Array<string | null>(cap * 2).fill(null);
    const msgs = new Array<Buffer | null>(cap * 2).fill(null);
    for (let j = 0; j < this.count; j++) {
      const i = (this.head + j) & (cap - 1);
      kinds[j] = this.kinds[i]!;
      stmts[j] = this.stmts[i]!;
      names[j] = this.names[i]!;
      msgs[j] = this.msgs[i]!;
    }
    this.kinds = kinds;
    this.stmts = stmts;
    this.names = names;
    this.msgs = msgs;
    this.head = 0;
  }
}

/** Offset just past the C string starting at `start` in buf[..end), or -1 when it is not terminated. */
export function cstringEnd(buf: Buffer, start: number, end: number): number {
  const nul = buf.indexOf(0, start);
  return nul < 0 || nul >= end ? -1 : nul + 1;
}

/** Where a Parse's query text that starts at `from` ends (its NUL; the message's end if it has none). */
export function queryEnd(buf: Buffer, from: number, end: number): number {
  const e = cstringEnd(buf, from, end);
  return e < 0 ? end : e - 1;
}

/**
 * A copy of the message buf[start..end) with the C string at [nameStart, nameEnd) (NUL included) replaced by
 * `nameZ` (NUL included): Bind and Describe addressed to the server-side name.
 */
export function withName(buf: Buffer, start: number, end: number, nameStart: number, nameEnd: number, nameZ: Buffer): Buffer {
  const out = Buffer.allocUnsafe(renamedLength(start, end, nameStart, nameEnd, nameZ));
  writeRenamed(out, 0, buf, start, end, nameStart, nameEnd, nameZ);
  return out;
}

/** Length of withName's result. */
export function renamedLength(start: number, end: number, nameStart: number, nameEnd: number, nameZ: Buffer): number {
  return end - start - (nameEnd - nameStart) + nameZ.length;
}

/** withName's result written into `out` at `at` (which must have room for renamedLength bytes). */
export function writeRenamed(out: Buffer, at: number, buf: Buffer, start: number, end: number, nameStart: number, nameEnd: number, nameZ: Buffer): void {
  const len = renamedLength(start, end, nameStart, nameEnd, nameZ);
  copyBytes(buf, start, nameStart, out, at);
  out.writeUInt32BE(len - 1, at + 1);
  copyBytes(nameZ, 0, nameZ.length, out, at + nameStart - start);
  copyBytes(buf, nameEnd, end, out, at + nameStart - start + nameZ.length);
}

/** src[start..end) to dst at `at`: a plain loop for the few bytes of a name or a small Bind, Buffer.copy for more. */
function copyBytes(src: Buffer, start: number, end: number, dst: Buffer, at: number): void {
  const n = end - start;
  if (n > 64) {
    src.copy(dst, at, start, end);
    return;
  }
  for (let i = 0; i < n; i++) dst[at + i] = src[start + i]!;
}

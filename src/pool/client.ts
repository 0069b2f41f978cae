/* Client connections: startup and login, then the request path (client → server) with the counting
 * that decides when a server may go back to the pool. */

import type net from 'node:net';
import tls from 'node:tls';
import { SocketWriter } from '../net/socket-writer.js';
import { adoptSocket } from '../net/adopt.js';
import { ioActivity } from '../net/spin.js';
import { FE, MAX_STARTUP_PACKET, StartupCode, TxStatus } from '../protocol/codes.js';
import {
  AUTH_OK,
  backendKeyData,
  negotiateProtocolVersion,
  parameterStatus,
  parseStartupPacket,
  READY_IDLE,
  SSL_NO,
} from '../protocol/messages.js';
import { tlsDescription } from '../net/tls.js';
import { ProtocolError } from '../protocol/reader.js';
import { SqlState } from '../protocol/sqlstate.js';
import { Framer, Verdict } from '../net/framer.js';
import { PoolerError, protocolViolation } from '../util/errors.js';
import { clock } from '../util/clock.js';
import { randomFromPool } from '../util/random.js';
import { log } from '../util/log.js';
import { authFlowFor, type AuthFlow } from '../auth/client-auth.js';
import type { ListNode, StatList } from './list.js';
import type { Database, Pool, User } from './pool.js';
import type { ServerConn } from './server.js';
import type { Pooler } from '../pooler.js';
import { ClientState, CLIENT_STATE_NAMES } from './states.js';
import { CLOSE_UNNAMED, cstringEnd, mustWait, PARSE_COMPLETE, queryEnd, renamedLength, Rq, UNNAMED_UNKNOWN, UNNAMED_Z, withName, writeRenamed, type Stmt } from './prepared.js';
import { classify, classifyQuery, Hazard, readsSequenceState, startsTransactionOnly } from './session-state.js';
import { parseListen } from './notify.js';
import { commandComplete } from '../admin/rows.js';
import { errorResponse, readyForQuery } from '../protocol/messages.js';
import { cancelPid, newClientId } from '../cluster/identity.js';

/** Parameters that follow a client from server to server (PgBouncer's varcache), by lower-case name. */
const TRACKED: ReadonlyMap<string, string> = new Map([
  ['client_encoding', 'client_encoding'],
  ['datestyle', 'DateStyle'],
  ['timezone', 'TimeZone'],
  ['standard_conforming_strings', 'standard_conforming_strings'],
  ['application_name', 'application_name'],
]);

/** Message types a client may send after login; anything else is refused before it reaches a server. */
const FRONTEND_TYPES = new Uint8Array(256);
for (const c of 'BCDEFHPQSXcdf') FRONTEND_TYPES[c.charCodeAt(0)] = 1;

/** Messages whose body the request path reads while prepared statements are tracked (they name statements). */
const STMT_TYPES = new Uint8Array(256);
for (const c of 'PBDC') STMT_TYPES[c.charCodeAt(0)] = 1;

/**
 * Whether a chunk is whole messages that only start a transaction: a Query of BEGIN or START TRANSACTION, or one
 * Parse of it with its Bind, Describe, Execute and Sync (postgres.js's `begin`).
 */
function onlyBegins(b: Buffer): boolean {
  if (b.length < 6) return false;
  if (b[0] === FE.Query) return b.readUInt32BE(1) + 1 === b.length && startsTransactionOnly(b, 5, b.length - 1);
  let pos = 0;
  let nameStart = -1;
  let nameEnd = -1;
  while (pos + 5 <= b.length) {
    const type = b[pos]!;
    const len = b.readUInt32BE(pos + 1);
    const next = pos + 1 + len;
    if (len < 4 || next > b.length) return false;
    if (type === FE.Parse) {
      if (nameStart >= 0) return false;
      nameStart = pos + 5;
      nameEnd = cstringEnd(b, nameStart, next);
      if (nameEnd < 0 || !startsTransactionOnly(b, nameEnd, queryEnd(b, nameEnd, next))) return false;
    } else if (type === FE.Bind) {
      // the statement parsed just before, under the same name
      const stmtAt = cstringEnd(b, pos + 5, next);
      if (nameStart < 0 || stmtAt < 0 || stmtAt + nameEnd - nameStart > next || b.compare(b, nameStart, nameEnd, stmtAt, stmtAt + nameEnd - nameStart) !== 0) return false;
    } else if (type !== FE.Describe && type !== FE.Execute && type !== FE.Sync && type !== FE.Flush) {
      return false;
    }
    pos = next;
  }
  return pos === b.length && nameStart >= 0;
}

/**
 * Keep the batch that starts with this Bind (buf[start..end)) for a retry, when it reaches its Sync within the same
 * buffer and holds only extended-protocol messages (nothing but Bind/Describe/Execute/Close/Parse/Flush).
 */
function captureBatch(s: ServerConn, st: Stmt, buf: Buffer, start: number, end: number): void {
  let pos = end;
  let entries = 1;
  while (pos + 5 <= buf.length) {
    const type = buf[pos]!;
    const next = pos + 1 + buf.readUInt32BE(pos + 1);
    if (next > buf.length) return;
    if (type === FE.Sync) {
      s.keepBatch(st, buf, start, next, entries + 1);
      return;
    }
    if (type !== FE.Flush) {
      if (STMT_TYPES[type] !== 1 && type !== FE.Execute) return;
      entries++;
    }
    pos = next;
  }
}

/** Whether a Parse's statement (its query text starts at `textStart`) may leave session state. */
function stmtHazard(buf: Buffer, textStart: number, end: number, tracked: ReadonlySet<string>): Hazard {
  const textEnd = cstringEnd(buf, textStart, end);
  return textEnd < 0 ? Hazard.None : classify(buf, textStart, textEnd - 1, tracked).hazard;
}

/** Largest Query or Parse looked at for session state (larger ones are streamed and their transaction checked). */
const MAX_LOOK = 1 << 20;

/** Largest message accepted from a client during login (password and SASL messages). */
const MAX_LOGIN_MESSAGE = 70000;
/** A client waiting for a server is paused once it has sent this much more. */
const STASH_PAUSE_BYTES = 64 * 1024;

/** The answer to an SSLRequest that pgtide accepts. */
const SSL_YES = Buffer.from('S');

/** A fresh, unpredictable cancel key (the client never sees the server's). */
function nextCancelKey(c: { cancelPid: number; cancelKey: number }): void {
  const b = randomFromPool(8);
  c.cancelPid = cancelPid(b.readUInt32BE(0));
  c.cancelKey = b.readInt32BE(4);
}

/**
 * ignore_startup_parameters and track_extra_parameters as lookups, made once per list (not per login). Keyed by the
 * lists themselves: RELOAD and the console's SET put new arrays in the settings.
 */
const ignoredCache = new WeakMap<readonly string[], Set<string>>();
const extraCache = new WeakMap<readonly string[], Map<string, string>>();
function startupLists(st: { ignore_startup_parameters: readonly string[]; track_extra_parameters: readonly string[] }): { ignored: Set<string>; extra: Map<string, string> } {
  let ignored = ignoredCache.get(st.ignore_startup_parameters);
  if (ignored === undefined) {
    ignored = new Set(st.ignore_startup_parameters.map((s) => s.toLowerCase()));
    ignoredCache.set(st.ignore_startup_parameters, ignored);
  }
  let extra = extraCache.get(st.track_extra_parameters);
  if (extra === undefined) {
    extra = new Map(st.track_extra_parameters.map((s) => [s.toLowerCase(), s] as const));
    extraCache.set(st.track_extra_parameters, extra);
  }
  return { ignored, extra };
}

/**
 * While statements are tracked, what a client's chunk becomes (its runs of bytes and the rewritten messages) is
 * copied here in order and written to the server in one write (feedToServer). One buffer serves every client: a
 * feed that starts while another client's is gathering (a server released and handed over within it) writes its
 * pieces directly. A buffer a write still holds (the kernel did not take it all) is left to it for a fresh one.
 */
const GATHER_SIZE = 64 * 1024;
let gatherBuf = Buffer.allocUnsafeSlow(GATHER_SIZE);
let gatherLen = 0;
/** The first piece, kept as it is: a chunk that goes on unchanged (the usual case) is written without a copy. */
let gatherFirst: Buffer | null = null;
let gathering: ClientConn | null = null;

/** Socket listeners shared by all clients (no closures per client): the socket knows its client. */
const kClient = Symbol('pgtide.client');
type OwnedSocket = net.Socket & { [kClient]: ClientConn };
function onClientData(this: net.Socket, chunk: Buffer): void {
  (this as OwnedSocket)[kClient].onSocketData(chunk);
}
function onClientError(this: net.Socket): void {
  (this as OwnedSocket)[kClient].close('client unexpected eof', true);
}
function onClientClose(this: net.Socket): void {
  (this as OwnedSocket)[kClient].close('client unexpected eof');
}

export class ClientConn extends Framer implements ListNode {
  prev: ListNode | null = null;
  next: ListNode | null = null;
  list: StatList<ListNode> | null = null;

  readonly id = newClientId();
  state = ClientState.Login;
  db: Database | null = null;
  user: User | null = null;
  pool: Pool | null = null;
  server: ServerConn | null = null;
  /** Tracked parameters the client wants (canonical name → value). */
  vars = new Map<string, string>();
  /** `vars` is the pool's shared copy for clients with the same settings (finishLogin): copied before a change. */
  private varsShared = false;
  /** The startup packet's parameters, until the login is done (then only what `vars` keeps stays). */
  startupParams: Map<string, string> | null = null;
  cancelPid = 0;
  cancelKey = 0;
  readonly connectTime = clock.now;
  /** Last time the client sent anything (client_idle_timeout, idle_transaction_timeout). */
  lastActivity = clock.now;
  waitStart = 0;
  /** A client of the admin console (database `pgbouncer`): its access level; null for a pool client. */
  admin: 'admin' | 'stats' | null = null;
  /** Console only: an extended-protocol batch was refused, skip to its Sync. */
  adminSkipToSync = false;
  readonly addr: string;
  readonly port: number;
  /** The client's socket: the accepted one, or the TLS socket wrapped around it after an SSLRequest. */
  socket: net.Socket;
  /** Writes to `socket` (socket-writer.ts). */
  private writer!: SocketWriter;
  /** `TLSv1.3/<cipher>` once the TLS handshake is done; 'no' for a plain connection (log line, SHOW CLIENTS). */
  tls = 'no';
  /** An SSLRequest was answered 'S': the socket is (being) upgraded. */
  private tlsStarted = false;

  /** Requests received while no server was ready (or while a login or LISTEN is in progress). */
  private stash: Buffer[] | null = null;
  /** Bytes in the stash (hold() pauses the socket past STASH_PAUSE_BYTES). */
  private stashBytes = 0;
  /** Linked and prepared: bytes go straight to the server. */
  private forwarding = false;
  /** Prepared statements are tracked on the current link (transaction/statement mode, max_prepared_statements > 0). */
  private track = false;
  /** The client's named protocol-level statements, by the client's name (tracking mode; prepared.ts). */
  stmts: Map<string, Stmt> | null = null;
  /**
   * The client's unnamed statement as its own session would hold it (tracking mode): the Parse message that made it,
   * to prepare it again on another server, or null for none. Set when PostgreSQL has answered (ServerConn.unnamedDone).
   */
  unnamedStmt: Buffer | null = null;
  /** Sending a batch again (replay()). */
  private replaying = false;
  /**
   * Stopped before a statement message until the server has answered earlier batches that changed what it or the
   * client has prepared (ServerConn.unsettledEffects); the rest of the input waits in `stash`.
   */
  private suspended = false;
  /** Statements are looked at for session state (transaction/statement mode, session_state_policy not allow). */
  private guard = false;
  /** The current transaction ran a statement that may have left session state: check at its end. */
  private stateDue = false;
  /** The session ran a LOAD (Hazard.Lasting): every check pins it, whatever PostgreSQL reports. */
  lastingState = false;
  /** The transaction began with BEGIN alone: its first statement is looked at for currval()/lastval() (lookAfterBegin). */
  private seqLookOpen = false;
  /** Why the client is kept on its server between transactions (session state), or null. */
  pinReason: string | null = null;
  /** The track_set_parameters settings the client has SET (name → value), applied on every server it gets. */
  setVars: Map<string, string> | null = null;
  /** A refused statement left the server idle: release it once the current message is done. */
  private releaseAfterRefusal = false;
  /** workers > 1: the client holds one of the client slots (max_client_conn) leased from the primary. */
  clientSlot = false;
  /** max_concurrent_logins_per_host: this TCP client holds a login slot of its address, or waits for one. */
  loginSlot: 'running' | 'queued' | null = null;
  /** Channels this client LISTENs on through the database's listening connection (notify.ts). */
  listening: Set<string> | null = null;
  /** Notifications that arrived while the client was linked: delivered once it is between transactions. */
  private notifies: Buffer[] | null = null;
  /** A Bind or Describe to send with the server-side statement name (act(), after `out`): its bytes and name. */
  private renameBuf: Buffer | null = null;
  private renameStart = 0;
  private renameEnd = 0;
  private renameNameStart = 0;
  private renameNameEnd = 0;
  private renameTo: Buffer | null = null;
  /** Rewritten messages to send once the bytes before them are out (act()). */
  private out: Buffer[] | null = null;
  /** The statement name looked up last and its statement (lookupStmt); null when forgotten. */
  private lastName = '';
  private lastStmt: Stmt | null = null;
  private startBuf: Buffer | null = null;
  /** AuthenticationSASLFinal, sent with the rest of the welcome (welcomeMessage). */
  private loginPrefix: Buffer | null = null;
  private varsKeyCache: string | null = null;
  /** Database name the client asked for (db may be null when it does not exist). */
  private dbName = '';
  private startupDone = false;
  private auth: AuthFlow | null = null;
  private authBusy = false;
  private terminating = false;
  private closed = false;

  /** `socket`: accepted paused (pauseOnConnect), nothing read yet; the pooler resumes it when it may log in. */
  constructor(
    readonly pooler: Pooler,
    socket: net.Socket,
    readonly unix: boolean,
  ) {
    super();
    this.socket = socket;
    this.addr = unix ? 'unix' : (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    this.port = unix ? 0 : (socket.remotePort ?? 0);
    socket.setNoDelay(true);
    if (!unix && pooler.settings.tcp_keepalive) socket.setKeepAlive(true);
    this.attach(socket, true);
  }

  onSocketData(chunk: Buffer): void {
    try {
      this.onData(chunk);
    } catch (err) {
      log.error(`internal error on client connection: ${(err as Error).stack ?? err}`, this);
      this.fail(new PoolerError(SqlState.InternalError, 'internal error in pgtide'));
    }
  };
  /** The socket (or a fast write) drained: read from the server again. */
  onWriterDrain(): void {
    this.server?.unpause();
  }

  /**
   * `unread`: nothing has been read from the socket yet, so it can read through the shared buffer (src/net/adopt.ts)
   * instead of 'data' events.
   */
  private attach(sock: net.Socket, unread = false): void {
    this.writer = new SocketWriter(sock, this);
    (sock as OwnedSocket)[kClient] = this;
    if (!unread || !adoptSocket(sock, onClientData)) {
      // a flowing socket needs no 'read more' tick after each chunk (the handle keeps reading until the stream is
      // paused or full): marked as pending once, none is ever scheduled (the tick that would clear the mark never runs)
      const rs = (sock as unknown as { _readableState?: { readingMore: boolean } })._readableState;
      if (rs !== undefined) rs.readingMore = true;
      sock.on('data', onClientData);
    }
    sock.on('error', onClientError);
    sock.on('close', onClientClose);
  }

  private detach(sock: net.Socket): void {
    sock.off('data', onClientData);
    sock.off('error', onClientError);
    sock.off('close', onClientClose);
  }

  /** SSLRequest accepted: answer 'S' on the plain socket and continue the conversation inside TLS on the same socket. */
  private startTls(direct: Buffer | null = null): void {
    const ctl = this.pooler.clientTls!;
    const raw = this.socket;
    this.tlsStarted = true;
    if (direct === null) raw.write(SSL_YES);
    this.detach(raw);
    raw.on('error', () => {}); // errors surface on the TLS socket
    if (direct !== null) {
      // PostgreSQL 17's direct TLS: the handshake began without an SSLRequest; give its first bytes back
      raw.pause();
      raw.unshift(direct);
    }
    const ts = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext: ctl.context,
      requestCert: ctl.requestCert,
      rejectUnauthorized: ctl.requestCert,
      ALPNProtocols: ['postgresql'],
    });
    this.socket = ts;
    this.attach(ts);
    ts.once('secure', () => {
      if (direct !== null && ts.alpnProtocol !== 'postgresql') {
        // as PostgreSQL: direct TLS needs the client to name the protocol
        log.log('direct TLS connection without ALPN "postgresql" refused', this);
        this.close('direct TLS without ALPN', true);
        return;
      }
      // a bare TLSSocket does not set `authorized` (only tls.Server does): ask OpenSSL for the verify result
      const handle = (ts as unknown as { _handle?: { verifyError?: () => Error | null } })._handle;
      const verifyErr = handle?.verifyError?.() ?? null;
      const hasCert = Object.keys(ts.getPeerCertificate() ?? {}).length > 0;
      if (ctl.requestCert && (verifyErr || !hasCert)) {
        const why = verifyErr ? verifyErr.message : 'no certificate';
        log.log(`TLS handshake failed: client certificate not accepted: ${why}`, this);
        this.close('TLS handshake failed', true);
        return;
      }
      this.tls = tlsDescription(ts);
    });
  }

  /** Local end of the connection (looked up when asked: it costs a system call). */
  get localAddr(): string {
    return this.unix ? 'unix' : (this.socket.localAddress ?? '').replace(/^::ffff:/, '');
  }

  get localPort(): number {
    return this.unix ? 0 : (this.socket.localPort ?? 0);
  }

  get stateName(): string {
    return CLIENT_STATE_NAMES[this.state];
  }

  /** Part of a message has been forwarded and the rest is still to come. */
  get midMessage(): boolean {
    return !this.atBoundary();
  }

  logPrefix(): string {
    const db = this.db?.name ?? '(nodb)';
    const user = this.user?.name ?? this.startupParams?.get('user') ?? '(nouser)';
    return `C-${this.id}: ${db}/${user}@${this.unix ? 'unix' : this.addr}:${this.port}`;
  }

  // ---- I/O ----

  write(data: Buffer): boolean {
    return this.writer.write(data);
  }

  /** A server's reply: small ones go out with the others of this event-loop turn (SocketWriter.writeSoon). */
  writeSoon(data: Buffer): boolean {
    return this.writer.writeSoon(data);
  }

  /** Bytes written to the client are not all out yet (a buffer they came from must not be reused). */
  writeQueued(): boolean {
    return this.writer.queued();
  }

  bytesOut(n: number): void {
    this.pool?.stats.sent(n);
  }

  private onData(chunk: Buffer): void {
    ioActivity();
    this.lastActivity = clock.now;
    if (this.forwarding) {
      if (this.suspended) {
        this.hold(chunk); // counted when fed
        return;
      }
      this.pool!.stats.received(chunk.length);
      this.feedToServer(chunk);
      if (this.server?.releaseWhenClientDone && this.atBoundary()) this.server.clientAtBoundary();
      return;
    }
    if (!this.startupDone) {
      this.onStartupData(chunk);
      return;
    }
    if (this.state === ClientState.Login) {
      if (this.authBusy) this.hold(chunk);
      else this.feed(chunk);
      return;
    }
    if (this.admin !== null) {
      this.feed(chunk); // whole messages, answered by the console
      return;
    }
    // logged in, no server ready: an idle client sending Terminate needs none
    if (!this.stash && this.atBoundary() && chunk.length === 5 && chunk[0] === FE.Terminate) {
      this.close('client close request');
      return;
    }
    if (this.stash) {
      this.hold(chunk);
      return;
    }
    if (this.server === null) {
      // between transactions (not during a pinned client's session-state check)
      if (chunk[0] === FE.Parse && this.parseLocally(chunk)) return;
      if (chunk[0] === FE.Query && this.listenLocally(chunk)) return;
    }
    // try to get a server at once; only when none is ready does the client wait, paused
    // not paused while it waits (pause and resume cost a tick each): a waiting client rarely sends more, and what it
    // does send is held, up to STASH_PAUSE_BYTES before the socket is paused
    this.stash = [chunk];
    this.stashBytes = chunk.length;
    if (this.state === ClientState.Active && !this.server) this.pool!.requestServer(this);
  }

  private hold(chunk: Buffer): void {
    if (this.stash) {
      this.stash.push(chunk);
      this.stashBytes += chunk.length;
    } else {
      this.stash = [chunk];
      this.stashBytes = chunk.length;
    }
    if (this.state !== ClientState.Active || this.stashBytes > STASH_PAUSE_BYTES) this.socket.pause();
  }

  /** Forward a chunk; while statements are tracked, rewritten messages go out with the rest in one write. */
  private feedToServer(chunk: Buffer): void {
    if (!this.track || gathering !== null) {
      this.feed(chunk);
      return;
    }
    gathering = this;
    this.feed(chunk);
    gathering = null;
    this.writeGathered();
  }

  /** Have act() send the Bind or Describe buf[start..end) with the statement name at [nameStart, nameEnd) replaced by `to`. */
  private sendRenamed(buf: Buffer, start: number, end: number, nameStart: number, nameEnd: number, to: Buffer): void {
    this.renameBuf = buf;
    this.renameStart = start;
    this.renameEnd = end;
    this.renameNameStart = nameStart;
    this.renameNameEnd = nameEnd;
    this.renameTo = to;
    this.actionPending = true;
  }

  /** The Bind or Describe onStmtMessage left in rename*, with the server-side name: written into the gather, or made. */
  private emitRenamed(): void {
    const buf = this.renameBuf!;
    const to = this.renameTo!;
    this.renameBuf = null;
    this.renameTo = null;
    const start = this.renameStart;
    const end = this.renameEnd;
    const nameStart = this.renameNameStart;
    const nameEnd = this.renameNameEnd;
    if (gathering === this && this.server !== null) {
      const n = renamedLength(start, end, nameStart, nameEnd, to);
      if (this.gatherRoom(n)) {
        writeRenamed(gatherBuf, gatherLen, buf, start, end, nameStart, nameEnd, to);
        gatherLen += n;
        return;
      }
    }
    this.emit(withName(buf, start, end, nameStart, nameEnd, to));
  }

  /** Send what was gathered (one write), and start over. */
  private writeGathered(): void {
    const first = gatherFirst;
    const len = gatherLen;
    gatherFirst = null;
    gatherLen = 0;
    const s = this.server;
    if (s === null || (first === null && len === 0)) return;
    const ok = s.write(first !== null ? first : gatherBuf.subarray(0, len));
    if (first === null && s.writeQueued()) gatherBuf = Buffer.allocUnsafeSlow(GATHER_SIZE);
    if (!ok) this.socket.pause();
  }

  /**
   * Room for `n` more bytes at gatherLen, the first piece copied in: true, or false when they do not fit (what was
   * gathered has been written; the caller writes its piece itself).
   */
  private gatherRoom(n: number): boolean {
    const first = gatherFirst;
    if ((first !== null ? first.length : gatherLen) + n > GATHER_SIZE) {
      this.writeGathered();
      return false;
    }
    if (first !== null) {
      gatherBuf.set(first, 0);
      gatherLen = first.length;
      gatherFirst = null;
    }
    return true;
  }

  /** A server is linked and prepared: send what waited, then read on. */
  onLinked(): void {
    if (this.notifies !== null) this.flushNotifies(); // the server's stream is at a boundary: nothing sent yet, or a ReadyForQuery
    this.forwarding = true;
    const st = this.pooler.settings;
    const pooled = this.pool!.mode() !== 'session';
    this.track = st.max_prepared_statements > 0 && pooled;
    this.guard = pooled && st.session_state_policy !== 'allow';
    this.server!.setTracking(this.track);
    if (!this.track) this.server!.unnamed = UNNAMED_UNKNOWN; // untracked: its unnamed statement is no longer known
    const stash = this.stash;
    this.stash = null;
    const look = this.seqLookOpen; // for the statement after the BEGIN held here, not for the BEGIN
    this.seqLookOpen = false;
    if (stash && !this.feedHeld(stash)) return;
    this.seqLookOpen = look;
    if (!this.terminating && this.socket.isPaused()) this.socket.resume();
  }

  /** Feed what was held to the linked server, in order; false when it stopped (closed, unlinked, or suspended again). */
  private feedHeld(held: Buffer[]): boolean {
    for (let i = 0; i < held.length; i++) {
      const chunk = held[i]!;
      this.pool!.stats.received(chunk.length);
      this.feedToServer(chunk);
      if (this.closed || !this.forwarding) return false;
      if (this.suspended) {
        for (let j = i + 1; j < held.length; j++) this.hold(held[j]!);
        return false;
      }
    }
    return true;
  }

  /** The framer stopped before a statement message (suspendPending): keep it and the rest until resumeSuspended. */
  protected override onSuspend(rest: Buffer): void {
    this.suspended = true;
    this.pool!.stats.received(-rest.length); // counted again when fed
    this.stash = [rest];
    this.stashBytes = rest.length;
    this.socket.pause();
  }

  isSuspended(): boolean {
    return this.suspended;
  }

  /** The server has answered the batches the client's next statement message depended on: go on with the input. */
  resumeSuspended(): void {
    if (!this.suspended) return;
    this.suspended = false;
    const held = this.stash;
    this.stash = null;
    this.stashBytes = 0;
    if (held && !this.feedHeld(held)) return;
    if (!this.terminating && !this.closed && this.socket.isPaused()) this.socket.resume();
  }

  /** The server went back to the pool. */
  unlinked(): void {
    this.forwarding = false;
    this.suspended = false; // what it held goes to the next server (requestIfWaiting)
    this.server?.setTracking(false);
    this.track = false;
    this.guard = false;
    this.seqLookOpen = false;
    this.server = null;
    if (this.notifies !== null) this.flushNotifies();
    // paused because that server's socket was full: its 'drain' will not reach us any more, so read on (into the stash)
    if (!this.stash && !this.terminating && !this.closed && this.socket.isPaused()) this.socket.resume();
  }

  /** The server socket drained: the client may send again. */
  serverDrained(): void {
    if (this.forwarding && this.socket.isPaused()) this.socket.resume();
  }

  /** A ParameterStatus from the linked server: the client changed a tracked setting. */
  serverParam(name: string, value: string): void {
    const old = this.vars.get(name);
    if (old !== undefined && old !== value) {
      if (this.varsShared) {
        this.vars = new Map(this.vars);
        this.varsShared = false;
      }
      this.vars.set(name, value);
      this.varsKeyCache = null;
    }
  }

  /** The tracked parameters as one string: equal keys mean equal settings (cheap varcache check). */
  varsKey(): string {
    if (this.varsKeyCache === null) {
      let k = '';
      for (const [name, value] of this.vars) k += name + '=' + value + '\0';
      this.varsKeyCache = k;
    }
    return this.varsKeyCache;
  }

  // ---- request path (work phase) ----

  protected wantBody(type: number, length: number): boolean {
    if (this.forwarding) {
      if (this.track && STMT_TYPES[type] === 1) return true;
      if (!this.guard || (type !== FE.Query && type !== FE.Parse)) return false;
      // a huge statement is streamed, not gathered to be looked at: its transaction is checked at its end instead
      if (length > MAX_LOOK) {
        this.stateDue = true;
        return false;
      }
      return true;
    }
    return this.state === ClientState.Login || this.admin !== null;
  }

  protected onHeader(type: number): Verdict {
    const s = this.server!;
    switch (type) {
      case FE.Query:
      case FE.FunctionCall:
        s.sentRequest();
        if (this.track) s.record(type === FE.Query ? Rq.Simple : Rq.FunctionCall);
        break;
      case FE.Sync:
        if (!s.copyIn) {
          s.sentRequest();
          if (this.track) s.record(Rq.Sync);
        }
        break;
      case FE.Execute:
        s.dirty = true;
        if (this.track) s.record(Rq.Execute);
        break;
      case FE.Terminate:
        this.terminating = true;
        this.actionPending = true;
        return Verdict.Skip;
      case FE.CopyDone:
      case FE.CopyFail:
        s.copyIn = false;
        break;
      case FE.CopyData:
        break;
      case FE.Flush:
        if (!s.copyIn) s.dirty = true;
        break;
      default:
        if (FRONTEND_TYPES[type] === 0) {
          this.fail(protocolViolation(`unknown message type '${String.fromCharCode(type)}'`));
          return Verdict.Skip;
        }
        s.dirty = true;
    }
    return Verdict.Forward;
  }

  protected onMessage(type: number, buf: Buffer, start: number, end: number): Verdict {
    if (this.forwarding) {
      if (type === FE.Query) return this.onQuery(buf, start, end);
      if (this.track) return this.onStmtMessage(type, buf, start, end);
      // statements not tracked: a Parse is only looked at (a named one's later Binds are not)
      const nameEnd = cstringEnd(buf, start + 5, end);
      if (this.seqLookOpen && nameEnd > 0 && this.lookAfterBegin(buf, nameEnd, queryEnd(buf, nameEnd, end), null)) return Verdict.Skip;
      if (nameEnd > 0) this.sawHazard(stmtHazard(buf, nameEnd, end, this.pooler.trackedSetNames()));
      return this.onHeader(type);
    }
    if (this.admin !== null && this.state !== ClientState.Login) {
      this.pooler.console.onMessage(this, type, buf.subarray(start, end));
      return Verdict.Skip;
    }
    // only during login: authentication messages
    if (type !== FE.Password || !this.auth) {
      if (type === FE.Terminate) this.close('client close request');
      else this.fail(protocolViolation(`expected password response, got message type '${String.fromCharCode(type)}'`));
      return Verdict.Skip;
    }
    const body = Buffer.from(buf.subarray(start + 5, end));
    this.authBusy = true;
    this.auth.onPassword(body).then(
      (step) => {
        this.authBusy = false;
        if (this.closed) return;
        if (step.kind === 'send') {
          this.write(step.msg);
        } else if (!step.ok) {
          if (step.reason) log.log(`authentication failed: ${step.reason}`, this);
          // a secret from auth_query may be out of date: ask again next time
          if (this.user!.fromAuthQuery) {
            this.user!.secret = undefined;
            this.user!.scramKeys = undefined;
            this.user!.fromAuthQuery = false;
          }
          this.fail(new PoolerError(SqlState.InvalidPassword, `password authentication failed for user "${this.user!.name}"`));
          return;
        } else {
          if (step.final) this.loginPrefix = step.final; // goes out with AuthenticationOk, in one write
          if (step.scramKeys) this.user!.scramKeys = step.scramKeys;
          this.auth = null;
          this.authenticated();
        }
        const held = this.stash;
        this.stash = null;
        if (held && !this.closed) {
          for (const c of held) this.onData(c);
        }
        if (!this.closed && this.state === ClientState.Login) this.socket.resume();
      },
      (err: Error) => {
        this.authBusy = false;
        // a malformed password/SASL message is the client's fault, not ours
        if (err instanceof ProtocolError) {
          this.fail(protocolViolation(`malformed authentication message: ${err.message}`));
          return;
        }
        log.error(`authentication error: ${err.message}`, this);
        this.fail(new PoolerError(SqlState.InternalError, 'authentication failed: internal error'));
      },
    );
    return Verdict.Skip;
  }

  /** Parse, Bind, Describe or Close while statements are tracked: map the client's statement names to the server's. */
  private onStmtMessage(type: number, buf: Buffer, start: number, end: number): Verdict {
    const s = this.server!;
    const named = type === FE.Describe || type === FE.Close ? start + 6 : start + 5;
    let nameStart = named;
    if (type === FE.Bind) {
      nameStart = cstringEnd(buf, named, end); // after the portal name
      if (nameStart < 0) return this.malformed(type);
    }
    const nameEnd = cstringEnd(buf, nameStart, end);
    if (nameEnd < 0 || named > end) return this.malformed(type);
    const kind = type === FE.Parse ? Rq.Parse : type === FE.Bind ? Rq.Bind : type === FE.Describe ? Rq.Describe : Rq.Close;
    // a portal, or anything after an error before the Sync (PostgreSQL ignores it: nothing changes): as sent
    if (((type === FE.Describe || type === FE.Close) && buf[start + 5] !== 0x53) || s.ignoresUntilSync()) {
      s.dirty = true;
      s.record(kind);
      return Verdict.Forward;
    }
    if (this.seqLookOpen && type !== FE.Describe && type !== FE.Close) {
      // a Parse's text (up to its NUL), or the statement a Bind names (unnamed: parsed in this transaction already)
      if (type === FE.Parse) {
        if (this.lookAfterBegin(buf, nameEnd, queryEnd(buf, nameEnd, end), null)) return Verdict.Skip;
      } else {
        const st = nameEnd > nameStart + 1 ? this.lookupStmt(buf, nameStart, nameEnd - 1) : undefined;
        if (st === undefined) this.seqLookOpen = false;
        else if (this.lookAfterBegin(buf, 0, 0, st)) return Verdict.Skip;
      }
    }
    const fx = s.unsettledEffects();
    if (fx !== 0 && mustWait(fx, nameEnd === nameStart + 1, type === FE.Parse || type === FE.Close)) {
      // an earlier batch, not answered yet, changed what this message depends on: if it fails, that change did not
      // happen, so this message waits for its answer (a pipelining client; PostgreSQL would see it after that too)
      this.suspendPending = true;
      this.pool!.stats.pipelineWaits++;
      return Verdict.Skip;
    }
    s.dirty = true;
    if (nameEnd === nameStart + 1) return this.onUnnamedMessage(type, kind, buf, start, end, nameStart, nameEnd);
    const stats = this.pool!.stats;
    if (type === FE.Parse) {
      const name = buf.toString('utf8', nameStart, nameEnd - 1);
      const st = this.addStmt(name, buf, nameEnd, end);
      if (st === null) return Verdict.Skip;
      if (this.guard && st.hazard > 0) this.sawHazard(st.hazard);
      s.clientParse(st, name, (this.out ??= []));
    } else {
      const st = this.lookupStmt(buf, nameStart, nameEnd - 1);
      if (!st) {
        s.record(kind);
        return Verdict.Forward;
      }
      if (type === FE.Close) {
        // forgotten here, not closed on the server: the name sent on is one the server does not have (CloseComplete)
        const name = buf.toString('utf8', nameStart, nameEnd - 1);
        this.unmapStmt(name, st);
        s.record(kind, st, name);
        return Verdict.Forward;
      }
      if (type === FE.Bind) {
        stats.bindCount++;
        if (this.guard && st.hazard > 0) this.sawHazard(st.hazard);
        if (!this.replaying && s.canCapture()) captureBatch(s, st, buf, start, end);
      }
      s.ensurePrepared(st, (this.out ??= []));
      // sent by act(), once the bytes before it and what ensurePrepared added are out
      this.sendRenamed(buf, start, end, nameStart, nameEnd, st.nameZ);
      s.record(kind, st); // a Bind or Describe changes nothing to undo: no name kept
      return Verdict.Skip;
    }
    if (this.out !== null && this.out.length > 0) this.actionPending = true;
    return Verdict.Skip;
  }

  /**
   * Parse, Bind, Describe or Close of the unnamed statement. It is sent as it is; but a Bind or Describe of it on a
   * server whose unnamed statement is not the client's (another client's since, or this one is new to the client) is
   * preceded by a Parse of the client's own, or, when it has none, by a Close (PostgreSQL then answers as it would
   * the client's own session: the statement does not exist). Both are hidden from the client.
   */
  private onUnnamedMessage(type: number, kind: Rq, buf: Buffer, start: number, end: number, nameStart: number, nameEnd: number): Verdict {
    const s = this.server!;
    if (type === FE.Parse) {
      if (this.guard) this.sawHazard(stmtHazard(buf, nameEnd, end, this.pooler.trackedSetNames()));
      // the message, kept to prepare it elsewhere later; the same text as before keeps the same copy (no allocation)
      const mine = this.unnamedStmt;
      const msg = mine !== null && mine.length === end - start && mine.compare(buf, start, end) === 0 ? mine : Buffer.from(buf.subarray(start, end));
      s.record(Rq.ParseUnnamed, null, null, msg);
      return Verdict.Forward;
    }
    if (type === FE.Close) {
      s.record(Rq.CloseUnnamed);
      return Verdict.Forward;
    }
    const mine = this.unnamedStmt;
    if (s.unnamedIsFor(mine)) {
      s.record(kind);
      return Verdict.Forward;
    }
    const out = (this.out ??= []);
    if (mine !== null) {
      out.push(mine);
      s.record(Rq.ParseUnnamedHidden, null, null, mine);
      this.pool!.stats.unnamedReprepares++;
    } else {
      out.push(CLOSE_UNNAMED);
      s.record(Rq.CloseUnnamedHidden);
    }
    // sent by act() after what was added, unchanged
    this.sendRenamed(buf, start, end, nameStart, nameEnd, UNNAMED_Z);
    s.record(kind);
    return Verdict.Skip;
  }

  /**
   * Between transactions, a batch of nothing but Parse of named statements and a Sync (libpq's PQprepare) is
   * answered without a server: the statements are prepared lazily, on the server that first runs them. Waiting
   * for a server here could wait forever: a client program blocked in PQprepare may be the one that has to finish
   * the transactions holding every server (pgbench -M prepared with more clients than servers).
   */
  private parseLocally(chunk: Buffer): boolean {
    if (this.pooler.settings.max_prepared_statements <= 0 || this.pool!.mode() === 'session') return false;
    const len = chunk.length;
    let pos = 0;
    let parses = 0;
    while (pos + 5 <= len && chunk[pos] === FE.Parse) {
      const end = pos + 1 + chunk.readUInt32BE(pos + 1);
      const nameEnd = end <= len ? cstringEnd(chunk, pos + 5, end) : -1;
      if (nameEnd <= pos + 6) return false; // split, malformed or unnamed
      pos = end;
      parses++;
    }
    if (parses === 0 || pos + 5 !== len || chunk[pos] !== FE.Sync || chunk.readUInt32BE(pos + 1) !== 4) return false;
    for (pos = 0; chunk[pos] === FE.Parse; ) {
      const end = pos + 1 + chunk.readUInt32BE(pos + 1);
      const nameEnd = cstringEnd(chunk, pos + 5, end);
      if (this.addStmt(chunk.toString('utf8', pos + 5, nameEnd - 1), chunk, nameEnd, end) === null) return true;
      pos = end;
    }
    const reply = Buffer.allocUnsafe(parses * 5 + READY_IDLE.length);
    for (let i = 0; i < parses; i++) PARSE_COMPLETE.copy(reply, i * 5);
    READY_IDLE.copy(reply, parses * 5);
    this.bytesOut(reply.length);
    this.write(reply);
    return true;
  }

  /** Send a batch again (a retry after a shared statement failed on the server): as if the client had sent it. */
  replay(bytes: Buffer): void {
    const s = this.server!;
    this.replaying = true; // once only: a batch that fails again goes to the client
    let pos = 0;
    while (pos < bytes.length && !this.closed) {
      const type = bytes[pos]!;
      const end = pos + 1 + bytes.readUInt32BE(pos + 1);
      if (STMT_TYPES[type] === 1) {
        if (this.onStmtMessage(type, bytes, pos, end) === Verdict.Forward) s.write(bytes.subarray(pos, end));
        else this.act();
      } else {
        this.onHeader(type);
        s.write(bytes.subarray(pos, end));
      }
      pos = end;
    }
    this.actionPending = false;
    this.replaying = false;
    if (!this.closed && this.socket.isPaused()) this.socket.resume();
  }

  /** A simple Query while session state is watched: look at it; under session_state_policy = refuse, maybe refuse it. */
  private onQuery(buf: Buffer, start: number, end: number): Verdict {
    if (this.seqLookOpen && this.lookAfterBegin(buf, start + 5, end - 1, null)) return Verdict.Skip;
    const cl = classifyQuery(buf, start + 5, end - 1, this.pooler.trackedSetNames());
    if (cl.hazard !== Hazard.None) {
      const s = this.server!;
      if (cl.hazard >= Hazard.State && this.pooler.settings.session_state_policy === 'refuse' && this.pinReason === null && s.outstanding === 0 && !s.dirty) {
        const msg = `${cl.what} is not allowed in ${this.pool!.mode()} pooling: it would stay on the server connection after the transaction`;
        log.log(`refused: ${msg}`, this);
        this.pool!.stats.stateRefusals++;
        this.pool!.stats.refusalReasons[cl.reason]!++;
        const reply = Buffer.concat([
          errorResponse({ severity: 'ERROR', code: SqlState.FeatureNotSupported, message: msg,
            hint: 'session_state_policy = refuse in pgtide\'s configuration; "pin" keeps such a client on its server instead' }),
          readyForQuery(s.txStatus),
        ]);
        this.bytesOut(reply.length);
        this.write(reply);
        if (s.txStatus === 0x49 && !this.stateDue) {
          this.releaseAfterRefusal = true;
          this.actionPending = true;
        }
        return Verdict.Skip;
      }
      this.sawHazard(cl.hazard);
    }
    return this.onHeader(FE.Query);
  }

  /**
   * Whether the server just linked must forget its sequence values first (DISCARD SEQUENCES): transaction or
   * statement pooling with session state watched, and what the client sent to start this transaction reads them
   * (currval, lastval), in its text or through a prepared statement it binds. They would otherwise be those of
   * whichever client last used the server; after the reset they are the transaction's own, or PostgreSQL's 55000.
   */
  needsSequenceReset(): boolean {
    const held = this.stash;
    this.seqLookOpen = false;
    if (held === null || this.pool!.mode() === 'session' || this.pooler.settings.session_state_policy === 'allow') return false;
    // the first chunk's whole messages: the texts of Query and Parse, and the statements Binds name (their text is not
    // in what was sent now); a Bind's parameters or an Execute need no search
    const b = held[0]!;
    const binds = this.pooler.stmts.sequenceReaders && this.stmts !== null;
    let parsed = false;
    let pos = 0;
    while (pos + 5 <= b.length) {
      const type = b[pos]!;
      const len = b.readUInt32BE(pos + 1);
      const next = pos + 1 + len;
      if (len < 4 || next > b.length) break;
      if (type === FE.Query) {
        if (readsSequenceState(b, pos + 5, next - 1)) return true;
      } else if (type === FE.Parse) {
        parsed = true;
        const nameEnd = cstringEnd(b, pos + 5, next);
        if (nameEnd > 0 && readsSequenceState(b, nameEnd, queryEnd(b, nameEnd, next))) return true;
      } else if (type === FE.Bind && (binds || (!parsed && this.unnamedStmt !== null))) {
        const portalEnd = cstringEnd(b, pos + 5, next);
        const nameEnd = portalEnd < 0 ? -1 : cstringEnd(b, portalEnd, next);
        if (nameEnd === portalEnd + 1) {
          // the unnamed statement bound again without its Parse (asyncpg, PQprepare with ""): the one kept for it
          const u = parsed ? null : this.unnamedStmt;
          const textAt = u === null ? -1 : cstringEnd(u, 5, u.length);
          if (textAt > 0 && readsSequenceState(u!, textAt, queryEnd(u!, textAt, u!.length))) return true;
        } else if (binds && nameEnd > portalEnd + 1 && this.lookupStmt(b, portalEnd, nameEnd - 1)?.readsSequence) {
          return true;
        }
      }
      pos = next;
    }
    // a message split across reads, and later chunks: every byte is searched
    if (pos < b.length && readsSequenceState(b, pos, b.length)) return true;
    for (let i = 1; i < held.length; i++) if (readsSequenceState(held[i]!, 0, held[i]!.length)) return true;
    // BEGIN alone: the look is made at the transaction's first statement instead (lookAfterBegin)
    if (held.length === 1 && onlyBegins(b)) this.seqLookOpen = true;
    return false;
  }

  /**
   * The first statement of a transaction that began with BEGIN alone (seqLookOpen), its text in buf[start..end) or,
   * for a Bind, its prepared statement `st`: if it reads sequence values, the server forgets other clients' first, as
   * needsSequenceReset does at the start of other transactions. The statement waits (suspended) for the server's
   * DISCARD SEQUENCES. Returns true when it waits.
   */
  private lookAfterBegin(buf: Buffer, start: number, end: number, st: Stmt | null): boolean {
    this.seqLookOpen = false;
    const s = this.server!;
    if (s.outstanding !== 0 || s.dirty || s.txStatus !== TxStatus.InTransaction) return false; // BEGIN not answered yet
    if (st !== null ? !st.readsSequence : !readsSequenceState(buf, start, end)) return false;
    this.suspendPending = true;
    s.resetSequences(this);
    return true;
  }

  /** A statement of the current transaction may leave session state (hazard above None): check at its end. */
  private sawHazard(h: Hazard): void {
    if (h === Hazard.None) return;
    this.stateDue = true;
    // a LOAD: once its CommandComplete shows that it worked (loaded()), where the server follows replies
    if (h === Hazard.Lasting && !this.track) this.lastingState = true;
  }

  /** The server answered a LOAD of this client with success: the library stays in that backend. */
  loaded(): void {
    this.lastingState = true;
  }

  /** Whether the server may only go back to the pool after a session-state check. */
  stateCheckDue(): boolean {
    return this.stateDue || this.pinReason !== null;
  }

  /** A session-state check is running on the linked server: what the client sends meanwhile waits. */
  holdRequests(): void {
    this.forwarding = false;
  }

  /**
   * The result of a session-state check: the tracked settings the session has, and whether it must stay (`pin`, with
   * its categories as Reason bits).
   */
  stateChecked(tracked: Map<string, string>, pin: string | null, reasons: number): void {
    this.stateDue = false;
    this.setVars = tracked.size > 0 ? tracked : null;
    const was = this.pinReason;
    this.pinReason = pin;
    if (pin !== null && was === null) {
      const st = this.pool!.stats;
      st.statePins++;
      for (let r = 0; reasons >> r !== 0; r++) if ((reasons >> r) & 1) st.pinReasons[r]!++;
      log.log(`pinned to its server connection: session state left by the transaction (${pin})`, this);
    } else if (pin === null && was !== null) {
      log.log('unpinned: the session state is gone', this);
    }
  }

  /** After a release: a request that arrived meanwhile needs a server. */
  requestIfWaiting(): void {
    if (this.stash !== null && !this.closed && this.state === ClientState.Active && !this.server) this.pool!.requestServer(this);
  }

  trackedSetNames(): ReadonlySet<string> {
    return this.pooler.trackedSetNames();
  }

  /** Lower-case names of the parameters the varcache follows for this client. */
  varcacheNames(): ReadonlySet<string> {
    return new Set([...this.vars.keys()].map((k) => k.toLowerCase()));
  }

  /**
   * Between transactions, a simple Query that is exactly LISTEN or UNLISTEN is handled by the pooler: the database's
   * listening connection subscribes, and notifications reach the client whichever server it uses (notify.ts).
   */
  private listenLocally(chunk: Buffer): boolean {
    if (this.pool!.mode() === 'session' || this.pooler.settings.session_state_policy === 'allow') return false;
    if (chunk.length < 6 || chunk.readUInt32BE(1) + 1 !== chunk.length || chunk.length > 1024) return false;
    if (!mayBeListen(chunk)) return false; // no string is built for other queries
    const p = parseListen(chunk.toString('utf8', 5, chunk.length - 1));
    if (!p) return false;
    const hub = this.pooler.notify;
    if (!p.listen) {
      hub.unlisten(this, p.channel);
      this.reply(Buffer.concat([commandComplete('UNLISTEN'), READY_IDLE]));
      return true;
    }
    // hold what the client sends next until the listening connection has the channel
    this.stash = [];
    this.stashBytes = 0;
    this.socket.pause();
    hub.listen(this, p.channel!, (err) => {
      if (this.closed) return;
      if (err) this.reply(Buffer.concat([new PoolerError(err.sqlstate, err.message, false).toMessage(), READY_IDLE]));
      else this.reply(Buffer.concat([commandComplete('LISTEN'), READY_IDLE]));
      const held = this.stash ?? [];
      this.stash = null;
      for (const c of held) {
        if (this.closed) return;
        this.onData(c);
      }
      if (!this.closed && this.stash === null && !this.server) this.socket.resume();
    });
    return true;
  }

  private reply(msg: Buffer): void {
    this.bytesOut(msg.length);
    this.write(msg);
  }

  /** A NotificationResponse for a channel the client listens on. */
  deliverNotification(msg: Buffer): void {
    if (this.closed) return;
    if (this.server === null) this.reply(msg);
    else (this.notifies ??= []).push(msg);
  }

  /** Between transactions again: what was held for the client now goes out. */
  private flushNotifies(): void {
    const n = this.notifies;
    if (n === null || this.closed) return;
    this.notifies = null;
    for (const m of n) this.reply(m);
  }

  private malformed(type: number): Verdict {
    this.fail(protocolViolation(`invalid message format (message type '${String.fromCharCode(type)}')`));
    return Verdict.Skip;
  }

  /**
   * The client's Parse of `name` (query text and types at buf[textStart..end)): its statement, or null when the name
   * is taken (PostgreSQL's 42P05; the client is closed, as PgBouncer does).
   */
  private addStmt(name: string, buf: Buffer, textStart: number, end: number): Stmt | null {
    const map = (this.stmts ??= new Map());
    if (map.has(name)) {
      log.log(`prepared statement '${name}' was already prepared`, this);
      this.fail(new PoolerError(SqlState.DuplicatePreparedStatement, `prepared statement "${name}" already exists`));
      return null;
    }
    const st = this.pooler.stmts.intern(buf, textStart, end);
    if (st.hazard < 0) st.hazard = stmtHazard(buf, textStart, end, this.pooler.trackedSetNames());
    map.set(name, st);
    st.clientRefs++;
    this.pool!.stats.clientParseCount++;
    return st;
  }

  /**
   * The client's statement named by the bytes buf[start..end), if any. The name looked up last is remembered, so a
   * client binding the same statement again and again (pgbench -M prepared, a hot query) costs a byte comparison,
   * not a string and a map lookup.
   */
  private lookupStmt(buf: Buffer, start: number, end: number): Stmt | undefined {
    const last = this.lastStmt;
    if (last !== null) {
      const n = this.lastName;
      const len = end - start;
      if (n.length === len) {
        let i = 0;
        while (i < len && n.charCodeAt(i) === buf[start + i]) i++;
        if (i === len) return last;
      }
    }
    const name = buf.toString('utf8', start, end);
    const st = this.stmts?.get(name);
    // remembered only when each character came from one byte: then equal char codes mean equal bytes (an ASCII
    // name; a replacement character for an invalid byte never equals a byte)
    if (st !== undefined && name.length === end - start) {
      this.lastName = name;
      this.lastStmt = st;
    }
    return st;
  }

  /** Drop a name from the client's statements (Close, or a Parse PostgreSQL ignored). */
  unmapStmt(name: string, st: Stmt): void {
    if (this.stmts?.get(name) !== st) return;
    this.lastStmt = null;
    this.stmts.delete(name);
    this.pooler.stmts.unrefClient(st);
  }

  /** Put a name back (a Close PostgreSQL ignored). */
  remapStmt(name: string, st: Stmt): void {
    const m = (this.stmts ??= new Map());
    if (m.has(name)) return;
    m.set(name, st);
    st.clientRefs++;
  }

  /** DEALLOCATE ALL / DISCARD ALL, or the client is gone. */
  clearStmts(): void {
    const m = this.stmts;
    if (m === null) return;
    this.stmts = null;
    this.lastStmt = null;
    for (const st of m.values()) this.pooler.stmts.unrefClient(st);
  }

  protected emit(data: Buffer): void {
    const s = this.server;
    if (!s) return;
    if (gathering === this) {
      if (gatherFirst === null && gatherLen === 0) {
        gatherFirst = data;
        return;
      }
      if (this.gatherRoom(data.length)) {
        gatherBuf.set(data, gatherLen);
        gatherLen += data.length;
        return;
      }
      // too large to gather (COPY data): what was gathered has gone first
    }
    if (!s.write(data)) this.socket.pause();
  }

  protected act(): void {
    const out = this.out;
    if (out !== null && out.length > 0) {
      for (let i = 0; i < out.length; i++) this.emit(out[i]!);
      out.length = 0;
    }
    if (this.renameBuf !== null) this.emitRenamed();
    if (this.releaseAfterRefusal) {
      this.releaseAfterRefusal = false;
      const s = this.server;
      if (s && s.outstanding === 0 && !s.dirty && s.txStatus === 0x49) s.clientAtBoundary();
    }
    if (this.terminating) this.close('client close request');
  }

  protected maxMessage(): number {
    if (this.state === ClientState.Login) return MAX_LOGIN_MESSAGE;
    return this.pooler.settings.max_packet_size;
  }

  protected onBadLength(type: number, length: number): void {
    this.fail(
      protocolViolation(
        length < 4
          ? `invalid message length ${length} for message type '${String.fromCharCode(type)}'`
          : `message too large: ${length} bytes (max_packet_size)`,
      ),
    );
  }

  // ---- startup ----

  private onStartupData(chunk: Buffer): void {
    if (chunk[0] === 0x16 && this.startBuf === null && !this.tlsStarted) {
      // a TLS ClientHello where a startup packet belongs: direct TLS (sslnegotiation=direct)
      if (this.unix || !this.pooler.clientTls) {
        log.log('direct TLS connection refused: client TLS is not enabled', this);
        this.close('direct TLS not enabled', true);
        return;
      }
      this.startTls(chunk);
      return;
    }
    let buf = this.startBuf ? Buffer.concat([this.startBuf, chunk]) : chunk;
    this.startBuf = null;
    while (!this.startupDone && !this.closed) {
      if (buf.length < 4) break;
      const len = buf.readUInt32BE(0);
      if (len < 8 || len > MAX_STARTUP_PACKET) {
        this.fail(protocolViolation('invalid length of startup packet'));
        return;
      }
      if (buf.length < len) break;
      const packet = buf.subarray(0, len);
      buf = buf.subarray(len);
      this.onStartupPacket(packet, buf.length > 0);
      if (this.tlsStarted) return;
    }
    if (this.closed) return;
    if (!this.startupDone) {
      if (buf.length > 0) this.startBuf = Buffer.from(buf);
      return;
    }
    if (buf.length > 0) this.onData(Buffer.from(buf));
  }

  private onStartupPacket(packet: Buffer, more: boolean): void {
    let p;
    try {
      p = parseStartupPacket(packet, 0, packet.length);
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.fail(protocolViolation(err.message));
        return;
      }
      throw err;
    }
    switch (p.code) {
      case StartupCode.SSLRequest:
        // PgBouncer answers 'N' on unix sockets, and to a second SSLRequest inside TLS it closes the connection
        if (this.tlsStarted) {
          this.fail(protocolViolation('SSLRequest inside TLS'));
          return;
        }
        if (!this.unix && this.pooler.clientTls) {
          // anything after the SSLRequest must come inside TLS (CVE-2021-23214): refused in plain text, no 'S'
          if (more) this.fail(protocolViolation('received unencrypted data after SSL request'));
          else this.startTls();
        }
        else this.write(SSL_NO);
        return;
      case StartupCode.GSSENCRequest:
        this.write(SSL_NO);
        return;
      case StartupCode.CancelRequest:
        this.startupDone = true;
        this.pooler.cancel(p.cancelPid!, p.cancelKey!);
        this.close('cancel request', true);
        return;
    }
    if (p.code >> 16 !== 3) {
      this.fail(
        new PoolerError(
          SqlState.FeatureNotSupported,
          `unsupported frontend protocol ${p.code >> 16}.${p.code & 0xffff}: server supports 3.0 to 3.0`,
        ),
      );
      return;
    }
    this.startupDone = true;
    this.startupParams = new Map(p.params);
    const mode = this.pooler.settings.client_tls_sslmode;
    if (!this.tlsStarted && !this.unix && (mode === 'require' || mode === 'verify-ca' || mode === 'verify-full')) {
      this.fail(new PoolerError(SqlState.InvalidAuthorizationSpecification, 'SSL required'));
      return;
    }
    const minor = p.code & 0xffff;
    try {
      this.startup(minor);
    } catch (err) {
      if (err instanceof PoolerError) this.fail(err);
      else throw err;
    }
  }

  private startup(minor: number): void {
    const params = this.startupParams!;
    const st = this.pooler.settings;
    const userName = params.get('user');
    if (!userName) throw new PoolerError(SqlState.InvalidAuthorizationSpecification, 'no username supplied');
    const dbName = params.get('database') || userName;
    const { ignored, extra } = startupLists(st);
    const protoOptions: string[] = [];
    for (const [k, v] of params) {
      const lk = k.toLowerCase();
      if (lk === 'user' || lk === 'database') continue;
      const canon = TRACKED.get(lk) ?? extra.get(lk);
      if (canon) {
        this.vars.set(canon, v);
      } else if (k.startsWith('_pq_.')) {
        protoOptions.push(k);
      } else if (lk === 'options') {
        if (!ignored.has('options')) this.parseOptions(v, extra);
      } else if (ignored.has(lk)) {
        // accepted and not passed on (PgBouncer's ignore_startup_parameters)
      } else if (!this.startupSet(lk, v)) {
        throw new PoolerError(SqlState.ProtocolViolation, `unsupported startup parameter: ${k}`);
      }
    }
    if (minor > 0 || protoOptions.length > 0) this.write(negotiateProtocolVersion(0, protoOptions));
    if (st.application_name_add_host && !this.unix) {
      const app = this.vars.get('application_name') ?? 'app'; // PgBouncer names a nameless client "app"
      this.vars.set('application_name', `${app} - ${this.addr}:${this.port}`);
    }
    this.pooler.loginClient(this, dbName, userName);
  }

  /** `options=-c name=value --name=value`: only tracked parameters are allowed (PgBouncer 1.20+). */
  private parseOptions(value: string, extra: Map<string, string>): void {
    const words = value.split(/\s+/).filter(Boolean);
    for (let i = 0; i < words.length; i++) {
      let w = words[i]!;
      if (w === '-c') {
        w = words[++i] ?? '';
      } else if (w.startsWith('-c')) {
        w = w.slice(2);
      } else if (w.startsWith('--')) {
        w = w.slice(2);
      } else {
        throw new PoolerError(
          SqlState.ProtocolViolation,
          "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed",
        );
      }
      const eq = w.indexOf('=');
      const name = eq > 0 ? w.slice(0, eq).replace(/-/g, '_') : '';
      const lname = name.toLowerCase();
      const canon = TRACKED.get(lname) ?? extra.get(lname);
      if (canon) this.vars.set(canon, w.slice(eq + 1));
      else if (!name || !this.startupSet(lname, w.slice(eq + 1))) {
        throw new PoolerError(SqlState.ProtocolViolation, `unsupported startup parameter in options: ${name || w}`);
      }
    }
  }

  /**
   * A startup setting named in track_set_parameters (node-postgres sends statement_timeout this way, libpq's
   * PGOPTIONS as `-c name=value`): kept like a SET of it, and applied on whichever server the client gets. PostgreSQL
   * checks the value when it is applied, so a bad one fails the client's first query, not its login. False when the
   * setting is not tracked.
   */
  private startupSet(name: string, value: string): boolean {
    if (!this.pooler.trackedSetNames().has(name)) return false;
    (this.setVars ??= new Map()).set(name, value);
    return true;
  }

  /** auth_query runs before authentication: what the client sends meanwhile is held. */
  awaitLookup(): void {
    this.authBusy = true;
  }

  /** The lookup is done: start authentication, then read on. */
  lookupDone(begin: () => void): void {
    this.authBusy = false;
    try {
      begin();
    } catch (err) {
      if (err instanceof PoolerError) this.fail(err);
      else throw err;
      return;
    }
    const held = this.stash;
    this.stash = null;
    if (held && !this.closed) for (const c of held) this.onData(c);
    if (!this.closed && this.state === ClientState.Login) this.socket.resume();
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Called by the pooler once db and user are known: start authentication. */
  beginAuth(db: Database | null, user: User, dbName: string): void {
    this.db = db;
    this.user = user;
    this.dbName = dbName;
    const st = this.pooler.settings;
    if (st.log_connections) log.log(`login attempt: db=${dbName} user=${user.name} tls=${this.tls}`, this);
    if (st.auth_type === 'any' && db && !db.entry.user) {
      log.error('auth_type=any requires forced user', this);
      throw new PoolerError(SqlState.InvalidAuthorizationSpecification, 'bouncer config error');
    }
    if (st.auth_type === 'trust' && user.secret === undefined && !user.entry) {
      throw new PoolerError(SqlState.InvalidAuthorizationSpecification, '"trust" authentication failed');
    }
    const method = this.authMethod(dbName, user.name);
    if (method === 'cert') this.checkCertificate(user.name);
    this.auth = authFlowFor(method === 'cert' ? 'trust' : method, user.name, user.secret);
    if (!this.auth) {
      this.authenticated();
      return;
    }
    this.write(this.auth.start());
  }

  /** The method for this login: auth_type, or with auth_type = hba the first matching line of auth_hba_file. */
  private authMethod(dbName: string, userName: string): string {
    const type = this.pooler.settings.auth_type;
    if (type !== 'hba') return type;
    const host = this.unix ? '[local]' : this.addr;
    const enc = this.tls !== 'no' ? 'SSL encryption' : 'no encryption';
    const m = this.pooler.hba?.match({ local: this.unix, tls: this.tls !== 'no', database: dbName, user: userName, addr: this.addr });
    if (!m) {
      throw new PoolerError(SqlState.InvalidAuthorizationSpecification, `no pg_hba.conf entry for host "${host}", user "${userName}", database "${dbName}", ${enc}`);
    }
    switch (m.method) {
      case 'reject':
        throw new PoolerError(SqlState.InvalidAuthorizationSpecification, `pg_hba.conf rejects connection for host "${host}", user "${userName}", database "${dbName}", ${enc}`);
      case 'peer':
        // Node cannot read a unix-socket peer's credentials
        log.log(`peer authentication is not supported (auth_hba_file line ${m.line})`, this);
        throw new PoolerError(SqlState.InvalidAuthorizationSpecification, `peer authentication failed for user "${userName}"`);
      case 'password':
        return 'plain';
      default:
        return m.method;
    }
  }

  /** cert: a client certificate, verified at the TLS handshake (client_tls_sslmode verify-ca/full), whose CN is the user. */
  private checkCertificate(userName: string): void {
    const sock = this.socket as tls.TLSSocket;
    const cert = this.tls !== 'no' && typeof sock.getPeerCertificate === 'function' ? sock.getPeerCertificate() : null;
    if (!cert || !cert.subject) {
      throw new PoolerError(SqlState.InvalidAuthorizationSpecification, 'connection requires a valid client certificate');
    }
    const cn = cert.subject.CN;
    if (cn !== userName) {
      log.log(`certificate authentication failed: the certificate's CN "${String(cn)}" is not the user name`, this);
      throw new PoolerError(SqlState.InvalidAuthorizationSpecification, `certificate authentication failed for user "${userName}"`);
    }
  }

  /** Console welcome: AuthenticationOk, the given ParameterStatus messages, BackendKeyData, ReadyForQuery. */
  finishAdminLogin(params: Buffer): void {
    nextCancelKey(this); // a key the client may use; the console has nothing to cancel
    this.state = ClientState.Active;
    this.startupParams = null;
    this.write(this.welcomeMessage(params));
  }

  /** The end of a login: SASL's last message if any, AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery. */
  private welcomeMessage(params: Buffer): Buffer {
    const prefix = this.loginPrefix;
    this.loginPrefix = null;
    const bkd = backendKeyData(this.cancelPid, this.cancelKey);
    return prefix === null ? Buffer.concat([AUTH_OK, params, bkd, READY_IDLE]) : Buffer.concat([prefix, AUTH_OK, params, bkd, READY_IDLE]);
  }

  private authenticated(): void {
    try {
      this.pooler.clientAuthenticated(this, this.dbName);
    } catch (err) {
      if (err instanceof PoolerError) this.fail(err);
      else throw err;
    }
  }

  /** Send AuthenticationOk and the welcome (ParameterStatus, BackendKeyData, ReadyForQuery). */
  finishLogin(): void {
    const pool = this.pool!;
    const welcome = pool.welcome!;
    for (const [name, value] of pool.trackedDefaults(this.pooler.settings.track_extra_parameters)) {
      if (!this.vars.has(name)) this.vars.set(name, value);
    }
    this.varsKeyCache = null;
    let key = this.varsKey();
    // clients with the same settings share one copy of them (and of their key): idle clients stay small
    const shared = pool.sharedVars.get(key);
    if (shared !== undefined) {
      this.vars = shared.vars;
      this.varsKeyCache = key = shared.key;
      this.varsShared = true;
    } else if (pool.sharedVars.size < 64) {
      pool.sharedVars.set(key, { vars: this.vars, key });
      this.varsShared = true;
    }
    let params = pool.welcomeCache.get(key);
    if (!params) {
      const parts: Buffer[] = [];
      for (const [name, value] of welcome) parts.push(parameterStatus(name, this.vars.get(name) ?? value));
      for (const [name, value] of this.vars) if (!welcome.has(name)) parts.push(parameterStatus(name, value));
      params = Buffer.concat(parts);
      if (pool.welcomeCache.size < 64) pool.welcomeCache.set(key, params);
    }
    nextCancelKey(this);
    this.pooler.registerCancelKey(this);
    this.write(this.welcomeMessage(params));
    this.startupParams = null; // what is needed of it is in vars and user by now (idle clients stay small)
    pool.setClientState(this, ClientState.Active);
    if (this.stash) pool.requestServer(this);
  }

  // ---- errors and closing ----

  /** Send the error to the client (if it can still hear) and close. */
  fail(err: PoolerError): void {
    if (this.closed) return;
    if (this.pooler.settings.log_pooler_errors) log.warning(`pooler error: ${err.message}`, this);
    this.writer.flushSoon();
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(err.toMessage());
    this.close(err.message);
  }

  close(reason: string, quiet = false): void {
    if (this.closed) return;
    this.closed = true;
    this.stopped = true;
    this.forwarding = false;
    const st = this.pooler.settings;
    if (!quiet && st.log_disconnections && this.startupDone) {
      log.log(`closing because: ${reason} (age=${Math.round((clock.now - this.connectTime) / 1000)}s)`, this);
    }
    const s = this.server;
    this.server = null;
    if (s) {
      s.client = null;
      s.unpause();
      // a clean server goes back to the pool; anything else (request in flight, open transaction, COPY,
      // unsynced extended-protocol state, a half-sent message) is closed, as PgBouncer does. What was
      // already sent still reaches PostgreSQL: close() lets queued bytes drain before the socket goes.
      if (this.stateCheckDue() && this.guard) s.close('client with session state left'); // never handed on
      else if (s.outstanding === 0 && !s.dirty && !s.copyIn && !s.busyInternal() && s.txStatus === 0x49 && s.replies.count === 0 && this.atBoundary())
        s.pool.release(s);
      else s.close('client disconnect while server was not ready');
    }
    this.stash = null;
    this.clearStmts();
    if (this.listening !== null) this.pooler.notify.clientGone(this);
    this.pooler.clientGone(this);
    const sock = this.socket;
    if (!sock.destroyed) {
      this.writer.flushSoon();
      if (this.writer.queued()) sock.end(() => sock.destroy());
      else sock.destroy();
    }
  }
}

/** The first non-blank byte of a Query's text is L or U: it may be LISTEN or UNLISTEN (parseListen decides). */
function mayBeListen(q: Buffer): boolean {
  for (let i = 5; i < q.length; i++) {
    const b = q[i]!;
    if (b === 0x20 || (b >= 0x09 && b <= 0x0d)) continue;
    return (b | 0x20) === 0x6c || (b | 0x20) === 0x75;
  }
  return false;
}

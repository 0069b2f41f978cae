// A raw protocol client for tests that need exact control of the bytes: typed messages, awaitable reads,
// md5/cleartext/trust login, simple queries, and the extended-protocol messages built by hand.

import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash } from 'node:crypto';
import type { Pgtide } from './pgtide.js';

export const V3 = 196608;
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;

export interface Msg { type: string; body: Buffer }

/** A raw protocol connection with a byte buffer and awaitable reads. */
export class Raw {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  /** Our side's port, kept after close (log lines name the client by it). */
  readonly localPort: number;
  private constructor(readonly sock: net.Socket) {
    this.localPort = sock.localPort!;
    sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.wake(); });
    sock.on('close', () => { this.closed = true; this.wake(); });
    sock.on('error', () => { /* close follows */ });
  }

  static open(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      sock.once('connect', () => resolve(new Raw(sock)));
      sock.once('error', reject);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolve once `n` bytes are buffered; null if the connection closed first. Rejects after `ms`. */
  private async need(n: number, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.buf.length < n) {
      if (this.closed) return false;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`raw: timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, left);
        this.waiters.push(() => { clearTimeout(timer); r(); });
      });
    }
    return true;
  }

  send(...data: Buffer[]): void { this.sock.write(data.length === 1 ? data[0]! : Buffer.concat(data)); }

  async byte(ms = 3000): Promise<string | null> {
    if (!(await this.need(1, ms))) return null;
    const b = this.buf.subarray(0, 1).toString('latin1');
    this.buf = this.buf.subarray(1);
    return b;
  }

  /** Next typed message, or null when the connection closed. */
  async msg(ms = 3000): Promise<Msg | null> {
    if (!(await this.need(5, ms))) return null;
    const len = this.buf.readInt32BE(1);
    if (!(await this.need(1 + len, ms))) return null;
    const m: Msg = { type: String.fromCharCode(this.buf[0]!), body: Buffer.from(this.buf.subarray(5, 1 + len)) };
    this.buf = this.buf.subarray(1 + len);
    return m;
  }

  /** Read messages until one of `type` arrives (returned); null when the connection closed first. */
  async until(type: string, ms = 3000): Promise<Msg | null> {
    for (;;) {
      const m = await this.msg(ms);
      if (!m || m.type === type) return m;
    }
  }

  /** Resolves true once the pooler closed the connection (within ms). */
  async closedWithin(ms = 3000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) {
      if (this.buf.length) this.buf = Buffer.alloc(0);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => { clearTimeout(timer); r(); });
      });
    }
    return this.closed;
  }

  destroy(): void { this.sock.destroy(); }
  close(): void { this.sock.destroy(); }
}

export function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const code = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    out[code] = body.subarray(i + 1, end).toString('utf8');
    i = end + 1;
  }
  return out;
}

export function startupPacket(params: Record<string, string>, version = V3): Buffer {
  const body = Buffer.from(Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('') + '\0');
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(version, 4);
  return Buffer.concat([head, body]);
}

export function special(code: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(code, 4);
  return b;
}

export function typed(type: string, body: Buffer | string): Buffer {
  const data = typeof body === 'string' ? Buffer.from(body) : body;
  const b = Buffer.alloc(5);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + data.length, 1);
  return Buffer.concat([b, data]);
}

export const query = (sql: string) => typed('Q', sql + '\0');

/** Expect an ErrorResponse (fields returned) followed by the pooler closing the connection. */
export async function expectErrorAndClose(r: Raw, code: RegExp | string, msg?: RegExp): Promise<Record<string, string>> {
  const m = await r.msg();
  assert.ok(m, 'connection closed without an ErrorResponse');
  assert.equal(m.type, 'E', `expected ErrorResponse, got '${m.type}'`);
  const f = errorFields(m.body);
  if (typeof code === 'string') assert.equal(f.C, code, `SQLSTATE ${f.C}: ${f.M}`);
  else assert.match(f.C ?? '', code, `SQLSTATE ${f.C}: ${f.M}`);
  if (msg) assert.match(f.M ?? '', msg);
  assert.equal(f.S, 'FATAL');
  assert.ok(await r.closedWithin(3000), 'the pooler did not close the connection after the error');
  return f;
}

/** Complete an md5/cleartext/trust login on a raw connection whose startup was already sent; resolves at ReadyForQuery. */
export async function finishLogin(r: Raw, user: string, password: string): Promise<{ pid: number; key: number }> {
  let keys = { pid: 0, key: 0 };
  for (;;) {
    const m = await r.msg();
    assert.ok(m, 'closed during login');
    if (m.type === 'E') assert.fail(`login failed: ${errorFields(m.body).M}`);
    if (m.type === 'R') {
      const code = m.body.readInt32BE(0);
      if (code === 5) {
        const inner = createHash('md5').update(password + user).digest('hex');
        const outer = 'md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), m.body.subarray(4, 8)])).digest('hex');
        r.send(typed('p', outer + '\0'));
      } else if (code === 3) {
        r.send(typed('p', password + '\0'));
      } else assert.equal(code, 0, `unexpected auth request ${code}`);
    } else if (m.type === 'K') {
      keys = { pid: m.body.readInt32BE(0), key: m.body.readInt32BE(4) };
    } else if (m.type === 'Z') {
      return keys;
    }
  }
}

export async function rawLogin(b: Pgtide, user = 'app', password = 'apppass', db = 'app'): Promise<Raw> {
  const r = await Raw.open(b.port);
  r.send(startupPacket({ user, database: db }));
  await finishLogin(r, user, password);
  return r;
}

/** Run a simple query on a logged-in raw connection; returns the first column of the first row. */
export async function rawSelect(r: Raw, sql: string): Promise<string | null> {
  r.send(query(sql));
  let value: string | null = null;
  for (;;) {
    const m = await r.msg();
    assert.ok(m, 'closed during query');
    if (m.type === 'E') assert.fail(`query failed: ${errorFields(m.body).M}`);
    if (m.type === 'D' && value === null) {
      const len = m.body.readInt32BE(2);
      value = len < 0 ? null : m.body.subarray(6, 6 + len).toString('utf8');
    }
    if (m.type === 'Z') return value;
  }
}

// ---- extended protocol ----

const cstr = (s: string) => Buffer.from(s + '\0');
const i16 = (n: number) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
const i32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };

/** Parse(name, sql, parameter type oids). */
export const parse = (name: string, sql: string, types: number[] = []) =>
  typed('P', Buffer.concat([cstr(name), cstr(sql), i16(types.length), ...types.map(i32)]));
/** Bind(portal, statement, text parameters), text results. */
export const bind = (stmt: string, params: (string | null)[] = [], portal = '') =>
  typed('B', Buffer.concat([
    cstr(portal), cstr(stmt), i16(0), i16(params.length),
    ...params.map((p) => (p === null ? i32(-1) : Buffer.concat([i32(Buffer.byteLength(p)), Buffer.from(p)]))),
    i16(0),
  ]));
export const describe = (kind: 'S' | 'P', name: string) => typed('D', Buffer.concat([Buffer.from(kind), cstr(name)]));
export const execute = (portal = '', maxRows = 0) => typed('E', Buffer.concat([cstr(portal), i32(maxRows)]));
export const closeMsg = (kind: 'S' | 'P', name: string) => typed('C', Buffer.concat([Buffer.from(kind), cstr(name)]));
export const sync = () => typed('S', '');
export const flush = () => typed('H', '');

/** A DataRow body as `D:<col>,<col>…` (text columns; `null` for NULL). */
export function dataRowText(body: Buffer): string {
  const cols: string[] = [];
  let pos = 2;
  for (let i = body.readInt16BE(0); i > 0; i--) {
    const len = body.readInt32BE(pos);
    pos += 4;
    cols.push(len < 0 ? 'null' : body.subarray(pos, pos + len).toString('utf8'));
    if (len > 0) pos += len;
  }
  return `D:${cols.join(',')}`;
}

/** Messages up to and including the next ReadyForQuery, as type letters; DataRow first columns and errors' SQLSTATE/message added. */
export async function replies(r: Raw, ms = 5000): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const m = await r.msg(ms);
    if (!m) {
      out.push('closed');
      return out;
    }
    if (m.type === 'D') {
      out.push(dataRowText(m.body));
    } else if (m.type === 'E') {
      const f = errorFields(m.body);
      out.push(`E:${f.C}:${f.M}`);
    } else if (m.type === 'C') {
      out.push(`C:${m.body.subarray(0, m.body.length - 1).toString('utf8')}`);
    } else out.push(m.type);
    if (m.type === 'Z') return out;
  }
}

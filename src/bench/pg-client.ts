/* A small PostgreSQL client for `pgtide bench`: connect (TLS by sslmode, cleartext/md5/SCRAM-SHA-256 login), run simple
 * queries, rows as text. Used to check a target before a run and to watch pg_stat_activity during it. */

import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { md5Response } from '../auth/md5.js';
import { SCRAM_MECHANISM, ScramClientExchange } from '../auth/scram.js';
import { AuthCode, BE, StartupCode } from '../protocol/codes.js';
import { passwordMessage, query, saslInitialResponse, saslResponse, startupMessage, TERMINATE } from '../protocol/messages.js';
import type { BenchTarget } from './target.js';

export type Rows = (string | null)[][];

/** An error PostgreSQL (or a pooler) sent, or a connection failure (code undefined). */
export class PgClientError extends Error {
  /** 'connect': no connection was made (refused, unknown host, timeout); else the login or a query failed. */
  stage: 'connect' | 'session' = 'session';

  constructor(message: string, readonly code?: string, readonly severity?: string) {
    super(message);
    this.name = 'PgClientError';
  }
}

interface Msg {
  type: number;
  body: Buffer;
}


/** ErrorResponse/NoticeResponse fields into an error. */
function errorFrom(body: Buffer): PgClientError {
  const f: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const key = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    if (end < 0) break;
    f[key] = body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return new PgClientError(f.M ?? 'unknown server error', f.C, f.V ?? f.S);
}

export interface ConnectOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  applicationName?: string;
}

export class PgClient {
  private buf: Buffer = Buffer.alloc(0);
  private readonly inbox: Msg[] = [];
  private wake: (() => void) | null = null;
  private failure: Error | null = null;
  private busy: Promise<unknown> = Promise.resolve();
  /** The backend's pid from BackendKeyData (the pooler's fake one through a pooler). */
  backendPid = 0;
  /** Milliseconds from the TCP connect call until the first ReadyForQuery. */
  setupMs = 0;
  /** Whether the connection uses TLS. */
  tls = false;
  readonly parameters = new Map<string, string>();

  private constructor(private socket: Socket) {}

  /** Connect and log in; rejects with a PgClientError naming what failed. */
  static async connect(t: BenchTarget, opts: ConnectOptions = {}): Promise<PgClient> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const t0 = process.hrtime.bigint();

    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = t.host.startsWith('/') ? netConnect({ path: `${t.host}/.s.PGSQL.${t.port}` }) : netConnect({ host: t.host, port: t.port });
      const fail = (why: string) => {
        const e = new PgClientError(why);
        e.stage = 'connect';
        reject(e);
      };
      const timer = setTimeout(() => {
        s.destroy();
        fail(`timed out after ${timeoutMs / 1000} s`);
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        fail(e.code === 'ECONNREFUSED' ? 'connection refused (is the server running there?)' : e.code === 'ENOTFOUND' ? `unknown host ${t.host}` : e.message);
      });
    });
    socket.setNoDelay(true);
    const client = new PgClient(socket);
    const timer = setTimeout(() => client.fail(new PgClientError(`no answer to the login within ${timeoutMs / 1000} s`)), timeoutMs);
    try {
      if (t.sslmode === 'prefer' || t.sslmode === 'require') await client.negotiateTls(t.sslmode, t.host);
      client.listen();
      await client.login(t, opts.applicationName ?? 'pgtide-bench');
    } catch (e) {
      client.socket.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    client.setupMs = Number(process.hrtime.bigint() - t0) / 1e6;
    return client;
  }

  private async negotiateTls(mode: 'prefer' | 'require', host: string): Promise<void> {
    const req = Buffer.allocUnsafe(8);
    req.writeInt32BE(8, 0);
    req.writeInt32BE(StartupCode.SSLRequest, 4);
    const answer = await new Promise<number>((resolve, reject) => {
      this.socket.once('data', (d: Buffer) => {
        this.socket.pause();
        this.socket.removeAllListeners('error');
        if (d.length !== 1) reject(new PgClientError('unexpected answer to SSLRequest'));
        else resolve(d[0]!);
      });
      this.socket.once('error', (e) => reject(new PgClientError(`connection lost during TLS negotiation: ${e.message}`)));
      this.socket.write(req);
    });
    if (answer === 0x4e /* N */) {
      if (mode === 'require') throw new PgClientError('the server does not support SSL, but sslmode=require was given');
      return;
    }
    if (answer !== 0x53 /* S */) throw new PgClientError('unexpected answer to SSLRequest');
    // sslmode=require, as libpq without a root certificate: encrypted, the certificate is not verified
    const tls = tlsConnect({ socket: this.socket, rejectUnauthorized: false, servername: /^[\d.:]+$/.test(host) || host.startsWith('/') ? undefined : host });
    await new Promise<void>((resolve, reject) => {
      tls.once('secureConnect', () => {
        tls.removeAllListeners('error');
        resolve();
      });
      tls.once('error', (e) => reject(new PgClientError(`TLS handshake failed: ${e.message}`)));
    });
    this.socket = tls;
    this.tls = true;
  }

  private listen(): void {
    this.socket.on('data', (chunk: Buffer) => this.push(chunk));
    this.socket.on('error', (e) => this.fail(new PgClientError(`connection lost: ${e.message}`)));
    this.socket.on('close', () => this.fail(new PgClientError('the server closed the connection')));
    this.socket.resume();
  }

  private push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 5) {
      const len = this.buf.readInt32BE(1);
      if (len < 4 || len > 64 << 20) {
        this.fail(new PgClientError(`bad message length ${len} from the server`));
        return;
      }
      if (this.buf.length < 1 + len) break;
      this.inbox.push({ type: this.buf[0]!, body: this.buf.subarray(5, 1 + len) });
      this.buf = this.buf.subarray(1 + len);
    }
    this.wake?.();
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.socket.destroy();
    this.wake?.();
  }

  private async next(): Promise<Msg> {
    for (;;) {
      const m = this.inbox.shift();
      if (m) return m;
      if (this.failure) throw this.failure;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }

  private send(b: Buffer): void {
    this.socket.write(b);
  }

  private async login(t: BenchTarget, applicationName: string): Promise<void> {
    this.send(startupMessage([['user', t.user], ['database', t.database], ['application_name', applicationName]]));
    let scram: ScramClientExchange | null = null;
    for (;;) {
      const m = await this.next();
      switch (m.type) {
        case BE.Authentication: {
          const code = m.body.readInt32BE(0);
          if (code === AuthCode.Ok) break;
          if (code === AuthCode.CleartextPassword) this.send(passwordMessage(t.password));
          else if (code === AuthCode.MD5Password) this.send(passwordMessage(md5Response(t.user, t.password, m.body.subarray(4, 8))));
          else if (code === AuthCode.SASL) {
            const mechs = m.body.toString('utf8', 4).split('\0').filter(Boolean);
            if (!mechs.includes(SCRAM_MECHANISM)) throw new PgClientError(`the server offers no supported SASL mechanism (${mechs.join(', ')})`);
            scram = new ScramClientExchange({ password: t.password });
            this.send(saslInitialResponse(SCRAM_MECHANISM, scram.clientFirst()));
          } else if (code === AuthCode.SASLContinue && scram) {
            this.send(saslResponse(await scram.serverFirst(m.body.subarray(4))));
          } else if (code === AuthCode.SASLFinal && scram) {
            scram.serverFinal(m.body.subarray(4));
          } else throw new PgClientError(`authentication method ${code} is not supported by pgtide bench`);
          break;
        }
        case BE.ErrorResponse:
          throw errorFrom(m.body);
        case BE.ParameterStatus: {
          const nul = m.body.indexOf(0);
          this.parameters.set(m.body.toString('utf8', 0, nul), m.body.toString('utf8', nul + 1, m.body.length - 1));
          break;
        }
        case BE.BackendKeyData:
          this.backendPid = m.body.readInt32BE(0);
          break;
        case BE.ReadyForQuery:
          return;
        default:
          break; // NoticeResponse, NegotiateProtocolVersion
      }
    }
  }

  /** Run one simple query (statements run one after another); resolves with the rows of all its results as text. */
  query(sql: string): Promise<Rows> {
    const run = this.busy.then(() => this.runQuery(sql));
    this.busy = run.catch(() => undefined);
    return run;
  }

  private async runQuery(sql: string): Promise<Rows> {
    this.send(query(sql));
    const rows: Rows = [];
    let error: PgClientError | null = null;
    for (;;) {
      const m = await this.next();
      if (m.type === BE.DataRow) {
        const n = m.body.readInt16BE(0);
        const row: (string | null)[] = [];
        let pos = 2;
        for (let i = 0; i < n; i++) {
          const len = m.body.readInt32BE(pos);
          pos += 4;
          if (len < 0) row.push(null);
          else {
            row.push(m.body.toString('utf8', pos, pos + len));
            pos += len;
          }
        }
        rows.push(row);
      } else if (m.type === BE.ErrorResponse) error = errorFrom(m.body);
      else if (m.type === BE.ReadyForQuery) {
        if (error) throw error;
        return rows;
      }
    }
  }

  /** Send Terminate and close. */
  close(): void {
    if (this.failure) return;
    this.failure = new PgClientError('connection closed');
    try {
      this.socket.end(TERMINATE);
    } catch {
      /* already gone */
    }
  }
}

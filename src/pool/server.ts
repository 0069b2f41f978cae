/* Server connections: logging in to PostgreSQL, running the pooler's own queries, and carrying replies
 * back to the linked client. Pooling decisions are made at ReadyForQuery. */

import net from 'node:net';
import tls from 'node:tls';
import { tlsDescription } from '../net/tls.js';
import { performance } from 'node:perf_hooks';
import { AuthCode, BE, TxStatus } from '../protocol/codes.js';
import {
  parseErrorBody,
  passwordMessage,
  query,
  saslInitialResponse,
  saslResponse,
  startupMessage,
  cancelRequest,
  TERMINATE,
} from '../protocol/messages.js';

/** SSLRequest: length 8, code 80877103. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
import { Reader } from '../protocol/reader.js';
import { SqlState } from '../protocol/sqlstate.js';
import { Framer, Verdict } from '../net/framer.js';
import { PoolerError } from '../util/errors.js';
import { clock } from '../util/clock.js';
import { log } from '../util/log.js';
import { md5Response, isMd5Secret } from '../auth/md5.js';
import { ScramClientExchange, isScramSecret, SCRAM_MECHANISM } from '../auth/scram.js';
import type { ListNode, StatList } from './list.js';
import type { ClientConn } from './client.js';
import type { Pool } from './pool.js';
import type { Pooler } from '../pooler.js';
import { ServerState, SERVER_STATE_NAMES } from './states.js';
import { CLOSE_CHECK, FX_NAMED, FX_UNNAMED, FX_OWN_UNNAMED, PARSE_COMPLETE, ReplyQueue, Rq, RQ_ENDS, RQ_FLAGS, RQ_STMTS, RQ_UNNAMED, type Stmt } from './prepared.js';
import { applySql, readStateCheck, Reason, STATE_CHECK_SQL } from './session-state.js';
import type { ServiceConn } from './service-conn.js';
import { SocketWriter } from '../net/socket-writer.js';
import { ioActivity } from '../net/spin.js';
import { newServerId } from '../cluster/identity.js';

const enum After {
  None = 0,
  /** End of transaction/statement: give the server back to the pool. */
  Release = 1,
  /** Statement mode saw a transaction block. */
  StatementTx = 2,
  /** A Bind failed because of the pooler's shared statement: prepare it afresh and send the batch again. */
  Retry = 3,
  /** The client waited for earlier batches' answers before a statement message: it may go on. */
  Resume = 4,
}

/**
 * A batch that can be sent again if its first Bind fails because of the pooler (see prepared.ts, Retry). One per
 * server, reused by each batch it keeps (no allocation per Bind).
 */
interface Capture {
  /** The statement the batch's first Bind uses. */
  st: Stmt | null;
  /** The client's bytes from that Bind to the Sync, as the client sent them: buf[start..end) (a client read buffer, never reused). */
  buf: Buffer;
  start: number;
  end: number;
  /** Requests recorded for them (Bind … Sync). */
  entries: number;
}

const NO_BYTES = Buffer.alloc(0);

/** Quote a value for SET ... = '<value>'. */
function quoteLiteral(v: string): string {
  return "'" + v.replace(/'/g, "''") + "'";
}

/** Size of each server connection's read buffer (PgBouncer's pkt_buf is 4 KB; Node reads 64 KB by default). */
const READ_BUF_SIZE = 32 * 1024;

export class ServerConn extends Framer implements ListNode {
  prev: ListNode | null = null;
  next: ListNode | null = null;
  list: StatList<ListNode> | null = null;

  readonly id = newServerId();
  state = ServerState.Login;
  socket: net.Socket | null = null;
  /** Writes to `socket` (socket-writer.ts). */
  private writer: SocketWriter | null = null;
  client: ClientConn | null = null;

  /** Requests sent (Query, Sync, FunctionCall) not yet answered by ReadyForQuery. */
  outstanding = 0;
  /** Extended-protocol messages sent since the last Sync: the server holds unsynced state. */
  dirty = false;
  /** Between CopyInResponse and CopyDone/CopyFail/ErrorResponse. */
  copyIn = false;
  txStatus: number = TxStatus.Idle;
  /** The client varsKey the server's settings were last found or made equal to (null: unknown). */
  paramsKey: string | null = null;
  /** Values the server reported with ParameterStatus (its current settings). */
  readonly params = new Map<string, string>();
  /** The pooler's own use (LISTEN connection, auth_query; service-conn.ts): never given to a client. */
  owner: ServiceConn | null = null;
  /** track_set_parameters settings this session has SET (name → value): reset for a client without them. */
  setVars: Map<string, string> | null = null;
  backendPid = 0;
  backendKey = 0;
  readonly connectTime = clock.now;
  idleSince = clock.now;
  linkedAt = 0;
  /** performance.now() when the current request started (query_timeout, query_time). */
  requestStart = 0;
  /** performance.now() when the current transaction started (0 = none open). */
  xactStart = 0;
  /** Close when next released (RECONNECT, changed connstring). */
  closeNeeded = false;
  /** workers > 1: the connection holds a global slot granted by the primary. */
  slot = false;
  /** workers > 1: closed to give its slot to another worker. */
  surrendered = false;
  /** The socket is paused because the client cannot take more. */
  pausedForClient = false;
  /** Cancel requests forwarded for this backend that PostgreSQL has not closed yet (PgBouncer's sv_being_canceled). */
  cancelsInFlight = 0;
  /** Released while cancels were in flight: parked until they are done, so a late cancel cannot hit another client. */
  heldForCancel = false;
  /** Release deferred because the client was in the middle of a message (a COPY failed under it): done at its end. */
  releaseWhenClientDone = false;
  /** Prepared statements are tracked while linked (transaction/statement mode): requests are recorded in `replies`. */
  tracking = false;
  /** What the requests sent while tracking will be answered with (see prepared.ts). */
  readonly replies = new ReplyQueue();
  /** Statements prepared on this server, with when each was last used (for evicting the least recently used). */
  stmts: Map<Stmt, number> | null = null;
  private stmtTick = 0;
  /**
   * The session's unnamed statement as of the requests PostgreSQL has answered: the Parse message that made it (the
   * very buffer its client keeps as ClientConn.unnamedStmt), null when there is none, UNNAMED_UNKNOWN when a link
   * without tracking may have changed it. A client's unnamed statement outlives its transaction in its own session;
   * in transaction pooling another client may have replaced it on this server since.
   */
  unnamed: Buffer | null = null;
  /** Requests of the current link that change the unnamed statement (recorded, not answered yet). */
  private unnamedPending = 0;
  /** An error arrived before the Sync that ends its batch: requests up to that Sync are ignored by PostgreSQL. */
  private discarding = false;
  /** Pooler-made ParseCompletes reached the front of `replies`: send them once the current message is out. */
  private fakesDue = false;
  /** An Execute, Query or FunctionCall was sent since the last Sync: a failure now is not safe to retry. */
  private batchExecuted = false;
  /** The current batch, kept for a retry (only when nothing of it has run and no transaction is open). */
  capture: Capture | null = null;
  private readonly captureSlot: Capture = { st: null, buf: NO_BYTES, start: 0, end: 0, entries: 0 };
  /** A retry is under way: the failed batch's ErrorResponse was hidden, its ReadyForQuery will be too. */
  private retry: Capture | null = null;

  /** `TLSv1.3/<cipher>` once the connection to PostgreSQL is encrypted, else '' (SHOW SERVERS, log). */
  tls = '';
  /** An SSLRequest was sent: the next byte is PostgreSQL's answer ('S' or 'N'). */
  private sslPending = false;
  private inLogin = true;
  private scram: ScramClientExchange | null = null;
  private internalDone: ((err: PoolerError | null) => void) | null = null;
  private internalError: PoolerError | null = null;
  /** Rows of the running internal query, when its caller wants them (runInternal with rows). */
  private internalRows: (string | null)[][] | null = null;
  private after = After.None;
  private closed = false;
  private remoteDesc = '';
  private localDesc = '';
  private readonly reader = new Reader(Buffer.alloc(0));
  /** Where replies are read to (see connect()). */
  private readBuf = Buffer.allocUnsafe(READ_BUF_SIZE);

  constructor(
    readonly pooler: Pooler,
    readonly pool: Pool,
  ) {
    super();
  }

  get stateName(): string {
    return SERVER_STATE_NAMES[this.state];
  }

  logPrefix(): string {
    return `S-${this.id}: ${this.pool.db.name}/${this.pool.user.name}@${this.remoteDesc}`;
  }

  private target(): { host?: string; port: number; path?: string } {
    const e = this.pool.db.entry;
    const port = e.port;
    let host = e.host;
    if (host && host.includes(',')) {
      const hosts = host.split(',').map((h) => h.trim()).filter(Boolean);
      host = hosts[this.id % hosts.length];
    }
    if (!host) host = this.pooler.settings.unix_socket_dir || '/tmp';
    if (host.startsWith('/')) return { path: `${host}/.s.PGSQL.${port}`, port };
    return { host, port };
  }

  // ---- connect and login ----

  connect(): void {
    const t = this.target();
    this.remoteDesc = t.path ? `unix:${t.path}` : `${t.host}:${t.port}`;
    // Replies are read into a buffer this connection reuses (no Readable stream machinery per chunk). The
    // bytes are forwarded as subarrays of it; if the client could not take them at once (its socket queued the
    // write), the queued write keeps that buffer and the next read gets a fresh one.
    const onread = { buffer: () => this.readBuf, callback: (n: number, buf: Uint8Array) => this.onRead(n, buf) };
    const sock = t.path
      ? net.connect({ path: t.path, onread })
      : net.connect({ host: t.host!, port: t.port, onread });
    this.socket = sock;
    this.writer = new SocketWriter(sock, this);
    sock.setNoDelay(true);
    if (this.pooler.settings.tcp_keepalive && !t.path) sock.setKeepAlive(true);
    sock.on('connect', () => this.onConnect());
    sock.on('error', (err: Error) => this.onSocketError(err));
    sock.on('close', () => this.onSocketClose());
  }

  private onRead(n: number, buf: Uint8Array): boolean {
    ioActivity();
    if (this.sslPending) {
      this.onSslAnswer(buf as Buffer, n);
      return !this.closed;
    }
    try {
      this.feed((buf as Buffer).subarray(0, n));
    } catch (err) {
      log.error(`internal error on server connection: ${(err as Error).stack ?? err}`, this);
      this.close('internal error');
      return false;
    }
    const c = this.client;
    if (buf === this.readBuf && (this.pausedForClient || (c !== null && c.writeQueued()))) this.readBuf = Buffer.allocUnsafe(READ_BUF_SIZE);
    return !this.pausedForClient && !this.closed;
  }

  private onConnect(): void {
    const sock = this.socket!;
    this.localDesc = sock.localAddress ? `${sock.localAddress}:${sock.localPort}` : 'unix socket';
    // server_tls_sslmode: ask for TLS first (never over a unix socket, as PgBouncer)
    if (this.pooler.serverTls !== null && !this.target().path) {
      this.sslPending = true;
      sock.write(SSL_REQUEST);
      return;
    }
    this.sendStartup();
  }

  /** PostgreSQL's one-byte answer to the SSLRequest. */
  private onSslAnswer(buf: Buffer, n: number): void {
    this.sslPending = false;
    const mode = this.pooler.serverTls?.mode ?? 'prefer';
    if (n !== 1) {
      // anything after the answer would have been sent before encryption: refuse it (CVE-2021-23222)
      this.loginFailed(protocolError(n === 0 ? 'server closed the connection' : 'server sent unencrypted data after its SSL answer'), 'protocol error');
      return;
    }
    if (buf[0] === 0x53 /* S */) {
      setImmediate(() => this.startTls());
    } else if (buf[0] === 0x4e /* N */) {
      if (mode !== 'prefer') {
        this.loginFailed(
          new PoolerError(SqlState.SqlclientUnableToEstablishSqlconnection, `server does not support TLS, but server_tls_sslmode is ${mode}`),
          'server refused TLS',
        );
        return;
      }
      this.sendStartup();
    } else {
      this.loginFailed(protocolError(`unexpected answer to SSLRequest: byte ${buf[0]}`), 'protocol error');
    }
  }

  /** 'S': continue inside TLS on the same socket; replies then come as the TLS socket's 'data' events. */
  private startTls(): void {
    if (this.closed) return;
    const stls = this.pooler.serverTls!;
    const t = this.target();
    const raw = this.socket!;
    const verify = stls.mode === 'verify-ca' || stls.mode === 'verify-full';
    const ts = tls.connect({
      socket: raw,
      secureContext: stls.context,
      host: t.host,
      servername: t.host && net.isIP(t.host) === 0 ? t.host : undefined,
      rejectUnauthorized: verify,
      // verify-ca: the chain is checked, the name is not
      checkServerIdentity: stls.mode === 'verify-full' ? tls.checkServerIdentity : () => undefined,
    });
    this.socket = ts;
    this.writer = new SocketWriter(ts, this);
    ts.on('data', (chunk: Buffer) => this.onRead(chunk.length, chunk));
    ts.on('error', (err: Error) => this.onSocketError(err));
    ts.on('close', () => this.onSocketClose());
    ts.once('secureConnect', () => {
      this.tls = tlsDescription(ts);
      this.sendStartup();
    });
  }

  private sendStartup(): void {
    const sock = this.socket!;
    const e = this.pool.db.entry;
    const params: [string, string][] = [
      ['user', this.pool.user.name],
      ['database', this.pool.db.dbname],
    ];
    if (e.client_encoding) params.push(['client_encoding', e.client_encoding]);
    if (e.datestyle) params.push(['DateStyle', e.datestyle]);
    if (e.timezone) params.push(['TimeZone', e.timezone]);
    if (e.application_name) params.push(['application_name', e.application_name]);
    sock.write(startupMessage(params));
  }

  private loginFailed(err: PoolerError, reason: string): void {
    this.pool.connectFailed(err);
    this.close(reason);
  }

  /** Password material for logging in as the pool's user. */
  private credentials(): { password?: string; md5?: string; scram?: { clientKey: Buffer; serverKey: Buffer } } {
    const db = this.pool.db;
    const user = this.pool.user;
    if (db.entry.user && db.entry.password !== undefined) return { password: db.entry.password };
    const secret = user.secret;
    if (secret === undefined) return {};
    if (isScramSecret(secret)) {
      if (user.scramKeys && user.scramKeys.secret === secret)
        return { scram: { clientKey: user.scramKeys.clientKey, serverKey: user.scramKeys.serverKey } };
      return {};
    }
    if (isMd5Secret(secret)) return { md5: secret };
    return { password: secret };
  }

  private onLoginMessage(type: number, buf: Buffer, start: number, end: number): void {
    const r = this.reader.reset(buf, start + 5, end);
    switch (type) {
      case BE.Authentication:
        this.onAuthRequest(r.i32(), r);
        return;
      case BE.ErrorResponse: {
        const e = parseErrorBody(buf, start + 5, end);
        const err = new PoolerError(e.code || SqlState.ConnectionFailure, e.message, true, e.detail, e.hint);
        log.warning(`server login failed: ${e.severity} ${e.message}`, this);
        this.loginFailed(err, 'login failed');
        return;
      }
      case BE.ParameterStatus: {
        const name = r.cstring();
        this.params.set(name, r.cstring());
        return;
      }
      case BE.BackendKeyData:
        this.backendPid = r.i32();
        this.backendKey = r.i32();
        return;
      case BE.ReadyForQuery:
        this.txStatus = r.u8();
        this.loginDone();
        return;
      default:
        return; // NoticeResponse, NegotiateProtocolVersion: nothing to do
    }
  }

  private onAuthRequest(code: number, r: Reader): void {
    const cred = this.credentials();
    const user = this.pool.user.name;
    const noPassword = () =>
      this.loginFailed(
        new PoolerError(SqlState.InvalidPassword, `no password for user "${user}" to log in to the server`),
        'no password available for server login',
      );
    switch (code) {
      case AuthCode.Ok:
        return;
      case AuthCode.CleartextPassword:
        if (cred.password === undefined) return noPassword();
        this.socket!.write(passwordMessage(cred.password));
        return;
      case AuthCode.MD5Password: {
        const salt = r.bytes(4);
        const pw = cred.password ?? cred.md5;
        if (pw === undefined) return noPassword();
        this.socket!.write(passwordMessage(md5Response(user, pw, salt)));
        return;
      }
      case AuthCode.SASL: {
        const mechs: string[] = [];
        while (r.remaining() > 1) mechs.push(r.cstring());
        if (!mechs.includes(SCRAM_MECHANISM)) {
          return this.loginFailed(
            new PoolerError(SqlState.FeatureNotSupported, `server asked for unsupported SASL mechanisms: ${mechs.join(', ')}`),
            'unsupported SASL mechanism',
          );
        }
        if (cred.password !== undefined) this.scram = new ScramClientExchange({ password: cred.password });
        else if (cred.scram) this.scram = new ScramClientExchange(cred.scram);
        else return noPassword();
        this.socket!.write(saslInitialResponse(SCRAM_MECHANISM, this.scram.clientFirst()));
        return;
      }
      case AuthCode.SASLContinue: {
        const scram = this.scram;
        if (!scram) return this.loginFailed(protocolError('unexpected SASL continue'), 'protocol error');
        const data = r.rest().toString('utf8');
        scram.serverFirst(data).then(
          (msg) => {
            if (!this.closed) this.socket!.write(saslResponse(msg));
          },
          (err: Error) =>
            this.loginFailed(new PoolerError(SqlState.InvalidPassword, `SCRAM login to server failed: ${err.message}`), 'SCRAM error'),
        );
        return;
      }
      case AuthCode.SASLFinal:
        try {
          this.scram?.serverFinal(r.rest().toString('utf8'));
        } catch (err) {
          this.loginFailed(
            new PoolerError(SqlState.InvalidPassword, `SCRAM login to server failed: ${(err as Error).message}`),
            'SCRAM error',
          );
        }
        return;
      default:
        this.loginFailed(
          new PoolerError(SqlState.FeatureNotSupported, `server asked for unsupported authentication method ${code}`),
          'unsupported auth method',
        );
    }
  }

  private loginDone(): void {
    this.inLogin = false;
    this.scram = null;
    const pool = this.pool;
    pool.lastConnectFailed = 0;
    pool.lastError = null;
    if (!pool.welcome) pool.welcome = new Map(this.params);
    if (this.pooler.settings.log_connections) log.log(`new connection to server (from ${this.localDesc})${this.tls ? ` tls=${this.tls}` : ''}`, this);
    if (this.owner) {
      pool.setServerState(this, ServerState.Active);
      this.owner.loggedIn(this);
      return;
    }
    const cq = pool.db.entry.connect_query;
    if (cq) {
      this.runInternal(cq, (err) => {
        if (err) log.warning(`connect_query failed: ${err.message}`, this);
        pool.serverReady(this);
      });
      return;
    }
    pool.serverReady(this);
  }

  // ---- the pooler's own queries (SET, reset, check, connect_query) ----

  /** Send a simple query whose whole reply is swallowed; cb gets the first error, if any. */
  runInternal(sql: string, cb: (err: PoolerError | null) => void, rows?: (string | null)[][]): void {
    this.internalDone = cb;
    this.internalError = null;
    this.internalRows = rows ?? null;
    this.unnamed = null; // a simple query drops the session's unnamed statement
    this.socket!.write(query(sql));
  }

  private onInternalMessage(type: number, buf: Buffer, start: number, end: number): void {
    if (type === BE.ErrorResponse) {
      if (!this.internalError) {
        const e = parseErrorBody(buf, start + 5, end);
        this.internalError = new PoolerError(e.code, e.message, true, e.detail, e.hint);
      }
    } else if (type === BE.ParameterStatus) {
      const r = this.reader.reset(buf, start + 5, end);
      const name = r.cstring();
      this.params.set(name, r.cstring());
      this.paramsKey = null;
    } else if (type === BE.DataRow) {
      if (this.internalRows) this.internalRows.push(dataRowValues(this.reader.reset(buf, start + 5, end)));
    } else if (type === BE.CommandComplete) {
      if (end - start > 6 && buf[start + 5] === 0x44 && isDeallocateAll(buf.toString('latin1', start + 5, end - 1))) {
        this.clearStmts();
        this.setVars = null;
      }
    } else if (type === BE.ReadyForQuery) {
      this.txStatus = buf[start + 5]!;
      const cb = this.internalDone!;
      const err = this.internalError;
      this.internalDone = null;
      this.internalError = null;
      this.internalRows = null;
      cb(err);
    }
  }

  /** Linked to a client: bring the server's tracked parameters in line with the client's, then go. */
  prepareForClient(c: ClientConn): void {
    const key = c.varsKey();
    const setVars = c.setVars;
    const resetSequences = c.needsSequenceReset();
    if (!resetSequences && key === this.paramsKey && setVars === null && this.setVars === null) {
      c.onLinked();
      return;
    }
    let sets = '';
    if (resetSequences) {
      // currval()/lastval() at the start of a transaction: never another client's values
      sets = 'DISCARD SEQUENCES;';
      this.countSequenceReset(c);
    }
    if (key !== this.paramsKey) {
      for (const [name, value] of c.vars) {
        const cur = this.params.get(name);
        if (cur === value || (value === '' && cur === undefined) || (cur !== undefined && cur.toLowerCase() === value.toLowerCase())) continue;
        sets += `SET ${name}=${quoteLiteral(value)};`;
      }
    }
    // track_set_parameters: the client's SETs made here, other clients' undone
    if (setVars !== null || this.setVars !== null) sets += applySql(setVars ?? NO_VARS, this.setVars ?? NO_VARS);
    if (!sets) {
      this.paramsKey = key;
      c.onLinked();
      return;
    }
    this.runInternal(sets, (err) => {
      if (this.client !== c) return;
      if (err) {
        log.error(`varcache_apply failed: ${err.message}`, this);
        if (err.sqlstate !== SqlState.ConnectionFailure) {
          // PostgreSQL refused one of the client's own values (from its startup packet or options): the client gets
          // PostgreSQL's words, as it would at a direct login; the server is closed all the same
          this.client = null;
          c.unlinked();
          c.fail(err);
        }
        this.close('invalid server parameter');
        return;
      }
      for (const [name, value] of c.vars) if (value !== '' || this.params.has(name)) this.params.set(name, value);
      this.paramsKey = c.varsKey();
      this.setVars = setVars === null ? null : new Map(setVars);
      c.onLinked();
    });
  }

  /**
   * In a transaction that began with BEGIN alone, before its first statement, which reads sequence values (the client
   * waits, suspended): the server forgets other clients' values first, as prepareForClient does at other starts.
   */
  resetSequences(c: ClientConn): void {
    this.countSequenceReset(c);
    this.runInternal('DISCARD SEQUENCES', (err) => {
      if (this.client !== c) return;
      if (err) {
        this.close(`sequence reset failed: ${err.message}`);
        return;
      }
      c.resumeSuspended();
    });
  }

  private countSequenceReset(c: ClientConn): void {
    this.pool.stats.sequenceResets++;
    log.debug('sequence values reset (DISCARD SEQUENCES) before a currval()/lastval() of the client', c);
  }

  /**
   * The end of a transaction that may have left session state (or of any transaction of a pinned client): ask
   * PostgreSQL what the session holds, then release the server or keep the client on it.
   */
  private checkState(c: ClientConn): void {
    c.holdRequests();
    const rows: (string | null)[][] = [];
    this.pool.stats.stateChecks++;
    this.runInternal(
      STATE_CHECK_SQL,
      (err) => {
        if (this.client !== c) return;
        if (err) {
          this.close(`session state check failed: ${err.message}`);
          return;
        }
        const st = this.pooler.settings;
        const res = readStateCheck(rows, c.trackedSetNames(), c.varcacheNames());
        if (c.lastingState) {
          // nothing in PostgreSQL tells whether a library was loaded: a session that ran LOAD stays pinned
          res.pin = res.pin === null ? 'LOAD' : `${res.pin}, LOAD`;
          res.reasons |= 1 << Reason.Load;
        }
        this.setVars = res.tracked.size > 0 ? res.tracked : null;
        if (st.session_state_policy === 'allow' || res.pin === null) {
          c.stateChecked(res.tracked, null, 0);
          this.pool.release(this);
        } else {
          c.stateChecked(res.tracked, res.pin, res.reasons);
          c.onLinked();
        }
      },
      rows,
    );
  }

  /** Give the server back at the end of a transaction, after a session-state check if one is due. */
  private releaseAtEnd(): void {
    const c = this.client;
    if (c !== null && c.stateCheckDue()) this.checkState(c);
    else this.pool.release(this);
  }

  // ---- reply path ----

  protected wantBody(type: number, _length: number): boolean {
    if (this.inLogin || this.internalDone || this.owner) return true;
    if (type === BE.ReadyForQuery || type === BE.ParameterStatus) return true;
    if (this.tracking && (type === BE.CommandComplete || type === BE.ErrorResponse)) return true;
    return this.client === null && this.state !== ServerState.Active;
  }

  protected onHeader(type: number): Verdict {
    if (type === BE.CopyInResponse) this.copyIn = true;
    else if (type === BE.ErrorResponse) this.copyIn = false;
    if (!this.client) return Verdict.Skip;
    return this.tracking ? this.trackedReply(type) : Verdict.Forward;
  }

  protected onMessage(type: number, buf: Buffer, start: number, end: number): Verdict {
    if (this.inLogin) {
      this.onLoginMessage(type, buf, start, end);
      return Verdict.Skip;
    }
    if (this.internalDone) {
      this.onInternalMessage(type, buf, start, end);
      return Verdict.Skip;
    }
    if (this.owner) {
      if (type === BE.NotificationResponse) this.owner.notification(buf, start, end);
      return Verdict.Skip;
    }
    const c = this.client;
    if (type === BE.ReadyForQuery) return this.onReady(buf[start + 5]!, c);
    if (this.tracking && (type === BE.CommandComplete || type === BE.ErrorResponse)) {
      if (type === BE.CommandComplete) this.onCommandComplete(buf, start, end);
      else if (this.onTrackedError(buf, start, end)) return Verdict.Skip;
      return c ? Verdict.Forward : Verdict.Skip;
    }
    if (type === BE.ParameterStatus) {
      const r = this.reader.reset(buf, start + 5, end);
      const name = r.cstring();
      const value = r.cstring();
      this.params.set(name, value);
      this.paramsKey = null;
      if (c) c.serverParam(name, value);
      return c ? Verdict.Forward : Verdict.Skip;
    }
    // an idle server (no client) speaking up
    if (type === BE.NoticeResponse || type === BE.NotificationResponse) return Verdict.Skip;
    if (type === BE.ErrorResponse) {
      const e = parseErrorBody(buf, start + 5, end);
      this.close(`server sent ${e.severity}: ${e.message}`);
    } else {
      this.close(`idle server got unexpected message '${String.fromCharCode(type)}'`);
    }
    return Verdict.Skip;
  }

  private onReady(status: number, c: ClientConn | null): Verdict {
    this.txStatus = status;
    if (this.tracking) {
      const q = this.replies;
      while (q.count > 0) {
        const k = q.front;
        if (k === Rq.Simple) this.unnamedDone(null); // a Query drops the unnamed statement
        q.shift();
        if ((RQ_FLAGS[k]! & RQ_ENDS) !== 0) break;
      }
      this.dropCapture();
      if (this.retry !== null && c !== null) {
        // the failed batch's ReadyForQuery: hidden; the batch goes again once it is out
        if (this.outstanding > 0) this.outstanding--;
        this.after = After.Retry;
        this.actionPending = true;
        return Verdict.Skip;
      }
      this.checkFakes();
    }
    if (this.outstanding > 0) this.outstanding--;
    this.xactStart = this.pool.stats.onReady(this.requestStart, this.xactStart, status);
    if (c !== null && c.isSuspended() && (this.unsettledEffects() & (FX_NAMED | FX_UNNAMED)) === 0) {
      // what it waited for is answered: it goes on once this ReadyForQuery is out
      this.after = After.Resume;
      this.actionPending = true;
      return Verdict.Forward;
    }
    if (this.outstanding === 0 && !this.dirty && !this.copyIn) {
      if (!c) return Verdict.Skip;
      const mode = this.pool.mode();
      if (status === TxStatus.Idle) {
        if (mode !== 'session') {
          this.after = After.Release;
          this.actionPending = true;
        }
      } else if (mode === 'statement') {
        this.after = After.StatementTx;
        this.actionPending = true;
        // like PgBouncer, the RFQ is not forwarded: the FATAL error is the reply to the client's BEGIN
        return Verdict.Skip;
      }
    }
    return c ? Verdict.Forward : Verdict.Skip;
  }

  protected act(): void {
    if (this.fakesDue) {
      this.fakesDue = false;
      const q = this.replies;
      while (q.front === Rq.ParseFake) {
        q.shift();
        this.emit(PARSE_COMPLETE);
      }
    }
    const what = this.after;
    this.after = After.None;
    switch (what) {
      case After.Release:
        this.unpause();
        // the backend already has part of the client's current message: it must get the rest before anyone else
        this.releaseWhenClientDone = this.client?.midMessage ?? false;
        if (this.releaseWhenClientDone) break;
        this.releaseAtEnd();
        break;
      case After.Resume:
        this.client?.resumeSuspended();
        break;
      case After.Retry: {
        const r = this.retry!;
        this.retry = null;
        const c = this.client;
        if (!c) break;
        const st = r.st!;
        const bytes = r.buf.subarray(r.start, r.end);
        // drop the server's stale plan (CloseComplete hidden), then the client's batch as if sent anew: its Bind
        // prepares the statement again first
        this.socket!.cork();
        this.socket!.write(st.closeMsg());
        this.record(Rq.CloseHidden);
        this.forget(st);
        c.replay(bytes);
        this.socket!.uncork();
        break;
      }
      case After.StatementTx: {
        const msg = 'transaction blocks not allowed in statement pooling mode';
        this.client?.fail(new PoolerError(SqlState.FeatureNotSupported, msg));
        this.close(msg);
        break;
      }
      default:
        break;
    }
  }

  protected emit(data: Buffer): void {
    const c = this.client;
    if (!c) return;
    c.bytesOut(data.length);
    if (!c.writeSoon(data) && !this.pausedForClient) {
      this.pausedForClient = true;
      this.socket!.pause();
    }
  }

  /** The client drained its socket: read from the server again. */
  unpause(): void {
    if (this.pausedForClient) {
      this.pausedForClient = false;
      this.socket?.resume();
    }
  }

  /** Client → server bytes. Returns false when the server socket is full. */
  write(data: Buffer): boolean {
    return this.writer!.write(data);
  }

  /** Bytes written to the server are not all out yet (a buffer they came from must not be reused). */
  writeQueued(): boolean {
    return this.writer !== null && this.writer.queued();
  }

  /** The socket (or a fast write) drained. */
  onWriterDrain(): void {
    this.onDrain();
  }

  private onDrain(): void {
    this.client?.serverDrained();
  }

  protected maxMessage(): number {
    return 0x7fffffff;
  }

  protected onBadLength(type: number, length: number): void {
    this.close(`server sent invalid message length ${length} (type '${String.fromCharCode(type)}')`);
  }

  /** Counts what a client sends (called per message header by the client side). */
  sentRequest(): void {
    if (this.outstanding === 0) this.requestStart = performance.now();
    this.outstanding++;
    this.dirty = false;
    this.releaseWhenClientDone = false;
  }

  /** The linked client finished the message it was in the middle of: do the release deferred for it, if still due. */
  clientAtBoundary(): void {
    this.releaseWhenClientDone = false;
    if (this.client && this.outstanding === 0 && !this.dirty && !this.copyIn && this.txStatus === TxStatus.Idle && this.pool.mode() !== 'session')
      this.releaseAtEnd();
  }

  // ---- prepared statements (tracking mode) ----

  /** A reply that completes a recorded request: hide it, forward it, and note pooler answers now due. */
  private trackedReply(type: number): Verdict {
    const q = this.replies;
    let v = Verdict.Forward;
    switch (type) {
      case BE.ParseComplete:
        if (q.front === Rq.ParseHidden) v = Verdict.Skip;
        if (q.front === Rq.ParseHidden || q.front === Rq.Parse || q.front === Rq.ParseCheck) q.shift();
        else if (q.front === Rq.ParseUnnamed || q.front === Rq.ParseUnnamedHidden) {
          if (q.front === Rq.ParseUnnamedHidden) v = Verdict.Skip;
          this.unnamedDone(q.frontMsg);
          q.shift();
        }
        break;
      case BE.BindComplete:
        if (q.front === Rq.Bind) q.shift();
        break;
      case BE.RowDescription:
      case BE.NoData:
        if (q.front === Rq.Describe) q.shift();
        break;
      case BE.EmptyQueryResponse:
      case BE.PortalSuspended:
        if (q.front === Rq.Execute) q.shift();
        break;
      case BE.CloseComplete:
        if (q.front === Rq.CloseHidden) v = Verdict.Skip;
        if (q.front === Rq.CloseHidden || q.front === Rq.Close) q.shift();
        else if (q.front === Rq.CloseUnnamed || q.front === Rq.CloseUnnamedHidden) {
          if (q.front === Rq.CloseUnnamedHidden) v = Verdict.Skip;
          this.unnamedDone(null);
          q.shift();
        }
        break;
      default:
        return Verdict.Forward;
    }
    this.checkFakes();
    return v;
  }

  /**
   * A Parse (msg) or Close (null) of the unnamed statement, or a simple Query (null), is done: the session's unnamed
   * statement is now the linked client's, or gone, and so is the client's own.
   */
  private unnamedDone(msg: Buffer | null): void {
    if (this.unnamedPending > 0) this.unnamedPending--;
    this.unnamed = msg;
    const c = this.client;
    if (c !== null) c.unnamedStmt = msg;
  }

  /**
   * Whether a Bind or Describe of the unnamed statement sent now by the linked client, whose own is `mine` (its Parse
   * message, or null for none), finds in this session what it would find in its own. True while a Parse or Close
   * of it or a Query of this link is under way (the session's is then the client's doing).
   */
  unnamedIsFor(mine: Buffer | null): boolean {
    return this.unnamedPending > 0 || this.unnamed === mine;
  }

  private checkFakes(): void {
    if (this.replies.front === Rq.ParseFake) {
      this.fakesDue = true;
      this.actionPending = true;
    }
  }

  private onCommandComplete(buf: Buffer, start: number, end: number): void {
    if (this.replies.front === Rq.Execute) this.replies.shift();
    // DEALLOCATE ALL / DISCARD ALL dropped every prepared statement of the session: ours and the client's
    const n = end - start - 6; // tag length without NUL
    if ((n === 14 || n === 11) && buf[start + 5] === 0x44 && isDeallocateAll(buf.toString('latin1', start + 5, end - 1))) {
      this.clearStmts();
      this.client?.clearStmts();
    } else if (n === 4 && buf[start + 5] === 0x4c && buf.toString('latin1', start + 5, end - 1) === 'LOAD') {
      this.client?.loaded(); // a LOAD that worked: its client stays on this server (a failed one loaded nothing)
    }
    this.checkFakes();
  }

  /**
   * An ErrorResponse: outside a simple query, PostgreSQL ignores everything up to the next Sync. Returns true when
   * the error is hidden because the batch will be retried.
   */
  private onTrackedError(buf: Buffer, start: number, end: number): boolean {
    const q = this.replies;
    const k = q.front;
    if (k === Rq.None || k === Rq.Simple || k === Rq.FunctionCall) return false;
    const cap = this.capture;
    let retry = false;
    if (cap !== null && cap.st !== null && k === Rq.Bind && q.frontStmt === cap.st && q.count === cap.entries && this.client !== null) {
      const st = cap.st;
      const e = parseErrorBody(buf, start + 5, end);
      retry =
        (e.code === '0A000' && e.message === 'cached plan must not change result type') ||
        (e.code === '26000' && e.message.includes(`"${st.name}"`));
      if (retry) {
        log.log(`prepared statement ${st.name} prepared again and the batch retried after: ${e.message}`, this);
        st.retries++;
        this.pool.stats.stmtRetries++;
        this.retry = cap;
        this.client.socket.pause(); // nothing of the client's may overtake the batch sent again
      }
    }
    this.dropCapture();
    // PostgreSQL ignored everything up to the Sync: take it back newest first, so that a Close and a Parse of one
    // name leave the name as it was before the Close
    let n = 0;
    while (n < q.count && q.kindAt(n) !== Rq.Sync) n++;
    for (let j = n - 1; j >= 0; j--) {
      const k = q.kindAt(j);
      if ((RQ_FLAGS[k]! & RQ_UNNAMED) !== 0 && this.unnamedPending > 0) this.unnamedPending--;
      this.undo(k, q.stmtAt(j), q.nameAt(j));
    }
    for (let j = 0; j < n; j++) q.shift();
    if (q.count === 0) this.discarding = true;
    return retry;
  }

  /** No batch kept any more: the slot lets go of the client's bytes, unless a retry is about to send them. */
  private dropCapture(): void {
    this.capture = null;
    if (this.retry === null) {
      const c = this.captureSlot;
      c.st = null;
      c.buf = NO_BYTES;
    }
  }

  /** Keep the batch buf[start..end) (its first Bind uses `st`; `entries` requests recorded for it) for a retry. */
  keepBatch(st: Stmt, buf: Buffer, start: number, end: number, entries: number): void {
    const c = this.captureSlot;
    c.st = st;
    c.buf = buf;
    c.start = start;
    c.end = end;
    c.entries = entries;
    this.capture = c;
  }

  /** Whether a batch starting now with a Bind may be retried: nothing of it has run, no transaction is open. */
  canCapture(): boolean {
    return !this.batchExecuted && this.replies.ends === 0 && this.txStatus === TxStatus.Idle && this.capture === null && this.retry === null && !this.discarding;
  }

  /**
   * Whether the transaction a request sent now lands in may have failed: it has (the last ReadyForQuery said so), or
   * a batch before it is not answered yet. Within the batch, an earlier failure means PostgreSQL ignores the request
   * anyway (undone at the error).
   */
  private mayBeFailed(): boolean {
    return this.txStatus === TxStatus.Failed || this.replies.ends > 0;
  }

  /**
   * What batches before the one being sent, not answered yet, changed of what is prepared: FX_NAMED (a Parse or
   * Close of a named statement, the client's or the pooler's), FX_UNNAMED (of the unnamed statement), and
   * FX_OWN_UNNAMED when the batch being sent has itself changed the unnamed statement already. Those changes are
   * assumed done; if their batch fails they are undone, and what the client sent after it would have been
   * rewritten on a wrong assumption. 0 when one batch is in flight (the usual case).
   */
  unsettledEffects(): number {
    const q = this.replies;
    if (q.ends === 0) return 0;
    let settled = 0;
    let batch = 0;
    for (let j = 0; j < q.count; j++) {
      const f = RQ_FLAGS[q.kindAt(j)]!;
      if ((f & RQ_ENDS) !== 0) {
        settled |= batch;
        batch = 0;
      } else if ((f & RQ_STMTS) !== 0) batch |= (f & RQ_UNNAMED) !== 0 ? FX_UNNAMED : FX_NAMED;
    }
    return (batch & FX_UNNAMED) !== 0 ? settled | FX_OWN_UNNAMED : settled;
  }

  /** An error came back before the Sync that ends the batch being sent: PostgreSQL ignores requests until that Sync. */
  ignoresUntilSync(): boolean {
    return this.discarding;
  }

  /** Record a request sent to the server (in order). */
  record(kind: Rq, st: Stmt | null = null, name: string | null = null, msg: Buffer | null = null): void {
    if (kind === Rq.Execute || kind === Rq.Simple || kind === Rq.FunctionCall) this.batchExecuted = true;
    else if (kind === Rq.Sync) this.batchExecuted = false;
    if (this.discarding) {
      if (kind !== Rq.Sync) {
        this.undo(kind, st, name);
        return;
      }
      this.discarding = false;
    }
    if (kind === Rq.ParseFake && this.replies.count === 0) {
      // nothing ahead of it: answer at once
      const c = this.client;
      if (c) {
        c.bytesOut(PARSE_COMPLETE.length);
        c.write(PARSE_COMPLETE);
      }
      return;
    }
    if ((RQ_FLAGS[kind]! & RQ_UNNAMED) !== 0) this.unnamedPending++;
    this.replies.push(kind, st, name, msg);
  }

  /** A request PostgreSQL ignored (an earlier error in its batch): take back what sending it changed. */
  private undo(kind: Rq, st: Stmt | null, name: string | null): void {
    switch (kind) {
      case Rq.Parse:
        if (st) {
          this.forget(st);
          this.client?.unmapStmt(name!, st);
        }
        break;
      case Rq.ParseHidden:
        this.forget(st!);
        break;
      case Rq.ParseFake:
      case Rq.ParseCheck:
        this.client?.unmapStmt(name!, st!);
        break;
      case Rq.Close:
        if (st) this.client?.remapStmt(name!, st);
        break;
      case Rq.CloseHidden:
        if (st) this.remember(st);
        break;
      default:
        break;
    }
  }

  /** The client's Parse of a named statement: send it, or answer it when this server already has the statement. */
  clientParse(st: Stmt, name: string, out: Buffer[]): void {
    const m = this.stmts;
    if (m !== null && m.has(st)) {
      m.set(st, ++this.stmtTick);
      if (this.mayBeFailed()) {
        // PostgreSQL refuses a Parse in a failed transaction block (25P02): let it answer this one
        out.push(st.checkParseMsg(), CLOSE_CHECK);
        this.record(Rq.ParseCheck, st, name);
        this.record(Rq.CloseHidden);
        return;
      }
      this.record(Rq.ParseFake, st, name);
      return;
    }
    this.makeRoom(out);
    out.push(st.parseMsg);
    this.remember(st);
    this.pool.stats.serverParseCount++;
    this.record(Rq.Parse, st, name);
  }

  /** Before a Bind or Describe of the statement: prepare it here unless this server has it. */
  ensurePrepared(st: Stmt, out: Buffer[]): void {
    const m = this.stmts;
    if (m !== null && m.has(st)) {
      m.set(st, ++this.stmtTick);
      return;
    }
    this.makeRoom(out);
    out.push(st.parseMsg);
    this.remember(st);
    this.pool.stats.serverParseCount++;
    this.record(Rq.ParseHidden, st);
  }

  /** Evict least recently used statements until one more fits (max_prepared_statements). */
  private makeRoom(out: Buffer[]): void {
    const m = this.stmts;
    if (m === null) return;
    const max = this.pooler.settings.max_prepared_statements;
    while (m.size >= max && m.size > 0) {
      // least recently used: a scan, but only when the cache is full and a new statement comes
      let victim: Stmt | null = null;
      let oldest = Infinity;
      for (const [st, tick] of m) {
        if (tick < oldest) {
          oldest = tick;
          victim = st;
        }
      }
      if (victim === null) break;
      out.push(victim.closeMsg());
      this.forget(victim);
      this.record(Rq.CloseHidden, victim);
    }
  }

  private remember(st: Stmt): void {
    const m = (this.stmts ??= new Map());
    if (!m.has(st)) st.serverRefs++;
    m.set(st, ++this.stmtTick);
  }

  private forget(st: Stmt): void {
    if (this.stmts !== null && this.stmts.delete(st)) this.pooler.stmts.unrefServer(st);
  }

  /** The session's prepared statements are gone (DISCARD ALL, DEALLOCATE ALL, closing). */
  clearStmts(): void {
    const m = this.stmts;
    if (m === null) return;
    this.stmts = null;
    for (const st of m.keys()) this.pooler.stmts.unrefServer(st);
  }

  /** Linking and unlinking: start and end recording. */
  setTracking(on: boolean): void {
    this.tracking = on;
    this.replies.clear();
    this.unnamedPending = 0;
    this.discarding = false;
    this.fakesDue = false;
    this.batchExecuted = false;
    this.retry = null;
    this.dropCapture();
  }

  // ---- cancel ----

  /** Forward a cancel for this server's backend on a new connection (cancel_wait_timeout bounds it). */
  sendCancel(): void {
    if (!this.backendPid) return;
    const t = this.target();
    const sock = t.path ? net.connect({ path: t.path }) : net.connect({ host: t.host!, port: t.port });
    const timeout = this.pooler.settings.cancel_wait_timeout * 1000;
    if (timeout > 0) sock.setTimeout(timeout, () => sock.destroy());
    sock.on('connect', () => sock.end(cancelRequest(this.backendPid, this.backendKey)));
    sock.on('error', (err) => log.warning(`cancel request failed: ${err.message}`, this));
    sock.on('data', () => {});
    this.cancelsInFlight++;
    sock.on('close', () => {
      // PostgreSQL closes the connection once it has signalled the backend
      if (--this.cancelsInFlight > 0 || !this.heldForCancel) return;
      this.heldForCancel = false;
      if (!this.closed) this.pool.serverReady(this);
    });
  }

  // ---- closing ----

  private onSocketError(err: Error): void {
    if (this.closed) return;
    if (this.inLogin) {
      const e = new PoolerError(SqlState.ConnectionFailure, `server connection failed: ${err.message}`);
      log.warning(`closing because: connect failed: ${err.message}`, this);
      this.pool.connectFailed(e);
      this.close('connect failed', true);
      return;
    }
    this.close(`server socket error: ${err.message}`);
  }

  private onSocketClose(): void {
    if (this.closed) return;
    if (this.inLogin) {
      this.pool.connectFailed(new PoolerError(SqlState.ConnectionFailure, 'server closed the connection during login'));
    }
    this.close('server conn crashed?');
  }

  /** Close the connection. A linked client gets PostgreSQL's error for a lost server and is dropped. */
  close(reason: string, quiet = false, sqlstate: string = SqlState.ConnectionFailure): void {
    if (this.closed) return;
    this.closed = true;
    this.stopped = true;
    const c = this.client;
    this.client = null;
    if (c) {
      c.unlinked();
      c.fail(new PoolerError(sqlstate, reason));
    }
    const cb = this.internalDone;
    this.internalDone = null;
    if (!quiet && this.pooler.settings.log_disconnections) {
      log.log(`closing because: ${reason} (age=${Math.round((clock.now - this.connectTime) / 1000)}s)`, this);
    }
    const sock = this.socket;
    if (sock && !sock.destroyed) {
      sock.removeAllListeners('data');
      if (!this.inLogin && sock.writable && this.writer !== null && this.writer.queued()) {
        // bytes of a departed client's last request are still queued: let them reach PostgreSQL first
        sock.end(TERMINATE, () => sock.destroy());
        sock.setTimeout(10_000, () => sock.destroy());
      } else if (this.slot && !this.inLogin && sock.writable) {
        // workers > 1: the global slot is given back once PostgreSQL has closed its end (serverGone), so the
        // worker it goes to cannot push the backend count over the limit for a moment
        sock.end(TERMINATE);
        sock.resume(); // read (and drop) until PostgreSQL's end
        sock.setTimeout(2_000, () => sock.destroy());
      } else {
        if (!this.inLogin && sock.writable) sock.end(TERMINATE);
        sock.destroy();
      }
    }
    this.state = ServerState.Closed;
    this.clearStmts();
    this.setTracking(false);
    this.pool.serverGone(this);
    this.owner?.gone(this, reason);
    if (cb) cb(new PoolerError(SqlState.ConnectionFailure, reason));
  }

  /** Running one of the pooler's own queries (SET, reset, check). */
  busyInternal(): boolean {
    return this.internalDone !== null;
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

const NO_VARS: ReadonlyMap<string, string> = new Map();

/** A DataRow's columns as text (null for SQL NULL). */
function dataRowValues(r: Reader): (string | null)[] {
  const out: (string | null)[] = [];
  for (let n = r.i16(); n > 0; n--) {
    const len = r.i32();
    out.push(len < 0 ? null : r.bytes(len).toString('utf8'));
  }
  return out;
}

function isDeallocateAll(tag: string): boolean {
  return tag === 'DEALLOCATE ALL' || tag === 'DISCARD ALL';
}

function protocolError(msg: string): PoolerError {
  return new PoolerError(SqlState.ProtocolViolation, msg);
}

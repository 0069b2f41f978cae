/* The pooler: owns the configuration, listeners, databases, users and pools; logs clients in;
 * routes cancel requests; reloads and shuts down. The library API and the CLI both drive this. */

import net from 'node:net';
import { existsSync, unlinkSync, chmodSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { ConfigError, loadConfig, type Config } from './config/loader.js';
import { setBusyPoll } from './net/spin.js';
import { issue } from './config/ini.js';
import type { Settings } from './config/params.js';
import { findParam } from './config/params.js';
import type { DatabaseEntry } from './config/types.js';
import { SqlState } from './protocol/sqlstate.js';
import { PoolerError } from './util/errors.js';
import { clock } from './util/clock.js';
import { log, type LogSubject } from './util/log.js';
import { StatList } from './pool/list.js';
import { ClientConn } from './pool/client.js';
import { Database, Pool, User } from './pool/pool.js';
import { ClientState } from './pool/states.js';
import { Janitor } from './pool/janitor.js';
import { StmtRegistry } from './pool/prepared.js';
import { NotifyHub } from './pool/notify.js';
import { AuthQuery } from './auth/auth-query.js';
import { HbaRules } from './auth/hba.js';
import { WorkerLink } from './cluster/worker.js';

/** auth_hba_file's rules when auth_type is hba (null otherwise); throws with file and line for a bad file. */
export function loadHba(st: Settings): HbaRules | null {
  if (st.auth_type !== 'hba') return null;
  if (!st.auth_hba_file) throw new Error('auth_type = hba needs auth_hba_file');
  const rules = HbaRules.load(st.auth_hba_file);
  for (const w of rules.warnings) log.warning(w);
  return rules;
}
import { AdminConsole, ADMIN_DB } from './admin/console.js';
import { buildClientTls, buildServerTls, type ClientTls, type ServerTls } from './net/tls.js';
import type { Metrics, MetricsServer } from './stats/metrics.js';
import { VERSION_LINE } from './version.js';

/** auth_type values pgtide refuses (at startup, RELOAD and SET). */
export const UNSUPPORTED_AUTH: ReadonlySet<string> = new Set(['pam', 'ldap']);

/** Load a config file the way pgtide runs it (startup, SIGHUP and RELOAD): the loader plus pgtide's own refusals. */
export function loadPgtideConfig(path: string): Config {
  return checkPgtideConfig(loadConfig(path));
}

/** pgtide's own refusals on a loaded configuration (from a file or the library's options); returns it when it passes. */
export function checkPgtideConfig(cfg: Config): Config {
  const path = cfg.file;
  if (UNSUPPORTED_AUTH.has(cfg.settings.auth_type)) {
    throw new ConfigError([
      issue(
        cfg.explicit.get('auth_type')?.file ?? path,
        cfg.explicit.get('auth_type')?.line ?? 0,
        `auth_type ${cfg.settings.auth_type} is not supported by pgtide yet (use md5, scram-sha-256, plain, hba, cert, trust or any)`,
      ),
    ]);
  }
  if (cfg.settings.auth_type === 'hba') {
    try {
      loadHba(cfg.settings);
    } catch (err) {
      const where = cfg.explicit.get('auth_hba_file');
      throw new ConfigError([issue(where?.file ?? path, where?.line ?? 0, (err as Error).message)]);
    }
  }
  return cfg;
}

/** A console command waiting for a condition (PAUSE, WAIT_CLOSE); `done` gets null or an error text. */
interface Waiter {
  dbs: Database[] | null;
  kind: 'pause' | 'close';
  done: (err: string | null) => void;
}

/** Connection-relevant connstring keys: a change closes the database's servers when released. */
const CONN_KEYS = ['host', 'port', 'dbname', 'user', 'password'] as const;

/** What the console's SHUTDOWN asks of the process (emitted as 'exit-request'; the CLI does the exiting). */
export type ExitRequest = 'immediate' | 'wait-for-servers' | 'wait-for-clients';

export type ShutdownMode = 'none' | 'wait-for-servers' | 'wait-for-clients' | 'immediate';

/** What a reload did to the [pgbouncer] settings (names as in the settings table). */
export interface ReloadOutcome {
  /** Settings whose value changed. */
  changed: string[];
  /** Settings that differ in the new configuration but need a restart: they keep their old value. */
  restartNeeded: string[];
  /** Settings that kept their old value because the new one could not be used (TLS files, auth_hba_file). */
  kept: string[];
}

/** Remove a unix socket file left by a process that is gone; refuses one that a live process listens on. */
export function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      reject(new Error(`unix socket ${path} is in use by another process`));
    });
    probe.once('error', () => {
      try {
        unlinkSync(path);
      } catch {
        /* gone already */
      }
      resolve();
    });
  });
}

export class Pooler extends EventEmitter {
  config: Config;
  settings: Settings;
  readonly databases = new Map<string, Database>();
  readonly users = new Map<string, User>();
  readonly loginClients = new StatList<ClientConn>('login_clients');
  /** Every client connection, logged in or not (max_client_conn). */
  clientCount = 0;
  readonly cancelKeys = new Map<string, ClientConn>();
  /** Protocol-level prepared statements of transaction/statement-mode clients, by query text (prepared.ts). */
  readonly stmts = new StmtRegistry();
  /** LISTEN/NOTIFY for transaction/statement-mode clients (notify.ts). */
  readonly notify = new NotifyHub();
  /** auth_user + auth_query lookups (auth/auth-query.ts). */
  readonly authQuery = new AuthQuery(this);
  private trackedSetCache: { from: readonly string[]; names: ReadonlySet<string> } | null = null;

  /** track_set_parameters, lower case. */
  trackedSetNames(): ReadonlySet<string> {
    const list = this.settings.track_set_parameters;
    if (this.trackedSetCache?.from !== list) this.trackedSetCache = { from: list, names: new Set(list.map((n) => n.toLowerCase())) };
    return this.trackedSetCache.names;
  }
  private servers: net.Server[] = [];
  private metricsServer: MetricsServer | null = null;
  #metrics: Metrics | null = null;
  private unixPath = '';
  readonly janitor: Janitor;
  readonly console: AdminConsole;
  /** Log subject for this pooler's own lines: no prefix, but in-process 'log' listeners can tell whose line it is. */
  readonly own: LogSubject = { logPrefix: () => '', pooler: this };
  shutdown: ShutdownMode = 'none';
  /** PAUSE without a database (or SIGUSR1): every database is paused. */
  pausedAll = false;
  private waiters: Waiter[] = [];
  /** Client-side TLS (client_tls_*): null when client_tls_sslmode is disable. Rebuilt on RELOAD. */
  clientTls: ClientTls | null = null;
  /** Server-side TLS (server_tls_*): null when server connections are plain text. Rebuilt on RELOAD. */
  serverTls: ServerTls | null = null;
  /** auth_hba_file rules (auth_type = hba), reloaded on RELOAD. */
  hba: HbaRules | null = null;
  /** The link to the primary when this pooler is one of several workers (workers > 1); null for a single process. */
  readonly cluster: WorkerLink | null;

  /** Throws an Error with a readable message when the client TLS files or settings are unusable. */
  constructor(config: Config, cluster: WorkerLink | null = null) {
    super();
    this.cluster = cluster;
    this.config = config;
    this.settings = config.settings;
    setBusyPoll(config.settings.busy_poll_us);
    this.clientTls = buildClientTls(config.settings);
    this.serverTls = buildServerTls(config.settings);
    this.hba = loadHba(config.settings);
    this.applyUsers();
    this.applyDatabases();
    this.janitor = new Janitor(this);
    this.console = new AdminConsole(this);
  }

  // ---- listening ----

  /** Open the TCP listeners (listen_addr) and the unix socket (unix_socket_dir). */
  async listen(): Promise<void> {
    const st = this.settings;
    if (st.metrics_port > 0) {
      // first, so that the endpoint answers once clients can connect; with workers > 1 every worker listens on the
      // same port (node:cluster shares it) and answers for all of them
      const { MetricsServer } = await import('./stats/metrics.js');
      const server = new MetricsServer(await this.metrics(), this.own);
      await server.listen(st.metrics_listen_addr.flatMap((a) => (a === '*' ? ['0.0.0.0', '::'] : [a])), st.metrics_port);
      this.metricsServer = server;
    }
    const addrs = st.listen_addr.flatMap((a) => (a === '*' ? ['0.0.0.0', '::'] : [a]));
    const tasks: Promise<void>[] = [];
    for (const host of addrs) tasks.push(this.listenOne({ host, port: st.listen_port, backlog: st.listen_backlog }, false));
    if (st.unix_socket_dir) {
      const path = `${st.unix_socket_dir}/.s.PGSQL.${st.listen_port}`;
      if (!this.cluster) await removeStaleSocket(path); // workers share the primary's socket: it checked
      this.unixPath = path;
      tasks.push(this.listenOne({ path, backlog: st.listen_backlog }, true));
    }
    const results = await Promise.allSettled(tasks);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) {
      await this.closeListeners();
      await this.metricsServer?.close();
      this.metricsServer = null;
      throw failed[0]!.reason;
    }
    if (this.unixPath) {
      try {
        chmodSync(this.unixPath, st.unix_socket_mode);
      } catch {
        /* best effort */
      }
    }
    this.janitor.start();
  }

  /**
   * The Prometheus metrics (stats/metrics.ts), made at first use: the console's SHOW tables (merged across workers)
   * read at each render. The process's own metrics (cpu, memory, event loop) only with the endpoint of a single process.
   * prom-client is loaded then, not before: a pooler without metrics does not carry it.
   */
  async metrics(): Promise<Metrics> {
    const { Metrics } = await import('./stats/metrics.js');
    this.#metrics ??= new Metrics(
      (what) => this.console.table(what),
      () => ({ version: VERSION_LINE, maxClientConn: this.settings.max_client_conn, maxUserConnections: this.settings.max_user_connections }),
      this.settings.metrics_port > 0 && this.cluster === null,
    );
    return this.#metrics;
  }

  /** `host:port` of the metrics listeners (none when metrics_port is 0). */
  metricsAddresses(): string[] {
    return this.metricsServer?.addresses() ?? [];
  }

  private listenOne(opts: net.ListenOptions, unix: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      // paused: nothing is read before the client is set up (its reads go through src/net/adopt.ts)
      const srv = net.createServer({ noDelay: true, pauseOnConnect: true }, (sock) => this.onConnection(sock, unix));
      srv.once('error', (err: NodeJS.ErrnoException) => {
        log.error(`cannot listen on ${opts.path ?? `${opts.host}:${opts.port}`}: ${err.message}`, this.own);
        reject(err);
      });
      srv.listen(opts, () => {
        srv.removeAllListeners('error');
        srv.on('error', (err) => log.error(`listener error: ${err.message}`, this.own));
        log.log(`listening on ${opts.path ? `unix:${opts.path}` : `${opts.host}:${(srv.address() as net.AddressInfo).port}`}`, this.own);
        this.servers.push(srv);
        resolve();
      });
    });
  }

  /** The TCP port actually bound (listen_port may be 0 in tests). */
  get port(): number {
    for (const s of this.servers) {
      const a = s.address();
      if (a && typeof a === 'object') return a.port;
    }
    return this.settings.listen_port;
  }

  /** What the listeners are bound to: `host:port` for TCP (IPv6 hosts in brackets), `unix:<path>` for the socket. */
  boundAddresses(): string[] {
    const out: string[] = [];
    for (const s of this.servers) {
      const a = s.address();
      if (a && typeof a === 'object') out.push(a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
      else if (typeof a === 'string') out.push(`unix:${a}`);
    }
    return out;
  }

  async closeListeners(): Promise<void> {
    const servers = this.servers;
    this.servers = [];
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    if (this.unixPath && !this.cluster) {
      try {
        unlinkSync(this.unixPath);
      } catch {
        /* already removed */
      }
    }
    this.unixPath = '';
  }

  private onConnection(sock: net.Socket, unix: boolean): void {
    clock.refresh();
    if (this.shutdown !== 'none') {
      sock.destroy();
      return;
    }
    this.clientCount++;
    const c = new ClientConn(this, sock, unix);
    this.loginClients.push(c);
    // accepted paused (pauseOnConnect): read once it may log in
    if (unix || this.takeLoginSlot(c)) sock.resume();
  }

  // ---- logins per source address (max_concurrent_logins_per_host) ----

  private readonly loginsByHost = new Map<string, { running: number; queue: ClientConn[] }>();

  /**
   * A TCP client starts logging in: it gets a slot (true), or waits unread until one of its address's logins ends
   * (false: loginDone resumes it).
   */
  private takeLoginSlot(c: ClientConn): boolean {
    const limit = this.settings.max_concurrent_logins_per_host;
    if (limit <= 0) return true;
    let h = this.loginsByHost.get(c.addr);
    if (!h) {
      h = { running: 0, queue: [] };
      this.loginsByHost.set(c.addr, h);
    }
    if (h.running < limit) {
      h.running++;
      c.loginSlot = 'running';
      return true;
    }
    c.loginSlot = 'queued';
    h.queue.push(c);
    return false;
  }

  /** The client's login is over (logged in, or gone): its slot goes to the next waiting client of that address. */
  loginDone(c: ClientConn): void {
    const slot = c.loginSlot;
    if (slot === null) return;
    c.loginSlot = null;
    const h = this.loginsByHost.get(c.addr);
    if (!h) return;
    if (slot === 'queued') {
      const i = h.queue.indexOf(c);
      if (i >= 0) h.queue.splice(i, 1);
    } else {
      h.running--;
      const next = h.queue.shift();
      if (next) {
        h.running++;
        next.loginSlot = 'running';
        next.socket.resume();
      }
    }
    if (h.running === 0 && h.queue.length === 0) this.loginsByHost.delete(c.addr);
  }

  // ---- login ----

  /** Startup packet parsed: find the database and user, check limits, start authentication. */
  loginClient(c: ClientConn, dbName: string, userName: string): void {
    if (dbName === ADMIN_DB) {
      this.console.login(c, userName); // exempt from max_client_conn, as in PgBouncer
      return;
    }
    if (this.clientCount > this.settings.max_client_conn) throw Pool.tooMany();
    const link = this.cluster;
    if (link) {
      // workers > 1: max_client_conn over every worker, through slots leased from the primary (a message only when
      // this worker's lease is used up)
      const got = link.takeClient(this.settings.max_client_conn, (ok) => {
        if (!c.isOpen) {
          if (ok) link.releaseClient(this.settings.max_client_conn);
          return;
        }
        c.clientSlot = ok;
        c.lookupDone(() => {
          if (!ok) throw Pool.tooMany();
          this.loginKnown(c, dbName, userName);
        });
      });
      if (!got) {
        c.awaitLookup();
        return;
      }
      c.clientSlot = true;
    }
    this.loginKnown(c, dbName, userName);
  }

  /** A client within max_client_conn: look its user up (auth_query if needed), then authenticate it. */
  private loginKnown(c: ClientConn, dbName: string, userName: string): void {
    const known = this.users.get(userName);
    let db = this.findDatabase(dbName);
    if (db?.dead) db = undefined;
    const st = this.settings;
    // auth_query: a user without a secret in auth_file gets it from PostgreSQL first
    if (db && known?.secret === undefined && st.auth_type !== 'trust' && st.auth_type !== 'any' && this.authQuery.authUser(db)) {
      const found = db;
      c.awaitLookup();
      this.authQuery.lookup(found, userName, (err, secret) => {
        if (!c.isOpen) return;
        if (err) {
          c.fail(err);
          return;
        }
        const user = this.users.get(userName) ?? known ?? new User(userName);
        if (user.secret === undefined) {
          user.secret = secret;
          user.fromAuthQuery = secret !== undefined;
        }
        c.lookupDone(() => c.beginAuth(found, user, dbName));
      });
      return;
    }
    // like PgBouncer, authenticate first so an unknown database is not revealed to strangers
    c.beginAuth(db ?? null, known ?? new User(userName), dbName);
  }

  /** The client proved who it is: attach it to its pool and send the welcome (or wait for one). */
  clientAuthenticated(c: ClientConn, dbName: string): void {
    if (c.admin !== null) {
      this.console.authenticated(c);
      return;
    }
    const db = c.db;
    if (!db) throw new PoolerError(SqlState.InvalidCatalogName, `no such database: ${dbName}`);
    if (db.disabled) throw new PoolerError(SqlState.CannotConnectNow, `database "${db.name}" is disabled`);
    let user = c.user!;
    if (!this.users.has(user.name)) this.users.set(user.name, user);
    user = this.users.get(user.name)!;
    c.user = user;
    const pool = this.getPool(db, db.forcedUser ?? user);
    c.pool = pool;
    this.loginClients.remove(c);
    this.loginDone(c);
    db.clientCount++;
    user.clientCount++;
    db.lastUsed = clock.now;
    pool.stats.clientLoginCount++;
    if (pool.welcome) {
      c.finishLogin();
      return;
    }
    pool.setClientState(c, ClientState.WaitingLogin);
    pool.launchIfNeeded();
    pool.failWaitersIfDown();
  }

  /** A client closed: take it off every list. */
  clientGone(c: ClientConn): void {
    this.clientCount--;
    if (c.clientSlot) {
      c.clientSlot = false;
      this.cluster?.releaseClient(this.settings.max_client_conn);
    }
    if (c.cancelPid) this.cancelKeys.delete(`${c.cancelPid}:${c.cancelKey}`);
    this.loginDone(c);
    if (c.state === ClientState.Login) this.loginClients.remove(c);
    else if (c.admin !== null) this.console.gone(c);
    else {
      c.db!.clientCount--;
      c.user!.clientCount--;
    }
    if (c.pool) c.pool.setClientState(c, ClientState.Closed);
    else c.state = ClientState.Closed;
    if (this.shutdown !== 'none') this.checkShutdown();
  }

  /** A client by its `id` (SHOW CLIENTS), logged in or not, console clients included. */
  findClient(id: number): ClientConn | undefined {
    const lists = [this.loginClients, this.console.clients];
    for (const p of this.pools()) lists.push(p.activeClients, p.waitingClients, p.loginWaitClients);
    for (const list of lists) for (const c of list.toArray()) if (c.id === id) return c;
    return undefined;
  }

  registerCancelKey(c: ClientConn): void {
    this.cancelKeys.set(`${c.cancelPid}:${c.cancelKey}`, c);
  }

  /** A CancelRequest arrived on its own connection. */
  cancel(pid: number, key: number): void {
    const link = this.cluster;
    if (link && WorkerLink.ownerOf(pid) !== link.index) {
      // a client of another worker: the primary passes it on
      log.debug(`cancel request for a client of worker ${WorkerLink.ownerOf(pid)}: forwarded`);
      link.forwardCancel(pid, key);
      return;
    }
    const c = this.cancelKeys.get(`${pid}:${key}`);
    if (!c) {
      log.log('failed cancel request: no client with that key', this.own);
      return;
    }
    const s = c.server;
    if (!s) {
      log.debug('cancel request for idle client', c);
      return;
    }
    s.sendCancel();
  }

  // ---- registry ----

  findDatabase(name: string): Database | undefined {
    const db = this.databases.get(name);
    if (db) return db;
    const fallback = this.config.databases.get('*');
    if (!fallback) return undefined;
    const auto = new Database(name, { ...fallback, name });
    auto.auto = true;
    auto.forcedUser = this.forcedUserFor(auto.entry);
    this.databases.set(name, auto);
    log.log(`registered new auto-database: ${name}`, this.own);
    return auto;
  }

  /** The User of that name, made and remembered if there is none yet (auth_user without an auth_file entry). */
  userFor(name: string): User {
    let u = this.users.get(name);
    if (!u) {
      u = new User(name);
      this.users.set(name, u);
    }
    return u;
  }

  getPool(db: Database, user: User): Pool {
    let pool = db.pools.get(user.name);
    if (!pool) {
      pool = new Pool(this, db, user);
      db.pools.set(user.name, pool);
    }
    return pool;
  }

  *pools(): IterableIterator<Pool> {
    for (const db of this.databases.values()) yield* db.pools.values();
  }

  /** Close one idle server of another pool matching pred, to make room (max_db/user_connections). */
  evictIdle(pred: (p: Pool) => boolean, except: Pool | null): boolean {
    for (const p of this.pools()) {
      if (p !== except && pred(p) && p.closeOneIdle()) return true;
    }
    return false;
  }

  // ---- asked by the primary (workers > 1) ----

  /** Give up n more server slots of a pool: idle servers close now, busy ones when released (Pool.serverReady). */
  surrenderSlots(dbName: string, userName: string, n: number, reset: boolean): void {
    const pool = this.databases.get(dbName)?.pools.get(userName);
    if (!pool) return;
    if (reset) {
      pool.surrender = 0;
      return;
    }
    pool.surrender += n;
    while (pool.surrender > 0) {
      const s = pool.idleServers.head ?? pool.usedServers.head;
      if (!s) break;
      pool.surrender--;
      s.surrendered = true;
      s.close('server slot moved to another worker');
    }
  }

  /** Close one idle server of the database or user (not of pool `except`) for another worker's waiting client. */
  evictFor(dbName: string | null, userName: string | null, except: string | null): void {
    this.evictIdle((p) => (dbName !== null ? p.db.name === dbName : p.user.name === userName) && p.key !== except, null);
  }

  /** server_check_query as a query to send, or null when checks are off. */
  checkQuery(): string | null {
    const q = this.settings.server_check_query;
    if (!q) return null;
    return q === '<empty>' ? '' : q;
  }

  private forcedUserFor(e: DatabaseEntry): User | null {
    if (!e.user) return null;
    const u = new User(e.user);
    u.secret = e.password ?? this.config.authFile.get(e.user);
    u.entry = this.config.users.get(e.user);
    return u;
  }

  private applyUsers(): void {
    const seen = new Set<string>();
    for (const [name, secret] of this.config.authFile) {
      let u = this.users.get(name);
      if (!u) this.users.set(name, (u = new User(name)));
      if (u.secret !== secret) u.scramKeys = undefined;
      u.secret = secret;
      seen.add(name);
    }
    for (const [name, entry] of this.config.users) {
      let u = this.users.get(name);
      if (!u) this.users.set(name, (u = new User(name)));
      u.entry = entry;
      seen.add(name);
    }
    for (const [name, u] of this.users) {
      if (!seen.has(name)) {
        u.secret = undefined;
        u.entry = undefined;
      }
    }
  }

  private applyDatabases(): void {
    const entries = this.config.databases;
    for (const [name, entry] of entries) {
      if (name === '*') continue;
      const db = this.databases.get(name);
      if (!db) {
        const d = new Database(name, entry);
        d.forcedUser = this.forcedUserFor(entry);
        this.databases.set(name, d);
        continue;
      }
      const changed = CONN_KEYS.some((k) => db.entry[k] !== entry[k]);
      db.entry = entry;
      db.dead = false;
      db.auto = false;
      if (changed) {
        db.forcedUser = this.forcedUserFor(entry);
        this.reconnect(db);
      }
    }
    for (const [name, db] of this.databases) {
      if (entries.has(name)) continue;
      const fallback = entries.get('*');
      if (db.auto && fallback) {
        db.entry = { ...fallback, name };
        continue;
      }
      db.dead = true;
      this.reconnect(db);
    }
  }

  /** Close a database's servers as soon as each is released (PgBouncer's close_needed). */
  reconnect(db: Database): void {
    for (const p of db.pools.values()) {
      for (const list of [p.activeServers, p.loginServers, p.testedServers])
        for (const s of list.toArray()) s.closeNeeded = true;
      for (const list of [p.idleServers, p.usedServers])
        for (const s of list.toArray()) s.close('database configuration changed');
    }
    this.checkWaiters();
  }

  // ---- reload and shutdown ----

  /**
   * Where RELOAD reads the configuration again: the config file by default; the library sets it to rebuild from its
   * options (auth_file and the other files are read again either way). Throws ConfigError when it is invalid.
   */
  source: () => Config = () => loadPgtideConfig(this.config.file);

  /**
   * Re-read the configuration (see `source`) and apply it: SIGHUP and the console's RELOAD both come here.
   * On any error the old configuration stays and the errors are logged; returns whether it worked.
   */
  reloadFromFile(): boolean {
    try {
      const next = this.source();
      for (const w of next.warnings) log.warning(w.message, this.own);
      this.reload(next);
      return true;
    } catch (err) {
      if (err instanceof ConfigError) for (const e of err.errors) log.error(e.message, this.own);
      else log.error(`reload failed: ${(err as Error).message}`, this.own);
      log.error('RELOAD failed, keeping the old configuration', this.own);
      return false;
    }
  }

  /**
   * Apply a freshly loaded configuration (RELOAD / SIGHUP). Settings that need a restart keep their value (and are
   * logged); a TLS or hba problem keeps the old settings of that group (logged as an error). Emits 'reload' with the
   * outcome and returns it.
   */
  reload(next: Config): ReloadOutcome {
    const old = this.settings;
    const merged = { ...next.settings } as Record<string, unknown>;
    const restartNeeded: string[] = [];
    const kept: string[] = [];
    for (const key of Object.keys(merged)) {
      const p = findParam(key);
      if (p && !p.reloadable && JSON.stringify(merged[key]) !== JSON.stringify((old as Record<string, unknown>)[key])) {
        log.warning(`${key} cannot be changed by a reload; restart pgtide to apply it`, this.own);
        merged[key] = (old as Record<string, unknown>)[key];
        restartNeeded.push(key);
      }
    }
    const keepOld = (key: string) => {
      if (JSON.stringify(merged[key]) === JSON.stringify((old as Record<string, unknown>)[key])) return;
      merged[key] = (old as Record<string, unknown>)[key];
      kept.push(key);
    };
    try {
      this.clientTls = buildClientTls(merged as unknown as Settings);
    } catch (err) {
      // a broken certificate must not take TLS away from new clients: keep the old context and its settings
      log.error(`${(err as Error).message}; keeping the old client TLS configuration`, this.own);
      for (const key of Object.keys(merged)) if (key.startsWith('client_tls')) keepOld(key);
    }
    try {
      this.serverTls = buildServerTls(merged as unknown as Settings);
    } catch (err) {
      log.error(`${(err as Error).message}; keeping the old server TLS configuration`, this.own);
      for (const key of Object.keys(merged)) if (key.startsWith('server_tls')) keepOld(key);
    }
    try {
      this.hba = loadHba(merged as unknown as Settings);
    } catch (err) {
      // a broken hba file must not open the door or lock everyone out: keep the old rules and auth settings
      log.error(`${(err as Error).message}; keeping the old auth_type and auth_hba_file`, this.own);
      keepOld('auth_type');
      keepOld('auth_hba_file');
    }
    const changed = Object.keys(merged).filter(
      (key) => JSON.stringify(merged[key]) !== JSON.stringify((old as Record<string, unknown>)[key]),
    );
    this.config = { ...next, settings: merged as unknown as Settings };
    this.settings = this.config.settings;
    this.applyUsers();
    this.applyDatabases();
    this.settingsChanged();
    const outcome: ReloadOutcome = { changed, restartNeeded, kept };
    this.emit('reload', outcome);
    return outcome;
  }

  /** Settings changed (RELOAD, SET): a bigger pool may serve its waiting clients now. */
  settingsChanged(): void {
    setBusyPoll(this.settings.busy_poll_us);
    for (const p of this.pools()) if (p.waitingClients.count > 0) p.launchIfNeeded();
  }

  // ---- PAUSE / RESUME / KILL / RECONNECT / WAIT_CLOSE ----

  isPaused(db: Database): boolean {
    return this.pausedAll || db.paused;
  }

  /**
   * PAUSE: no new server connections for the databases (null: all); idle servers close now, the others when
   * released. Resolves (null) once none of their servers is left, or with an error text if RESUME came first.
   */
  pause(dbs: Database[] | null): Promise<string | null> {
    if (dbs === null) this.pausedAll = true;
    else for (const db of dbs) db.paused = true;
    for (const db of dbs ?? [...this.databases.values()]) {
      for (const p of db.pools.values()) {
        for (const list of [p.idleServers, p.usedServers]) for (const s of list.toArray()) s.close('pause mode');
      }
    }
    return new Promise((resolve) => {
      this.waiters.push({ dbs, kind: 'pause', done: resolve });
      this.checkWaiters();
    });
  }

  /** RESUME: waiting clients get servers again. */
  resume(dbs: Database[] | null): void {
    if (dbs === null) {
      this.pausedAll = false;
      for (const db of this.databases.values()) db.paused = false;
    } else for (const db of dbs) db.paused = false;
    for (const w of this.waiters.splice(0)) {
      if (w.kind === 'pause' && !this.waiterPaused(w)) w.done('PAUSE canceled by RESUME');
      else this.waiters.push(w);
    }
    for (const db of dbs ?? [...this.databases.values()]) {
      if (this.isPaused(db)) continue;
      for (const p of db.pools.values()) {
        p.launchIfNeeded();
        p.fillMinPool();
      }
    }
  }

  private waiterPaused(w: Waiter): boolean {
    return w.dbs === null ? this.pausedAll : w.dbs.every((db) => this.isPaused(db));
  }

  /** WAIT_CLOSE: resolves once no server of the databases (null: all) is marked close_needed. */
  waitClose(dbs: Database[] | null): Promise<string | null> {
    return new Promise((resolve) => {
      this.waiters.push({ dbs, kind: 'close', done: resolve });
      this.checkWaiters();
    });
  }

  /** KILL: drop every client and server of the database now; it stays paused until RESUME. */
  kill(db: Database): void {
    db.paused = true;
    const err = new PoolerError(SqlState.AdminShutdown, 'database removed');
    for (const p of db.pools.values()) {
      for (const list of [p.activeServers, p.idleServers, p.usedServers, p.testedServers, p.loginServers])
        for (const s of list.toArray()) s.close('database removed', false, SqlState.AdminShutdown);
      for (const list of [p.activeClients, p.waitingClients, p.loginWaitClients])
        for (const c of list.toArray()) c.fail(err);
    }
    this.checkWaiters();
  }

  /** Resolve the console commands whose condition now holds (called whenever a server goes away). */
  checkWaiters(): void {
    if (this.waiters.length === 0) return;
    const pending: Waiter[] = [];
    const done: Waiter[] = [];
    for (const w of this.waiters) {
      const dbs = w.dbs ?? [...this.databases.values()];
      let left = 0;
      for (const db of dbs) {
        if (w.kind === 'pause') left += db.serverCount;
        else
          for (const p of db.pools.values())
            for (const list of [p.activeServers, p.idleServers, p.usedServers, p.testedServers, p.loginServers])
              for (const s of list.toArray()) if (s.closeNeeded) left++;
      }
      (left === 0 ? done : pending).push(w);
    }
    this.waiters = pending;
    for (const w of done) w.done(null);
  }

  /** SIGINT: stop accepting, let clients finish their transactions, exit when no server is in use. */
  safeShutdown(why = 'got SIGINT, shutting down, waiting for servers to be released'): void {
    if (this.shutdown !== 'none') return;
    this.shutdown = 'wait-for-servers';
    log.log(why, this.own);
    void this.closeListeners();
    for (const c of this.loginClients.toArray()) c.close('pooler is shutting down');
    for (const p of this.pools()) {
      for (const c of p.waitingClients.toArray())
        c.fail(new PoolerError(SqlState.AdminShutdown, 'pooler is shutting down'));
      for (const c of p.loginWaitClients.toArray())
        c.fail(new PoolerError(SqlState.AdminShutdown, 'pooler is shutting down'));
    }
    this.checkShutdown();
  }

  /**
   * SHUTDOWN WAIT_FOR_CLIENTS: stop accepting, let every client finish and leave, then 'drained'.
   * Console clients do not count (the one that asked is still connected).
   */
  waitForClientsShutdown(
    why = 'SHUTDOWN WAIT_FOR_CLIENTS: not accepting new connections, exiting once every client has disconnected',
  ): void {
    if (this.shutdown !== 'none') return;
    this.shutdown = 'wait-for-clients';
    log.log(why, this.own);
    void this.closeListeners();
    for (const c of this.loginClients.toArray()) c.close('pooler is shutting down');
    this.checkShutdown();
  }

  /** During a safe shutdown: idle clients go now; the rest when their server is released. */
  checkShutdown(): void {
    if (this.shutdown === 'wait-for-clients') {
      if (this.clientCount - this.console.clients.count <= 0) this.emit('drained');
      return;
    }
    if (this.shutdown !== 'wait-for-servers') return;
    let busy = 0;
    for (const p of this.pools()) {
      for (const c of p.activeClients.toArray()) {
        if (!c.server || (p.mode() !== 'session' && c.server.outstanding === 0 && c.server.txStatus === 0x49 && !c.server.dirty))
          c.fail(new PoolerError(SqlState.AdminShutdown, 'pooler is shutting down'));
      }
      busy += p.activeServers.count + p.waitingClients.count;
    }
    if (busy === 0) this.emit('drained');
  }

  /** Close every connection now. */
  async close(): Promise<void> {
    this.shutdown = 'immediate';
    this.notify.shutdown();
    this.janitor.stop();
    // net.Server.close() settles only once every accepted connection is gone: close them first, then wait
    const listeners = this.closeListeners();
    const metrics = this.metricsServer?.close();
    this.metricsServer = null;
    for (const c of this.loginClients.toArray()) c.close('pooler is shutting down', true);
    for (const c of this.console.clients.toArray()) c.fail(new PoolerError(SqlState.AdminShutdown, 'pooler is shutting down'));
    for (const p of [...this.pools()]) {
      for (const list of [p.activeClients, p.waitingClients, p.loginWaitClients])
        for (const c of list.toArray()) c.fail(new PoolerError(SqlState.AdminShutdown, 'pooler is shutting down'));
      for (const list of [p.activeServers, p.idleServers, p.usedServers, p.testedServers, p.loginServers])
        for (const s of list.toArray()) s.close('pooler is shutting down', true);
    }
    await listeners;
    await metrics;
  }
}

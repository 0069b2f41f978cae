/* Databases, users and pools: herding connections between state lists, assigning servers to clients. */

import type { DatabaseEntry, PoolMode, UserEntry } from '../config/types.js';
import { SqlState } from '../protocol/sqlstate.js';
import { PoolerError } from '../util/errors.js';
import { clock } from '../util/clock.js';
import { log } from '../util/log.js';
import { StatList } from './list.js';
import type { ClientConn } from './client.js';
import { ServerConn } from './server.js';
import type { ServiceConn } from './service-conn.js';
import type { Pooler } from '../pooler.js';
import { ClientState, ServerState } from './states.js';
import { PoolStats } from '../stats/stats.js';
import { performance } from 'node:perf_hooks';
import { poolKey } from '../cluster/messages.js';

/** A user known to the pooler: from auth_file, [users], a forced user, or a login. */
export class User {
  /** Secret from auth_file (plain, md5…, SCRAM-SHA-256$…), if any. */
  secret: string | undefined;
  entry: UserEntry | undefined;
  /** The secret came from auth_query: asked again after a failed login. */
  fromAuthQuery = false;
  /** SCRAM keys recovered from a client login, for logging in to PostgreSQL without the password. */
  scramKeys: { clientKey: Buffer; serverKey: Buffer; secret: string } | undefined;
  /** Server connections logged in as this user, across pools (max_user_connections). */
  serverCount = 0;
  /** Clients logged in as this user. */
  clientCount = 0;

  constructor(readonly name: string) {}
}

/** A `[databases]` entry (or one made from `*`), with its pools. */
export class Database {
  readonly pools = new Map<string, Pool>();
  /** Server connections to this database across its pools (max_db_connections). */
  serverCount = 0;
  clientCount = 0;
  /** Made from the `*` entry; freed after autodb_idle_timeout. */
  auto = false;
  /** Time the database last had a client or server (for autodb_idle_timeout). */
  lastUsed = clock.now;
  /** Removed from the config by a reload: no new logins. */
  dead = false;
  /** PAUSE db / KILL db: no server connections until RESUME. */
  paused = false;
  /** DISABLE db: new logins are refused. */
  disabled = false;
  forcedUser: User | null = null;

  constructor(
    readonly name: string,
    public entry: DatabaseEntry,
  ) {}

  get dbname(): string {
    return this.entry.dbname ?? this.name;
  }
}

/** One pool per (database, user): state lists, waiting clients, server launch policy. */
export class Pool {
  // client lists
  readonly activeClients = new StatList<ClientConn>('cl_active');
  readonly waitingClients = new StatList<ClientConn>('cl_waiting');
  /** Clients whose login waits for the pool's first server (for its ParameterStatus set). */
  readonly loginWaitClients = new StatList<ClientConn>('cl_waiting_login');
  // server lists
  readonly activeServers = new StatList<ServerConn>('sv_active');
  readonly idleServers = new StatList<ServerConn>('sv_idle');
  readonly usedServers = new StatList<ServerConn>('sv_used');
  readonly testedServers = new StatList<ServerConn>('sv_tested');
  readonly loginServers = new StatList<ServerConn>('sv_login');

  /** ParameterStatus values of the pool's first server, sent to every client at login. */
  welcome: Map<string, string> | null = null;
  /** Encoded ParameterStatus sets for the welcome, by the client's varsKey (most clients share one). */
  readonly welcomeCache = new Map<string, Buffer>();
  /** The tracked settings of logged-in clients, one copy per distinct set (ClientConn.finishLogin; copy on change). */
  readonly sharedVars = new Map<string, { vars: Map<string, string>; key: string }>();
  private tracked: [string, string][] | null = null;
  /** When a server connect/login last failed, and why. */
  lastConnectFailed = 0;
  lastError: PoolerError | null = null;
  /** Set once a client has waited reserve_pool_timeout: servers beyond pool_size allowed. */
  reserveActive = false;
  lastUsed = clock.now;
  readonly stats = new PoolStats();
  /** workers > 1: server slots asked of the primary and not answered yet. */
  slotRequests = 0;
  /** workers > 1: servers to give back for another worker's clients (closed when idle or released). */
  surrender = 0;
  /** workers > 1: the pool's queued slot requests were withdrawn (no client waits any more). */
  private withdrawn = false;

  constructor(
    readonly pooler: Pooler,
    readonly db: Database,
    /** The user servers log in as (the forced user, or the client's own). */
    readonly user: User,
  ) {}

  get name(): string {
    return `${this.db.name}/${this.user.name}`;
  }

  /** Tracked parameters (PgBouncer's varcache) with the pool's server defaults, for clients that set none. */
  trackedDefaults(extra: readonly string[]): [string, string][] {
    if (this.tracked === null) {
      const names = new Set(['client_encoding', 'datestyle', 'timezone', 'standard_conforming_strings', 'application_name']);
      for (const e of extra) names.add(e.toLowerCase());
      this.tracked = [...this.welcome!].filter(([name]) => names.has(name.toLowerCase()));
    }
    return this.tracked;
  }

  mode(): PoolMode {
    return this.user.entry?.pool_mode ?? this.db.entry.pool_mode ?? this.pooler.settings.pool_mode;
  }

  poolSize(): number {
    return this.user.entry?.pool_size ?? this.db.entry.pool_size ?? this.pooler.settings.default_pool_size;
  }

  /** min_pool_size; with workers > 1 this worker's part of it (see docs/differences.md). */
  minPoolSize(): number {
    const min = this.db.entry.min_pool_size ?? this.pooler.settings.min_pool_size;
    const link = this.pooler.cluster;
    if (!link || min <= 0) return min;
    return Math.floor(min / link.workers) + (link.index - 1 < min % link.workers ? 1 : 0);
  }

  /** The primary's name for this pool (workers > 1). */
  get key(): string {
    return poolKey(this.db.name, this.user.name);
  }

  reserveSize(): number {
    return (
      this.user.entry?.reserve_pool_size ?? this.db.entry.reserve_pool_size ?? this.pooler.settings.reserve_pool_size
    );
  }

  serverLifetimeMs(): number {
    return (this.db.entry.server_lifetime ?? this.pooler.settings.server_lifetime) * 1000;
  }

  serverCount(): number {
    return (
      this.loginServers.count +
      this.idleServers.count +
      this.activeServers.count +
      this.usedServers.count +
      this.testedServers.count
    );
  }

  clientCount(): number {
    return this.activeClients.count + this.waitingClients.count + this.loginWaitClients.count;
  }

  // ---- state changes: the only code that moves connections between lists ----

  setClientState(c: ClientConn, state: ClientState): void {
    c.list?.remove(c as never);
    c.state = state;
    switch (state) {
      case ClientState.Active:
        this.activeClients.push(c);
        break;
      case ClientState.Waiting:
        c.waitStart = performance.now();
        this.waitingClients.push(c);
        break;
      case ClientState.WaitingLogin:
        c.waitStart = performance.now();
        this.loginWaitClients.push(c);
        break;
      default:
        break; // Login lives on the pooler's list; Closed on none
    }
  }

  setServerState(s: ServerConn, state: ServerState): void {
    s.list?.remove(s as never);
    s.state = state;
    switch (state) {
      case ServerState.Login:
        this.loginServers.push(s);
        break;
      case ServerState.Idle:
        s.idleSince = clock.now;
        this.idleServers.push(s); // takeIdle pops the tail (LIFO) or, with server_round_robin, shifts the head
        break;
      case ServerState.Active:
        this.activeServers.push(s);
        break;
      case ServerState.Used:
        this.usedServers.push(s);
        break;
      case ServerState.Tested:
        this.testedServers.push(s);
        break;
      default:
        break;
    }
  }

  // ---- assignment ----

  /** A client has data to send and no server: link an idle one or queue the client. */
  requestServer(c: ClientConn): void {
    this.lastUsed = clock.now;
    if (this.db.dead) {
      // removed by a reload: no server can be opened for it any more (PgBouncer drops such clients too)
      c.fail(new PoolerError(SqlState.InvalidCatalogName, 'database removed'));
      return;
    }
    if (this.pooler.isPaused(this.db)) {
      // PAUSE: the client waits, queued, until RESUME
      if (c.state !== ClientState.Waiting) this.setClientState(c, ClientState.Waiting);
      return;
    }
    const s = this.takeIdle();
    if (s) {
      this.link(c, s);
      return;
    }
    if (c.state !== ClientState.Waiting) this.setClientState(c, ClientState.Waiting);
    this.checkUsed();
    this.launchIfNeeded();
    this.failWaitersIfDown();
  }

  private takeIdle(): ServerConn | null {
    const list = this.idleServers;
    return this.pooler.settings.server_round_robin ? list.shift() : list.pop();
  }

  private link(c: ClientConn, s: ServerConn): void {
    this.setClientState(c, ClientState.Active);
    this.setServerState(s, ServerState.Active);
    s.client = c;
    c.server = s;
    s.linkedAt = clock.now;
    this.stats.onAssign(c.waitStart);
    c.waitStart = 0;
    s.prepareForClient(c);
  }

  /** A server is ready for work (logged in, released, tested): give it to a waiter or park it. */
  serverReady(s: ServerConn): void {
    if (s.closeNeeded || this.db.dead) {
      s.close('database configuration changed');
      return;
    }
    if (s.cancelsInFlight > 0) {
      // being canceled: nobody gets it until PostgreSQL has the cancel (ServerConn.sendCancel resumes it)
      s.heldForCancel = true;
      this.setServerState(s, ServerState.Active);
      return;
    }
    if (this.loginWaitClients.count > 0 && this.welcome) {
      for (const c of this.loginWaitClients.toArray()) c.finishLogin();
    }
    if (this.pooler.isPaused(this.db)) {
      s.close('pause mode');
      return;
    }
    if (this.surrender > 0) {
      // workers > 1: the primary gives this slot to another worker's waiting clients
      this.surrender--;
      s.surrendered = true;
      s.close('server slot moved to another worker');
      return;
    }
    const c = this.waitingClients.shift();
    if (c) {
      this.link(c, s);
      return;
    }
    this.setServerState(s, ServerState.Idle);
  }

  /** The client is done with its server for now (end of transaction, statement or session). */
  release(s: ServerConn): void {
    const c = s.client;
    this.giveBack(s);
    // input the client held while it had the server (a pipelined batch that waited for answers, requests during a
    // session-state check) needs a server again
    c?.requestIfWaiting();
  }

  private giveBack(s: ServerConn): void {
    s.setTracking(false);
    const c = s.client;
    if (c) {
      c.unlinked();
      s.client = null;
      if (c.state === ClientState.Active && c.list !== this.activeClients) this.setClientState(c, ClientState.Active);
    }
    const st = this.pooler.settings;
    if (s.closeNeeded) {
      s.close('database configuration changed');
      return;
    }
    if (clock.now - s.connectTime >= this.serverLifetimeMs() && this.serverLifetimeMs() >= 0) {
      s.close('server lifetime over');
      return;
    }
    if (st.server_reset_query && (this.mode() === 'session' || st.server_reset_query_always)) {
      this.setServerState(s, ServerState.Tested);
      s.runInternal(st.server_reset_query, (err) => {
        if (err) s.close(`server_reset_query failed: ${err.message}`);
        else this.serverReady(s);
      });
      return;
    }
    this.serverReady(s);
    if (this.pooler.shutdown !== 'none') this.pooler.checkShutdown();
  }

  /** Servers idle past server_check_delay wait in sv_used; check one before use. */
  private checkUsed(): void {
    const s = this.usedServers.pop();
    if (!s) return;
    const q = this.pooler.checkQuery();
    if (q === null) {
      this.serverReady(s);
      return;
    }
    this.setServerState(s, ServerState.Tested);
    s.runInternal(q, (err) => {
      if (err) s.close(`server check query failed: ${err.message}`);
      else this.serverReady(s);
    });
  }

  // ---- launching ----

  private maxServers(): number {
    const size = this.poolSize();
    if (size <= 0) return Infinity;
    return size + (this.reserveActive ? this.reserveSize() : 0);
  }

  /** Can one more server connection be opened for this pool right now? `evict`: may close other pools' idle servers. */
  canLaunch(evict = true): boolean {
    const st = this.pooler.settings;
    if (this.db.dead) return false; // each new server would be closed at once: a reconnect storm
    if (this.pooler.isPaused(this.db)) return false;
    if (this.serverCount() + this.slotRequests >= this.maxServers()) return false;
    if (this.lastConnectFailed && clock.now - this.lastConnectFailed < st.server_login_retry * 1000) return false;
    const dbMax = this.db.entry.max_db_connections ?? st.max_db_connections;
    if (dbMax > 0 && this.db.serverCount >= dbMax && !(evict && this.pooler.evictIdle((p) => p.db === this.db, this)))
      return false;
    const userMax = this.user.entry?.max_user_connections ?? st.max_user_connections;
    if (userMax > 0 && this.user.serverCount >= userMax && !(evict && this.pooler.evictIdle((p) => p.user === this.user, this)))
      return false;
    return true;
  }

  /** Open server connections for clients that wait, one login per waiting client at most. */
  launchIfNeeded(): void {
    if (this.pooler.isPaused(this.db)) return;
    const want = this.waitingClients.count + (this.welcome ? 0 : Math.min(1, this.loginWaitClients.count));
    while (this.loginServers.count + this.usedServers.count + this.testedServers.count + this.slotRequests < want) {
      if (!this.canLaunch()) break;
      if (this.serverCount() >= this.poolSize() && this.poolSize() > 0 && !this.pooler.cluster)
        log.warning('taking connection from reserve_pool', this.waitingClients.head ?? this.logSubject());
      this.open(true);
    }
  }

  /**
   * Open one server connection. With workers > 1 the primary grants a global slot first (pool size, reserve,
   * max_db/user_connections over all workers): `wait` queues the request until a slot is free (for waiting clients),
   * otherwise a full pool refuses it (min_pool_size). Only connection opening waits for the primary, never a query.
   */
  private open(wait: boolean): void {
    const link = this.pooler.cluster;
    if (!link) {
      this.launch();
      return;
    }
    this.slotRequests++;
    this.withdrawn = false;
    const st = this.pooler.settings;
    const size = this.poolSize();
    link.askServer(
      {
        pool: this.key,
        db: this.db.name,
        user: this.user.name,
        poolSize: Math.max(0, size),
        poolMax: size > 0 ? size + (this.reserveActive ? this.reserveSize() : 0) : 0,
        dbMax: this.db.entry.max_db_connections ?? st.max_db_connections,
        userMax: this.user.entry?.max_user_connections ?? st.max_user_connections,
      },
      wait,
      (ok, reserve) => {
        this.slotRequests--;
        if (!ok) return;
        if (!this.stillWants(wait)) {
          link.serverReleased(this.key, this.db.name, this.user.name, false);
          return;
        }
        // the pool is full over all workers: only the primary knows (single process: launchIfNeeded says it)
        if (reserve) log.warning('taking connection from reserve_pool', this.waitingClients.head ?? this.logSubject());
        this.launch(true);
      },
    );
  }

  /** A slot granted by the primary: is a server still wanted (clients may have left or been served meanwhile)? */
  private stillWants(forWaiters: boolean): boolean {
    if (this.db.dead || this.pooler.isPaused(this.db) || this.pooler.shutdown !== 'none') return false;
    if (this.serverCount() >= this.maxServers()) return false;
    if (!forWaiters) return this.serverCount() < this.minPoolSize();
    const want = this.waitingClients.count + (this.welcome ? 0 : Math.min(1, this.loginWaitClients.count));
    return this.loginServers.count + this.usedServers.count + this.testedServers.count + this.slotRequests < want;
  }

  /**
   * A client has waited reserve_pool_timeout: servers beyond pool_size are allowed. With workers > 1 the requests
   * queued at the primary were made with the pool size alone: they are withdrawn, and asked again (next janitor tick)
   * with the reserve counted.
   */
  openReserve(): void {
    this.reserveActive = true;
    if (this.slotRequests > 0 && this.pooler.cluster) {
      this.withdrawn = false;
      this.withdrawSlots();
    }
  }

  /** workers > 1, no client waits any more: the primary may drop this pool's queued slot requests. */
  withdrawSlots(): void {
    if (this.withdrawn || this.slotRequests === 0) return;
    this.withdrawn = true;
    this.pooler.cluster?.withdraw(this.key);
  }

  /** Keep min_pool_size connections open (for pools that have clients, or a forced user). */
  fillMinPool(): void {
    const min = this.minPoolSize();
    if (min <= 0 || this.pooler.isPaused(this.db)) return;
    if (this.clientCount() === 0 && !this.db.forcedUser) return;
    // never evict for a top-up (as PgBouncer): two pools would take servers from each other forever
    while (this.serverCount() + this.slotRequests < min && this.canLaunch(false)) this.open(false);
  }

  /** A server connection for the pooler's own use (service-conn.ts): counted here, never idle. */
  launchFor(owner: ServiceConn): ServerConn {
    const s = new ServerConn(this.pooler, this);
    s.owner = owner;
    const link = this.pooler.cluster;
    if (link) {
      // the pooler's own connection is counted, not asked for: auth_query and LISTEN cannot wait for a slot
      link.serverTaken(this.key, this.db.name, this.user.name);
      s.slot = true;
    }
    this.setServerState(s, ServerState.Login);
    this.db.serverCount++;
    this.user.serverCount++;
    s.connect();
    return s;
  }

  /** `slot`: the primary granted a global slot for it (workers > 1), given back when the connection closes. */
  launch(slot = false): ServerConn {
    const s = new ServerConn(this.pooler, this);
    s.slot = slot;
    this.setServerState(s, ServerState.Login);
    this.db.serverCount++;
    this.user.serverCount++;
    s.connect();
    return s;
  }

  /** Called by a server that failed to connect or log in. */
  connectFailed(err: PoolerError): void {
    this.lastConnectFailed = clock.now;
    this.lastError = err;
    this.failWaitersIfDown();
  }

  /**
   * With no server connected or connecting, and the last attempt failed within server_login_retry,
   * waiting clients would wait in vain: give them the error now (PgBouncer 1.24+ behaviour).
   */
  failWaitersIfDown(): void {
    if (!this.lastError || this.serverCount() > 0) return;
    if (clock.now - this.lastConnectFailed >= this.pooler.settings.server_login_retry * 1000) return;
    const last = this.lastError;
    const err = new PoolerError(
      last.sqlstate,
      `server login has been failing, cached error: ${last.message} (server_login_retry)`,
    );
    for (const c of this.loginWaitClients.toArray()) c.fail(err);
    for (const c of this.waitingClients.toArray()) c.fail(err);
  }

  /** A server of this pool went away (any state). */
  serverGone(s: ServerConn): void {
    s.list?.remove(s as never);
    this.db.serverCount--;
    this.user.serverCount--;
    if (s.slot) this.releaseSlot(s);
    this.pooler.checkWaiters();
    if (this.pooler.shutdown !== 'none') {
      this.pooler.checkShutdown();
      return;
    }
    // someone may be waiting for a replacement
    if (this.waitingClients.count > 0 || this.loginWaitClients.count > 0) this.launchIfNeeded();
  }

  /** workers > 1: give the server's global slot back to the primary, once its socket is fully closed. */
  private releaseSlot(s: ServerConn): void {
    const link = this.pooler.cluster;
    if (!link) return;
    s.slot = false;
    const release = () => link.serverReleased(this.key, this.db.name, this.user.name, s.surrendered);
    const sock = s.socket;
    if (sock && !sock.destroyed) sock.once('close', release);
    else release();
  }

  /** Close one idle server (for another pool's max_db/user_connections). */
  closeOneIdle(): boolean {
    const s = this.idleServers.head ?? this.usedServers.head;
    if (!s) return false;
    s.close('evicted');
    return true;
  }

  logSubject(): { logPrefix(): string; pooler: object } {
    return { logPrefix: () => `${this.db.name}/${this.user.name}:`, pooler: this.pooler };
  }

  static tooMany(): PoolerError {
    return new PoolerError(SqlState.TooManyConnections, 'no more connections allowed (max_client_conn)');
  }
}

/* The library's Pooler (`import { Pooler } from 'pgtide'`): a typed options object or a pgbouncer.ini, listen(),
 * reload(), close({ graceful }), stats() and typed events, over the engine in ../pooler.ts that the CLI runs too. */

import { EventEmitter } from 'node:events';
import { resolve } from 'node:path';
import { ConfigError, parseConfigText, type Config } from '../config/loader.js';
import { issue } from '../config/ini.js';
import { checkLibraryConfig, configFromOptions, type PoolerOptions } from '../config/options.js';
import type { SettingName, Settings } from '../config/params.js';
import { checkPgtideConfig, loadPgtideConfig, Pooler as Engine, type ExitRequest, type ReloadOutcome } from '../pooler.js';
import { log, type LogLine } from '../util/log.js';
import { showTable } from '../admin/show.js';
import type { Cell } from '../admin/rows.js';
import type { Table } from '../cluster/messages.js';
import type { DatabaseStatsRow, PoolerStats, PoolRow, TotalsRow } from './stats.js';
import { internal, type Init } from './internal.js';

/** A log line's level, as PgBouncer writes it. */
export type LogLevel = 'FATAL' | 'ERROR' | 'WARNING' | 'LOG' | 'DEBUG' | 'NOISE';

/** One log line, as the 'log' event gives it. */
export interface LogRecord {
  level: LogLevel;
  /** The message after the level, with the connection prefix when it is about one (`C-0x…: app/app@127.0.0.1:5555 …`). */
  message: string;
  /** The whole line as pgtide writes it to stderr or logfile (time, pid, level, message), without the newline. */
  line: string;
}

/** A problem the pooler logged at ERROR or FATAL level and went on after: what the 'error' event gives. */
export class PoolerProblem extends Error {
  readonly level: 'ERROR' | 'FATAL';
  /** The whole log line. */
  readonly line: string;

  /** Made by the pooler from a log line. */
  constructor(record: LogRecord) {
    super(record.message);
    this.name = 'PoolerProblem';
    this.level = record.level === 'FATAL' ? 'FATAL' : 'ERROR';
    this.line = record.line;
  }
}

/** Where the pooler listens, once listen() has resolved. */
export interface ListeningInfo {
  /** The TCP port (the one chosen by the system when listen_port is 0), or listen_port with a unix socket only. */
  port: number;
  /** Each listener: `host:port` (IPv6 hosts in brackets) or `unix:<path of the socket>`. */
  addresses: string[];
  /** The metrics endpoint's listeners (`host:port`, serving GET /metrics); empty when metrics_port is 0. */
  metrics: string[];
}

/** What a reload did: setting names as in the settings table. */
export interface ReloadResult {
  /** Settings whose value changed, now in force. */
  changed: SettingName[];
  /** Settings given a new value that needs a restart (listen_port, listen_addr, unix_socket_dir…): they kept their old one. */
  restartNeeded: SettingName[];
  /** Settings that kept their old value because the new one could not be used (TLS key or certificate, auth_hba_file). */
  kept: SettingName[];
}

/** How close() stops the pooler. */
export interface CloseOptions {
  /**
   * false (the default): close every connection now, as SHUTDOWN or SIGTERM do; a transaction in progress is cut and
   * rolled back by PostgreSQL. true: stop accepting connections and let the connected clients finish first (see
   * `waitFor`), then close.
   */
  graceful?: boolean;
  /**
   * With `graceful`: 'clients' (the default) waits until every client has disconnected, as SHUTDOWN WAIT_FOR_CLIENTS;
   * 'servers' waits until every server connection is released, as SIGINT and SHUTDOWN WAIT_FOR_SERVERS: a client is
   * disconnected as soon as its transaction ends (transaction and statement pooling) or when it leaves (session pooling).
   */
  waitFor?: 'clients' | 'servers';
  /** With `graceful`: milliseconds after which whatever is still connected is closed as with graceful: false. */
  timeout?: number;
}

/** The events of a Pooler and their arguments. */
export type PoolerEvents = {
  /** listen() succeeded. */
  listening: [info: ListeningInfo];
  /** A new configuration is in force: from reload(), or from the admin console's RELOAD. */
  reload: [result: ReloadResult];
  /** Every connection and listener is closed (by close(), or by the admin console's SHUTDOWN). */
  close: [];
  /**
   * A problem the pooler logged at ERROR level or worse and went on after (a listener error, a failed RELOAD from the
   * console, an internal error on one connection). Only emitted while there is a listener: an 'error' nobody listens
   * to does not throw, unlike a plain EventEmitter's. A problem that stops the pooler rejects listen() instead.
   */
  error: [problem: PoolerProblem];
  /** Every log line about this pooler (and the few lines about no pooler in particular). */
  log: [record: LogRecord];
};

function optionsInit(options: PoolerOptions): Init {
  const config = checkConfig(configFromOptions(options));
  return { config, options, source: null, stderr: options.logToStderr === true, cli: null };
}

function checkConfig(cfg: Config): Config {
  checkPgtideConfig(cfg);
  checkLibraryConfig(cfg);
  return cfg;
}

/**
 * A PgBouncer-compatible connection pooler running in this process: clients connect to it as to PostgreSQL, it serves
 * them from pools of server connections, and its admin console answers on the `pgbouncer` database.
 *
 * ```ts
 * const pooler = new Pooler({
 *   databases: { app: { host: '127.0.0.1', port: 5432, dbname: 'app' } },
 *   settings: { listen_addr: '127.0.0.1', listen_port: 0, unix_socket_dir: '', pool_mode: 'transaction', auth_type: 'scram-sha-256' },
 *   auth: { users: [{ name: 'app', password: 'secret' }] },
 * });
 * await pooler.listen();
 * const url = pooler.url('app', 'secret', 'app');
 * // …
 * await pooler.close();
 * ```
 *
 * One process: the `workers` setting is for the pgtide command only. The pooler writes nothing to stderr unless
 * `logToStderr` is set; its log lines come as 'log' events.
 */
export class Pooler extends EventEmitter<PoolerEvents> {
  readonly #engine: Engine;
  #options: PoolerOptions | null;
  readonly #stderr: boolean;
  readonly #cli: boolean;
  #state: 'new' | 'listening' | 'closing' | 'closed' = 'new';
  #unsink: (() => void) | null = null;
  /** Lines logged while the engine was being made (before anyone could listen): given to 'log' listeners at listen(). */
  #early: LogLine[] = [];
  #warnings: string[];
  #draining = false;
  #stopping = false;
  #timer: NodeJS.Timeout | null = null;
  #onDrained = () => this.#closeNow();
  #closed: Promise<void> | null = null;
  #resolveClosed: (() => void) | null = null;

  /**
   * Make a pooler from an options object. Nothing listens yet: call listen(). Throws ConfigError (each message names
   * the setting or entry at fault) for an unknown setting, a value of the wrong type or out of range, or a
   * combination pgtide refuses.
   */
  constructor(options: PoolerOptions) {
    super();
    const init = internal.pending ?? optionsInit(options);
    internal.pending = null;
    this.#options = init.options;
    this.#stderr = init.stderr;
    this.#cli = init.cli !== null;
    this.#warnings = init.config.warnings.map((w) => w.message);
    // the engine's constructor may log (auth_hba_file warnings): keep those lines for listen()
    const stopEarly = log.addSink((l) => this.#early.push(l));
    try {
      if (!this.#cli) this.#applyLog(init.config);
      try {
        this.#engine = new Engine(init.config, init.cli?.link ?? null);
      } catch (err) {
        // unusable TLS files or auth_hba_file: a configuration problem like the others for the library
        if (this.#cli || err instanceof ConfigError) throw err;
        throw new ConfigError([issue(init.config.file, 0, (err as Error).message)]);
      }
      if (!this.#cli) for (const w of this.#warnings) log.warning(w, this.#engine.own);
    } finally {
      stopEarly();
    }
    const source = init.source;
    if (source) this.#engine.source = source;
    else if (this.#options) this.#engine.source = () => checkConfig(configFromOptions(this.#options!));
    internal.engines.set(this, this.#engine);
    this.#engine.on('reload', (outcome: ReloadOutcome) => {
      if (!this.#cli) this.#applyLog(this.#engine.config);
      this.emit('reload', outcome as ReloadResult);
    });
    if (!this.#cli) this.#engine.on('exit-request', (how: ExitRequest) => this.#shutdownCommand(how));
  }

  /**
   * Make a pooler from a pgbouncer.ini file (its auth_file and %include files as the CLI reads them). reload() with no
   * argument, SIGHUP-like, reads the file again. Throws ConfigError with file:line in each message.
   */
  static fromIniFile(path: string, opts: { logToStderr?: boolean } = {}): Pooler {
    const file = resolve(path);
    const load = () => checkConfig(loadPgtideConfig(file));
    return make({ config: load(), options: null, source: load, stderr: opts.logToStderr === true, cli: null });
  }

  /**
   * Make a pooler from pgbouncer.ini text. `file` names it in messages (default `pgbouncer.ini`); relative auth_file
   * and %include paths start at `cwd` (default: the working directory). reload() with no argument parses the same
   * text again (and so reads auth_file again). Throws ConfigError.
   */
  static fromIniText(text: string, opts: { file?: string; cwd?: string; logToStderr?: boolean } = {}): Pooler {
    const cwd = opts.cwd ?? process.cwd();
    const file = resolve(cwd, opts.file ?? 'pgbouncer.ini');
    const parse = () => checkConfig(parseConfigText(text, file, { cwd }));
    return make({ config: parse(), options: null, source: parse, stderr: opts.logToStderr === true, cli: null });
  }

  /** The TCP port it listens on: once listening with listen_port 0, the port the system chose. */
  get port(): number {
    return this.#engine.port;
  }

  /** The [pgbouncer] settings in force (a copy), defaults included. */
  get settings(): Readonly<Settings> {
    return { ...this.#engine.settings };
  }

  /** What the configuration had to say when it was built (unknown ini keys, settings accepted but not implemented…). */
  get warnings(): readonly string[] {
    return this.#warnings;
  }

  /** Whether it is listening (after listen() resolved, before close() is called). */
  get listening(): boolean {
    return this.#state === 'listening';
  }

  /**
   * Open the listeners (listen_addr and listen_port, and the unix socket in unix_socket_dir) and start serving.
   * Resolves once every listener is bound; rejects (and closes what was opened) when one cannot be, e.g. a port in
   * use. Call it once.
   */
  async listen(): Promise<ListeningInfo> {
    if (this.#state !== 'new') throw new Error(`listen(): the pooler is ${this.#state === 'listening' ? 'already listening' : 'closed'}`);
    this.#state = 'listening';
    if (!this.#cli) {
      this.#unsink = log.addSink((l) => this.#onLog(l));
      for (const l of this.#early.splice(0)) this.#onLog(l);
    }
    try {
      await this.#engine.listen();
    } catch (err) {
      this.#state = 'closed';
      await this.#engine.close();
      this.#unsink?.();
      this.#unsink = null;
      throw err;
    }
    const info: ListeningInfo = { port: this.port, addresses: this.#engine.boundAddresses(), metrics: this.#engine.metricsAddresses() };
    this.emit('listening', info);
    return info;
  }

  /**
   * A connection URL for a client of this pooler, e.g. `postgresql://app:secret@127.0.0.1:6432/app?sslmode=disable`:
   * the first listen_addr (`*` and `0.0.0.0` as 127.0.0.1, `::` as ::1), or the unix socket when there is no TCP
   * listener; `sslmode=disable` when client TLS is off. `database` defaults to the user name, as in libpq.
   */
  url(user: string, password?: string, database?: string): string {
    const st = this.#engine.settings;
    const port = this.port;
    if (port === 0) throw new Error('url(): listen() first (listen_port is 0, so the port is not known yet)');
    const auth = encodeURIComponent(user) + (password ? `:${encodeURIComponent(password)}` : '');
    const db = encodeURIComponent(database ?? user);
    const query: string[] = [];
    if (st.client_tls_sslmode === 'disable') query.push('sslmode=disable');
    const first = st.listen_addr[0];
    let host: string;
    if (first === undefined) {
      if (!st.unix_socket_dir) throw new Error('url(): the pooler has neither a TCP listener nor a unix socket');
      query.unshift(`host=${encodeURIComponent(st.unix_socket_dir)}`, `port=${port}`);
      return `postgresql://${auth}@/${db}?${query.join('&')}`;
    }
    if (first === '*' || first === '0.0.0.0') host = '127.0.0.1';
    else if (first === '::') host = '[::1]';
    else host = first.includes(':') ? `[${first}]` : first;
    return `postgresql://${auth}@${host}:${port}/${db}${query.length > 0 ? `?${query.join('&')}` : ''}`;
  }

  /**
   * Apply a new configuration, as RELOAD does: pools, databases, users and most settings change at once (a bigger
   * default_pool_size serves waiting clients now; a changed database closes its server connections when they are
   * released). Settings that need a restart keep their old value and are listed in the result (and logged, as RELOAD
   * logs them). With no argument: the same options again (auth.file and other files are read again), or the ini file
   * or text again. Rejects with ConfigError, keeping the old configuration, when the new one is invalid.
   */
  async reload(options?: PoolerOptions): Promise<ReloadResult> {
    if (this.#state === 'closing' || this.#state === 'closed') throw new Error('reload(): the pooler is closed');
    let next: Config;
    if (options !== undefined) {
      next = checkConfig(configFromOptions(options));
      this.#options = options;
      this.#engine.source = () => checkConfig(configFromOptions(this.#options!));
    } else next = this.#engine.source();
    this.#warnings = next.warnings.map((w) => w.message);
    for (const w of this.#warnings) log.warning(w, this.#engine.own);
    return this.#engine.reload(next) as ReloadResult;
  }

  /** A snapshot of SHOW POOLS, SHOW STATS and SHOW TOTALS, as typed objects with the console's column names. */
  stats(): PoolerStats {
    return statsOf(this.#engine);
  }

  /**
   * The Prometheus metrics in the text format (content type `text/plain; version=0.0.4; charset=utf-8`), what the
   * metrics_port endpoint serves, for an application that exposes them on its own HTTP server. Works with or without
   * metrics_port; the process metrics (cpu, memory) are only included with the endpoint.
   */
  async metrics(): Promise<string> {
    return (await this.#engine.metrics()).render();
  }

  /**
   * Stop: by default close every connection now; with `{ graceful: true }` stop accepting and wait for the clients
   * (or the servers, see `waitFor`) first, up to `timeout` ms. Resolves once every listener, connection and timer of
   * the pooler is gone (the process can then exit by itself) and 'close' was emitted. A close({ graceful: false })
   * during a graceful one closes everything at once; calling it again after that does nothing more.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#state === 'closed' && !this.#stopping) return Promise.resolve(); // listen() failed: nothing is open
    if (!this.#closed) this.#closed = new Promise((r) => (this.#resolveClosed = r));
    const graceful = options.graceful === true && this.#state === 'listening';
    if (!graceful) this.#closeNow();
    else if (!this.#draining && !this.#stopping) {
      this.#draining = true;
      this.#state = 'closing';
      const timeout = options.timeout;
      if (timeout !== undefined && timeout >= 0) {
        this.#timer = setTimeout(() => {
          this.#timer = null;
          log.log(`close: still connected after ${timeout} ms, closing every connection`, this.#engine.own);
          this.#closeNow();
        }, timeout);
      }
      this.#engine.once('drained', this.#onDrained);
      if (options.waitFor === 'servers') this.#engine.safeShutdown('close(): not accepting new connections, waiting for servers to be released');
      else this.#engine.waitForClientsShutdown('close(): not accepting new connections, waiting for every client to disconnect');
    }
    return this.#closed;
  }

  /** `await using pooler = new Pooler(…)` closes it (at once) at the end of the block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #closeNow(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#state = 'closing';
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#engine.removeListener('drained', this.#onDrained);
    // one I/O poll of the event loop first (the second immediate runs after it): what clients have already sent is
    // read, so a client of this process that is ending (pg.Pool#end() resolves before its sockets are closed) leaves
    // normally instead of getting a FATAL 'pooler is shutting down' that it would report as an unhandled 'error'
    void nextPoll().then(() => this.#engine.close()).then(() => {
      this.#state = 'closed';
      this.#unsink?.();
      this.#unsink = null;
      this.#early = [];
      this.emit('close');
      this.#resolveClosed?.();
    });
  }

  /** The console's SHUTDOWN (library only: the CLI exits the process its own way). */
  #shutdownCommand(how: ExitRequest): void {
    if (how === 'immediate') void this.close();
    else void this.close({ graceful: true, waitFor: how === 'wait-for-servers' ? 'servers' : 'clients' });
  }

  #onLog(l: LogLine): void {
    if (l.owner !== undefined && l.owner !== this.#engine) return;
    if (this.#stderr) process.stderr.write(`${l.line}\n`);
    const record: LogRecord = { level: l.level, message: l.text, line: l.line };
    this.emit('log', record);
    if ((l.level === 'ERROR' || l.level === 'FATAL') && this.listenerCount('error') > 0) this.emit('error', new PoolerProblem(record));
  }

  /** logfile and verbose, when the configuration sets them, go to the process's logger (one for all poolers). */
  #applyLog(cfg: Config): void {
    const file = cfg.explicit.has('logfile');
    const verbose = cfg.explicit.has('verbose');
    if (!file && !verbose) return;
    const cur = log.options();
    log.configure({
      stderr: cur.stderr,
      logfile: file ? cfg.settings.logfile : cur.logfile,
      verbose: verbose ? cfg.settings.verbose : cur.verbose,
    });
    if (file) log.reopen();
  }
}

/** Resolves after the event loop's next I/O poll phase (an immediate queued from an immediate runs after it). */
function nextPoll(): Promise<void> {
  return new Promise((r) => setImmediate(() => setImmediate(r)));
}

function make(init: Init): Pooler {
  internal.pending = init;
  try {
    return new Pooler(undefined as unknown as PoolerOptions);
  } finally {
    internal.pending = null;
  }
}

function cellValue(c: Cell): string | number | null {
  return typeof c === 'bigint' ? Number(c) : c;
}

function objects<R>(t: Table): R[] {
  return t.rows.map((r) => {
    const o: Record<string, string | number | null> = {};
    t.columns.forEach(([name], i) => (o[name] = cellValue(r[i] ?? null)));
    return o as R;
  });
}

/** The snapshot of `pooler.stats()`, from the console's own SHOW code. */
function statsOf(p: Engine): PoolerStats {
  const table = (what: string) => {
    const t = showTable(p, p.console, what);
    if (!t) throw new Error(`SHOW ${what} is missing`);
    return t;
  };
  const totals: Record<string, number> = {};
  for (const r of table('totals').rows) totals[r[0] as string] = Number(r[1]);
  return {
    pools: objects<PoolRow>(table('pools')),
    databases: objects<DatabaseStatsRow>(table('stats')),
    totals: totals as TotalsRow,
  };
}

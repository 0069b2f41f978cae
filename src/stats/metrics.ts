/* Prometheus metrics (metrics_port): the admin console's SHOW tables, read at scrape time and exposed under the metric
 * names of prometheus-community/pgbouncer_exporter, plus pgtide's own counters (session state, prepared statements).
 * Nothing here runs on the hot path: a scrape reads the same rows as SHOW POOLS etc. (with workers > 1, every worker's
 * rows merged, as the console does), so the figures are the console's figures. */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Table } from '../cluster/messages.js';
import type { Cell } from '../admin/rows.js';
import { REASONS } from '../pool/session-state.js';
import { log, type LogSubject } from '../util/log.js';

/** Where a scrape gets its rows: `SHOW what` as the console answers it (null for an unknown name). */
export type TableSource = (what: string) => Promise<Table | null>;

/** The pooler-wide values that are settings, not rows. */
export interface MetricsContext {
  version: string;
  maxClientConn: number;
  maxUserConnections: number;
}

type Kind = 'gauge' | 'counter';

/** One numeric column of a SHOW table as one metric: its name, help, kind, and the factor to its unit. */
interface ColumnMetric {
  readonly column: string;
  readonly name: string;
  readonly kind: Kind;
  readonly help: string;
  /** 1e6 for microseconds to seconds. */
  readonly divisor?: number;
}

/** A SHOW table whose rows each give one sample per ColumnMetric, labelled by some of its text columns. */
interface TableMetrics {
  readonly what: string;
  /** Label name → column it comes from. */
  readonly labels: Readonly<Record<string, string>>;
  readonly metrics: readonly ColumnMetric[];
}

const US = 1e6;

/** The exporter's maps (its names, units and help), then pgtide's own tables. */
const TABLES: readonly TableMetrics[] = [
  {
    what: 'pools',
    labels: { database: 'database', user: 'user' },
    metrics: [
      { column: 'cl_active', name: 'pgbouncer_pools_client_active_connections', kind: 'gauge', help: 'Client connections linked to a server connection or idle and able to run a query' },
      { column: 'cl_waiting', name: 'pgbouncer_pools_client_waiting_connections', kind: 'gauge', help: 'Client connections that sent a query and wait for a server connection' },
      { column: 'cl_active_cancel_req', name: 'pgbouncer_pools_client_active_cancel_connections', kind: 'gauge', help: 'Client connections whose cancel request was forwarded to the server' },
      { column: 'cl_waiting_cancel_req', name: 'pgbouncer_pools_client_waiting_cancel_connections', kind: 'gauge', help: 'Client connections whose cancel request was not forwarded yet' },
      { column: 'sv_active', name: 'pgbouncer_pools_server_active_connections', kind: 'gauge', help: 'Server connections linked to a client' },
      { column: 'sv_active_cancel', name: 'pgbouncer_pools_server_active_cancel_connections', kind: 'gauge', help: 'Server connections forwarding a cancel request' },
      { column: 'sv_being_canceled', name: 'pgbouncer_pools_server_being_canceled_connections', kind: 'gauge', help: 'Server connections with a cancel request in flight' },
      { column: 'sv_idle', name: 'pgbouncer_pools_server_idle_connections', kind: 'gauge', help: 'Server connections idle and ready for a client' },
      { column: 'sv_used', name: 'pgbouncer_pools_server_used_connections', kind: 'gauge', help: 'Server connections idle for longer than server_check_delay' },
      { column: 'sv_tested', name: 'pgbouncer_pools_server_testing_connections', kind: 'gauge', help: 'Server connections running server_reset_query or server_check_query' },
      { column: 'sv_login', name: 'pgbouncer_pools_server_login_connections', kind: 'gauge', help: 'Server connections logging in' },
    ],
  },
  {
    what: 'stats_totals',
    labels: { database: 'database' },
    metrics: [
      { column: 'query_count', name: 'pgbouncer_stats_queries_pooled_total', kind: 'counter', help: 'Queries pooled' },
      { column: 'query_time', name: 'pgbouncer_stats_queries_duration_seconds_total', kind: 'counter', help: 'Seconds spent connected to PostgreSQL running queries', divisor: US },
      { column: 'bytes_received', name: 'pgbouncer_stats_received_bytes_total', kind: 'counter', help: 'Bytes received from clients' },
      { column: 'bytes_sent', name: 'pgbouncer_stats_sent_bytes_total', kind: 'counter', help: 'Bytes sent to clients' },
      { column: 'wait_time', name: 'pgbouncer_stats_client_wait_seconds_total', kind: 'counter', help: 'Seconds clients waited for a server connection', divisor: US },
      { column: 'xact_count', name: 'pgbouncer_stats_sql_transactions_pooled_total', kind: 'counter', help: 'Transactions pooled' },
      { column: 'xact_time', name: 'pgbouncer_stats_server_in_transaction_seconds_total', kind: 'counter', help: 'Seconds spent connected to PostgreSQL in a transaction, running queries or idle in it', divisor: US },
      { column: 'client_parse_count', name: 'pgbouncer_stats_client_parses_total', kind: 'counter', help: 'Parse messages of named prepared statements received from clients' },
      { column: 'server_parse_count', name: 'pgbouncer_stats_server_parses_total', kind: 'counter', help: 'Parse messages of prepared statements sent to PostgreSQL' },
      { column: 'bind_count', name: 'pgbouncer_stats_binds_total', kind: 'counter', help: 'Bind messages of named prepared statements' },
      { column: 'client_login_count', name: 'pgtide_client_logins_total', kind: 'counter', help: 'Client logins' },
    ],
  },
  {
    what: 'databases',
    labels: { name: 'name', host: 'host', port: 'port', database: 'database', force_user: 'force_user', pool_mode: 'pool_mode' },
    metrics: [
      { column: 'pool_size', name: 'pgbouncer_databases_pool_size', kind: 'gauge', help: 'Largest number of server connections per pool' },
      { column: 'reserve_pool_size', name: 'pgbouncer_databases_reserve_pool', kind: 'gauge', help: 'Additional server connections a pool may open (reserve_pool_size)' },
      { column: 'max_connections', name: 'pgbouncer_databases_max_connections', kind: 'gauge', help: 'Largest number of server connections of the database (0 = no limit)' },
      { column: 'current_connections', name: 'pgbouncer_databases_current_connections', kind: 'gauge', help: 'Server connections of the database' },
      { column: 'paused', name: 'pgbouncer_databases_paused', kind: 'gauge', help: '1 if the database is paused, else 0' },
      { column: 'disabled', name: 'pgbouncer_databases_disabled', kind: 'gauge', help: '1 if the database is disabled, else 0' },
    ],
  },
  {
    what: 'session_state',
    labels: { database: 'database', user: 'user' },
    metrics: [
      { column: 'checks', name: 'pgtide_session_state_checks_total', kind: 'counter', help: 'Session-state checks run at the end of a transaction' },
      { column: 'pins', name: 'pgtide_session_state_pins_total', kind: 'counter', help: 'Clients pinned to their server connection by session state (session_state_policy = pin)' },
      { column: 'refusals', name: 'pgtide_session_state_refusals_total', kind: 'counter', help: 'Statements refused because they would leave session state (session_state_policy = refuse)' },
      { column: 'pinned_now', name: 'pgtide_session_state_pinned_clients', kind: 'gauge', help: 'Clients pinned to their server connection now' },
      { column: 'statement_retries', name: 'pgtide_prepared_statement_retries_total', kind: 'counter', help: 'Batches retried after a shared prepared statement failed (stale plan, statement gone)' },
      { column: 'unnamed_reprepares', name: 'pgtide_unnamed_statement_reprepares_total', kind: 'counter', help: 'Unnamed statements prepared again on a server that held another one' },
      { column: 'pipeline_waits', name: 'pgtide_pipeline_waits_total', kind: 'counter', help: 'Statement messages of pipelining clients that waited for an earlier batch' },
      { column: 'sequence_resets', name: 'pgtide_session_state_sequence_resets_total', kind: 'counter', help: 'Server connections made to forget their sequence values before a client\'s currval() or lastval()' },
    ],
  },
];

/** SHOW LISTS rows (list, items) under the exporter's names. */
const LISTS: Readonly<Record<string, [name: string, help: string]>> = {
  databases: ['pgbouncer_databases', 'Count of databases'],
  users: ['pgbouncer_users', 'Count of users'],
  pools: ['pgbouncer_pools', 'Count of pools'],
  free_clients: ['pgbouncer_free_clients', 'Count of free clients'],
  used_clients: ['pgbouncer_used_clients', 'Count of used clients'],
  login_clients: ['pgbouncer_login_clients', 'Count of clients in login state'],
  free_servers: ['pgbouncer_free_servers', 'Count of free servers'],
  used_servers: ['pgbouncer_used_servers', 'Count of used servers'],
  dns_names: ['pgbouncer_cached_dns_names', 'Count of DNS names in the cache'],
  dns_zones: ['pgbouncer_cached_dns_zones', 'Count of DNS zones in the cache'],
  dns_queries: ['pgbouncer_in_flight_dns_queries', 'Count of in-flight DNS queries'],
};

type Metric = Gauge<string> | Counter<string>;

function make(registry: Registry, kind: Kind, name: string, help: string, labelNames: readonly string[]): Metric {
  const cfg = { name, help, labelNames, registers: [registry] };
  return kind === 'gauge' ? new Gauge(cfg) : new Counter(cfg);
}

function put(m: Metric, labels: Record<string, string>, value: number): void {
  if (m instanceof Gauge) m.set(labels, value);
  else m.inc(labels, value);
}

function num(v: Cell | undefined): number | null {
  if (v === null || v === undefined) return null;
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : null;
}

/** Column name → index. */
function indexOf(t: Table): Map<string, number> {
  return new Map(t.columns.map((c, i) => [c[0], i]));
}

/** A registry whose values are set from the SHOW tables at each render(). */
export class Metrics {
  readonly registry = new Registry();
  /** Every metric render() sets (reset first, so that a pool that is gone leaves no series behind). */
  private readonly own: Metric[] = [];
  private readonly byTable: { spec: TableMetrics; metrics: Metric[] }[] = [];
  private readonly lists = new Map<string, Metric>();
  private readonly maxwait: Metric;
  private readonly pinReasons: Metric;
  private readonly refusalReasons: Metric;
  private readonly up: Metric;
  private readonly versionInfo: Metric;
  private readonly maxClient: Metric;
  private readonly maxUser: Metric;
  /** Renders run one at a time: values are reset and set between awaits. */
  private chain: Promise<unknown> = Promise.resolve();

  /** `processMetrics`: also prom-client's process and Node.js metrics of this process (cpu, memory, event loop). */
  constructor(
    private readonly source: TableSource,
    private readonly context: () => MetricsContext,
    processMetrics: boolean,
  ) {
    const add = (kind: Kind, name: string, help: string, labels: readonly string[] = []) => {
      const m = make(this.registry, kind, name, help, labels);
      this.own.push(m);
      return m;
    };
    this.up = add('gauge', 'pgbouncer_up', 'The pooler answered the scrape');
    this.versionInfo = add('gauge', 'pgbouncer_version_info', 'The pooler version (SHOW VERSION)', ['version']);
    this.maxClient = add('gauge', 'pgbouncer_config_max_client_connections', 'max_client_conn');
    this.maxUser = add('gauge', 'pgbouncer_config_max_user_connections', 'max_user_connections');
    for (const spec of TABLES) {
      const labels = Object.keys(spec.labels);
      this.byTable.push({ spec, metrics: spec.metrics.map((c) => add(c.kind, c.name, c.help, labels)) });
    }
    // SHOW POOLS' maxwait and maxwait_us as one value
    this.maxwait = add('gauge', 'pgbouncer_pools_client_maxwait_seconds', 'How long the oldest waiting client has waited', ['database', 'user']);
    for (const [list, [name, help]] of Object.entries(LISTS)) this.lists.set(list, add('gauge', name, help));
    const reasonLabels = ['database', 'user', 'reason'];
    this.pinReasons = add('counter', 'pgtide_session_state_pin_reasons_total',
      'Clients pinned to their server connection, by what the session held (a pin counts for each category it had)', reasonLabels);
    this.refusalReasons = add('counter', 'pgtide_session_state_refusal_reasons_total', 'Statements refused, by what they would have left', reasonLabels);
    if (processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text exposition of every metric, read now. */
  render(): Promise<string> {
    const next = this.chain.then(() => this.renderNow());
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async renderNow(): Promise<string> {
    const whats = ['lists', 'session_state_reasons', ...TABLES.map((t) => t.what)];
    const tables = new Map<string, Table | null>();
    for (const [i, t] of (await Promise.all(whats.map((w) => this.source(w)))).entries()) tables.set(whats[i]!, t);
    for (const m of this.own) m.reset();
    const ctx = this.context();
    put(this.up, {}, 1);
    put(this.versionInfo, { version: ctx.version }, 1);
    put(this.maxClient, {}, ctx.maxClientConn);
    put(this.maxUser, {}, ctx.maxUserConnections);
    for (const { spec, metrics } of this.byTable) {
      const t = tables.get(spec.what);
      if (!t) continue;
      const col = indexOf(t);
      const labelCols = Object.entries(spec.labels).map(([label, c]) => [label, col.get(c)] as const);
      const valueCols = spec.metrics.map((m) => col.get(m.column));
      for (const row of t.rows) {
        const labels: Record<string, string> = {};
        for (const [label, i] of labelCols) labels[label] = i === undefined ? '' : String(row[i] ?? '');
        for (let k = 0; k < metrics.length; k++) {
          const i = valueCols[k];
          const v = i === undefined ? null : num(row[i]);
          if (v !== null) put(metrics[k]!, labels, v / (spec.metrics[k]!.divisor ?? 1));
        }
        if (spec.what === 'pools') {
          const s = num(row[col.get('maxwait')!]) ?? 0;
          const us = num(row[col.get('maxwait_us')!]) ?? 0;
          put(this.maxwait, labels, s + us / US);
        }
        if (spec.what === 'session_state') {
          // every category, 0 until it happens, so that rate() sees the first one
          for (const reason of REASONS) {
            put(this.pinReasons, { ...labels, reason }, 0);
            put(this.refusalReasons, { ...labels, reason }, 0);
          }
        }
      }
    }
    const reasons = tables.get('session_state_reasons');
    if (reasons) {
      const col = indexOf(reasons);
      for (const row of reasons.rows) {
        const labels = { database: String(row[col.get('database')!]), user: String(row[col.get('user')!]), reason: String(row[col.get('reason')!]) };
        const m = row[col.get('action')!] === 'pin' ? this.pinReasons : this.refusalReasons;
        put(m, labels, num(row[col.get('count')!]) ?? 0);
      }
    }
    const lists = tables.get('lists');
    if (lists) {
      for (const row of lists.rows) {
        const m = this.lists.get(String(row[0]));
        const v = num(row[1]);
        if (m && v !== null) put(m, {}, v);
      }
    }
    return this.registry.metrics();
  }
}

/** The HTTP endpoint: GET or HEAD /metrics; anything else is 404 or 405. */
export class MetricsServer {
  private readonly servers: Server[] = [];

  constructor(
    private readonly metrics: Metrics,
    private readonly subject: LogSubject,
  ) {}

  /** Listen on each host at port; rejects (and closes what opened) when one cannot be bound. */
  async listen(hosts: readonly string[], port: number): Promise<void> {
    const results = await Promise.allSettled(hosts.map((h) => this.listenOne(h, port)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await this.close();
      throw failed.reason;
    }
  }

  private listenOne(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      // a scraper sends one small request: a slow or stuck one is dropped (the timeouts are checked every second),
      // and few connections are kept
      const srv = createServer({ connectionsCheckingInterval: 1000 }, (req, res) => this.onRequest(req, res));
      srv.headersTimeout = 10_000;
      srv.requestTimeout = 10_000;
      srv.maxConnections = 64;
      srv.once('error', (err: NodeJS.ErrnoException) => {
        log.error(`cannot listen for metrics on ${host}:${port}: ${err.message}`, this.subject);
        reject(err);
      });
      srv.listen({ host, port }, () => {
        srv.removeAllListeners('error');
        srv.on('error', (err) => log.error(`metrics listener error: ${err.message}`, this.subject));
        log.log(`metrics on http://${host.includes(':') ? `[${host}]` : host}:${(srv.address() as AddressInfo).port}/metrics`, this.subject);
        this.servers.push(srv);
        resolve();
      });
    });
  }

  /** `host:port` of each listener (IPv6 hosts in brackets). */
  addresses(): string[] {
    const out: string[] = [];
    for (const s of this.servers) {
      const a = s.address();
      if (a && typeof a === 'object') out.push(a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
    }
    return out;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain; charset=utf-8', allow: 'GET, HEAD' }).end('only GET and HEAD\n');
      return;
    }
    this.metrics.render().then(
      (text) => {
        res.writeHead(200, { 'content-type': this.metrics.contentType });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: Error) => {
        log.error(`metrics scrape failed: ${err.message}`, this.subject);
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics scrape failed, see the log\n');
      },
    );
  }

  async close(): Promise<void> {
    const servers = this.servers.splice(0);
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((r) => {
            s.close(() => r());
            s.closeAllConnections();
          }),
      ),
    );
  }
}

/* The read-only SHOW commands of the admin console, with PgBouncer master's columns (names, order, types). */

import { performance } from 'node:perf_hooks';
import { noticeResponse } from '../protocol/messages.js';
import { PARAMS, formatSettingValue, type SettingName, type SettingValue } from '../config/params.js';
import { PoolStats, sumStats } from '../stats/stats.js';
import { ClientState } from '../pool/states.js';
import type { ClientConn } from '../pool/client.js';
import type { ServerConn } from '../pool/server.js';
import type { Database, Pool } from '../pool/pool.js';
import type { Pooler } from '../pooler.js';
import { VERSION_LINE } from '../version.js';
import { commandComplete, formatTime, Oid, ResultWriter, splitUs, type Cell, type Column } from './rows.js';
import type { AdminConsole } from './console.js';
import type { Table } from '../cluster/messages.js';
import { workerIndex } from '../cluster/identity.js';
import { newSpace } from '../util/heap.js';
import { REASONS } from '../pool/session-state.js';

const T = Oid.Text;
const I = Oid.Int4;
const N = Oid.Numeric;
const B = Oid.Int8;

// ---- column lists (PgBouncer master order) ----

export const POOLS_COLUMNS = [
  ['database', T], ['user', T], ['cl_active', I], ['cl_waiting', I], ['cl_active_cancel_req', I],
  ['cl_waiting_cancel_req', I], ['sv_active', I], ['sv_active_cancel', I], ['sv_being_canceled', I], ['sv_idle', I],
  ['sv_used', I], ['sv_tested', I], ['sv_login', I], ['maxwait', I], ['maxwait_us', I], ['pool_mode', T],
  ['load_balance_hosts', T],
] as const satisfies readonly Column[];

export const CLIENTS_COLUMNS: readonly Column[] = [
  ['type', T], ['user', T], ['database', T], ['replication', T], ['state', T], ['addr', T], ['port', I],
  ['local_addr', T], ['local_port', I], ['connect_time', T], ['request_time', T], ['wait', I], ['wait_us', I],
  ['close_needed', I], ['ptr', T], ['link', T], ['remote_pid', I], ['tls', T], ['application_name', T],
  ['prepared_statements', I], ['id', B],
];

/** SHOW CLIENTS adds pgtide's `pinned`: why the client is kept on its server (session_state_policy = pin), or ''. */
export const SHOW_CLIENTS_COLUMNS: readonly Column[] = [...CLIENTS_COLUMNS, ['pinned', T]];

export const SOCKETS_COLUMNS: readonly Column[] = [
  ...CLIENTS_COLUMNS,
  ['recv_pos', I], ['pkt_pos', I], ['pkt_remain', I], ['send_pos', I], ['send_remain', I], ['pkt_avail', I],
  ['send_avail', I],
];

export const STAT_NAMES = [
  'server_assignment_count', 'xact_count', 'query_count', 'received', 'sent', 'xact_time', 'query_time', 'wait_time',
  'client_parse_count', 'server_parse_count', 'bind_count', 'client_login_count',
] as const;

export const STATS_COLUMNS: readonly Column[] = [
  ['database', T],
  ...STAT_NAMES.map((n): Column => [`total_${n}`, N]),
  ...STAT_NAMES.map((n): Column => [n === 'received' ? 'avg_recv' : `avg_${n}`, N]),
];

export const STATS_TOTALS_COLUMNS: readonly Column[] = [
  ['database', T], ['server_assignment_count', N], ['xact_count', N], ['query_count', N], ['bytes_received', N],
  ['bytes_sent', N], ['xact_time', N], ['query_time', N], ['wait_time', N], ['client_parse_count', N],
  ['server_parse_count', N], ['bind_count', N], ['client_login_count', N],
];

export const STATS_AVERAGES_COLUMNS: readonly Column[] = [
  ['database', T], ['server_assignment_count', N], ['xact_count', N], ['query_count', N], ['bytes_received', N],
  ['bytes_sent', N], ['xact_time', N], ['query_time', N], ['wait_time', N], ['avg_client_parse_count', N],
  ['avg_server_parse_count', N], ['avg_bind_count', N], ['avg_client_login_count', N],
];

export const DATABASES_COLUMNS: readonly Column[] = [
  ['name', T], ['host', T], ['port', I], ['database', T], ['force_user', T], ['pool_size', I], ['min_pool_size', I],
  ['reserve_pool_size', I], ['server_lifetime', I], ['pool_mode', T], ['load_balance_hosts', T],
  ['max_connections', I], ['current_connections', I], ['max_client_connections', I],
  ['current_client_connections', I], ['paused', I], ['disabled', I],
];

export const USERS_COLUMNS: readonly Column[] = [
  ['name', T], ['pool_size', I], ['reserve_pool_size', I], ['pool_mode', T], ['max_user_connections', I],
  ['current_connections', I], ['max_user_client_connections', I], ['current_client_connections', I],
];

export const SIMPLE_COLUMNS = {
  version: [['version', T]],
  config: [['key', T], ['value', T], ['default', T], ['changeable', T]],
  lists: [['list', T], ['items', I]],
  totals: [['name', T], ['value', N]],
  mem: [['name', T], ['size', I], ['used', I], ['free', I], ['memtotal', I]],
  fds: [
    ['fd', I], ['task', T], ['user', T], ['database', T], ['addr', T], ['port', I], ['cancel', B], ['link', I],
    ['client_encoding', T], ['std_strings', T], ['datestyle', T], ['timezone', T], ['password', T],
    ['scram_client_key', Oid.Bytea], ['scram_server_key', Oid.Bytea],
  ],
  dns_hosts: [['hostname', T], ['ttl', B], ['addrs', T]],
  dns_zones: [['zonename', T], ['serial', B], ['count', I]],
  state: [['key', T], ['value', T]],
  /** pgtide's own: per pool, what session_state_policy did. */
  session_state: [['database', T], ['user', T], ['checks', B], ['pins', B], ['refusals', B], ['pinned_now', I], ['statement_retries', B], ['unnamed_reprepares', B], ['pipeline_waits', B], ['sequence_resets', B]],
  /** pgtide's own: pins and refusals of session_state_policy by category (only the categories that happened). */
  session_state_reasons: [['database', T], ['user', T], ['action', T], ['reason', T], ['count', B]],
  /** pgtide's own: the protocol-level prepared statements tracked in transaction/statement mode. */
  prepared_statements: [['name', T], ['query', T], ['clients', I], ['servers', I], ['retries', B]],
  peers: [['peer_id', I], ['host', T], ['port', I], ['pool_size', I]],
  /** pgtide's own: the processes serving clients (workers > 1: the primary and each worker). */
  workers: [
    ['worker', I], ['role', T], ['pid', I], ['clients', I], ['servers', I], ['client_slots', I], ['server_slots', I],
    ['restarts', I], ['start_time', T],
  ],
  peer_pools: [
    ['peer_id', T], ['cl_active_cancel_req', I], ['cl_waiting_cancel_req', I], ['sv_active_cancel', I], ['sv_login', I],
  ],
} as const satisfies Record<string, readonly Column[]>;

/** SHOW commands a stats user may not run. */
export const SHOW_ADMIN_ONLY: ReadonlySet<string> = new Set(['fds']);

const HELP = [
  'SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION',
  'SHOW PEERS|PEER_POOLS',
  'SHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE',
  'SHOW DNS_HOSTS|DNS_ZONES',
  'SHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS',
  'SHOW PREPARED_STATEMENTS|SESSION_STATE|SESSION_STATE_REASONS|WORKERS',
  'SET key = arg',
  'RELOAD',
  'PAUSE [<db>]',
  'RESUME [<db>]',
  'DISABLE <db>',
  'ENABLE <db>',
  'RECONNECT [<db>]',
  'KILL <db>',
  'KILL_CLIENT <client_id>',
  'SHUTDOWN',
  'SHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS',
  'WAIT_CLOSE [<db>]',
];

// ---- helpers ----

/** Rows collected for one SHOW, encoded by encodeTable (or sent to another worker and merged, admin/merge.ts). */
class Rows implements Table {
  readonly rows: Cell[][] = [];

  constructor(readonly columns: readonly Column[]) {}

  row(cells: Cell[]): this {
    if (cells.length !== this.columns.length) throw new Error(`admin row has ${cells.length} cells for ${this.columns.length} columns`);
    this.rows.push(cells);
    return this;
  }
}

/** The console's own database and pool rows, as PgBouncer lists them. */
const ADMIN_POOL_SIZE = 2;

/** Pointer-like ids: clients and servers have separate counters, so their ptr values get distinct prefixes. */
export function clientPtr(c: ClientConn): string {
  return `0xc${c.id.toString(16).padStart(8, '0')}`;
}

export function serverPtr(s: ServerConn): string {
  return `0x5${s.id.toString(16).padStart(8, '0')}`;
}

function sortedDatabases(p: Pooler): Database[] {
  return [...p.databases.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function sortedPools(p: Pooler): Pool[] {
  const out: Pool[] = [];
  for (const db of sortedDatabases(p))
    out.push(...[...db.pools.values()].sort((a, b) => (a.user.name < b.user.name ? -1 : a.user.name > b.user.name ? 1 : 0)));
  return out;
}

function clientState(c: ClientConn): string {
  if (c.admin !== null) return 'active';
  switch (c.state) {
    case ClientState.Active:
      return c.server ? 'active' : 'idle'; // PgBouncer 1.25+: a logged-in client without a server is idle
    case ClientState.Waiting:
    case ClientState.WaitingLogin:
      return 'waiting';
    default:
      return c.stateName;
  }
}

function waitUs(c: ClientConn, now: number): number {
  const waiting = c.state === ClientState.Waiting || c.state === ClientState.WaitingLogin;
  return waiting && c.waitStart > 0 ? (now - c.waitStart) * 1000 : 0;
}

function clientRow(c: ClientConn, now: number): Cell[] {
  const [wait, wus] = splitUs(waitUs(c, now));
  return [
    'C',
    c.user?.name ?? '',
    c.admin !== null ? 'pgbouncer' : (c.db?.name ?? ''),
    'no',
    clientState(c),
    c.addr,
    c.port,
    c.localAddr,
    c.localPort,
    formatTime(c.connectTime),
    formatTime(c.lastActivity),
    wait,
    wus,
    0,
    clientPtr(c),
    c.server ? serverPtr(c.server) : '',
    0,
    c.tls === 'no' ? '' : c.tls,
    c.vars.get('application_name') ?? '',
    c.stmts?.size ?? 0,
    c.id,
  ];
}

function serverRow(s: ServerConn): Cell[] {
  const sock = s.socket;
  const unix = !!sock && sock.remoteAddress === undefined;
  return [
    'S',
    s.pool.user.name,
    s.pool.db.name,
    'no',
    s.stateName,
    unix ? 'unix' : (sock?.remoteAddress ?? '').replace(/^::ffff:/, ''),
    sock?.remotePort ?? s.pool.db.entry.port,
    unix ? 'unix' : (sock?.localAddress ?? '').replace(/^::ffff:/, ''),
    sock?.localPort ?? 0,
    formatTime(s.connectTime),
    formatTime(Math.max(s.linkedAt, s.idleSince)),
    0,
    0,
    s.closeNeeded ? 1 : 0,
    serverPtr(s),
    s.client ? clientPtr(s.client) : '',
    s.backendPid,
    s.tls,
    s.params.get('application_name') ?? '',
    s.stmts?.size ?? 0,
    s.id,
  ];
}

function allClients(p: Pooler, con: AdminConsole): ClientConn[] {
  const out: ClientConn[] = [];
  for (const pool of sortedPools(p))
    for (const list of [pool.activeClients, pool.waitingClients, pool.loginWaitClients]) out.push(...list.toArray());
  out.push(...con.clients.toArray());
  return out;
}

function allServers(p: Pooler): ServerConn[] {
  const out: ServerConn[] = [];
  for (const pool of sortedPools(p))
    for (const list of [pool.activeServers, pool.idleServers, pool.usedServers, pool.testedServers, pool.loginServers])
      out.push(...list.toArray());
  return out;
}

function statCells(s: PoolStats): Cell[] {
  return [
    s.serverAssignCount, s.xactCount, s.queryCount, s.bytesReceived, s.bytesSent, s.xactTimeUs, s.queryTimeUs,
    s.waitTimeUs, s.clientParseCount, s.serverParseCount, s.bindCount, s.clientLoginCount,
  ];
}

// ---- the commands ----

function showPools(p: Pooler, con: AdminConsole): Rows {
  const w = new Rows(POOLS_COLUMNS);
  const now = performance.now();
  for (const pool of sortedPools(p)) {
    let oldest = 0;
    for (const c of [pool.waitingClients.head, pool.loginWaitClients.head])
      if (c && c.waitStart > 0) oldest = Math.max(oldest, now - c.waitStart);
    const [maxwait, maxwaitUs] = splitUs(oldest * 1000);
    let beingCanceled = 0;
    for (const s of pool.activeServers.toArray()) if (s.cancelsInFlight > 0) beingCanceled++;
    w.row([
      pool.db.name, pool.user.name, pool.activeClients.count, pool.waitingClients.count + pool.loginWaitClients.count,
      0, 0, pool.activeServers.count, 0, beingCanceled, pool.idleServers.count, pool.usedServers.count,
      pool.testedServers.count, pool.loginServers.count, maxwait, maxwaitUs, pool.mode(),
      pool.db.entry.load_balance_hosts ?? null,
    ]);
  }
  if (con.clients.count > 0)
    w.row(['pgbouncer', 'pgbouncer', con.clients.count, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'statement', null]);
  return w;
}

function showClients(p: Pooler, con: AdminConsole): Rows {
  const w = new Rows(SHOW_CLIENTS_COLUMNS);
  const now = performance.now();
  for (const c of allClients(p, con)) w.row([...clientRow(c, now), c.pinReason ?? '']);
  return w;
}

function showServers(p: Pooler): Rows {
  const w = new Rows(CLIENTS_COLUMNS);
  for (const s of allServers(p)) w.row(serverRow(s));
  return w;
}

function showSockets(p: Pooler, con: AdminConsole, activeOnly: boolean): Rows {
  const w = new Rows(SOCKETS_COLUMNS);
  const now = performance.now();
  const buffers = [0, 0, 0, 0, 0, 0, 0];
  for (const c of allClients(p, con)) {
    const row = clientRow(c, now);
    if (activeOnly && row[4] !== 'active') continue;
    row[4] = `cl_${row[4] as string}`;
    w.row([...row, ...buffers]);
  }
  for (const s of allServers(p)) {
    const row = serverRow(s);
    if (activeOnly && row[4] !== 'active') continue;
    row[4] = `sv_${row[4] as string}`;
    w.row([...row, ...buffers]);
  }
  return w;
}

function showStats(p: Pooler, kind: 'stats' | 'totals' | 'averages'): Rows {
  const cols = kind === 'stats' ? STATS_COLUMNS : kind === 'totals' ? STATS_TOTALS_COLUMNS : STATS_AVERAGES_COLUMNS;
  const w = new Rows(cols);
  const totals = p.janitor.databaseTotals();
  for (const db of sortedDatabases(p)) {
    const t = totals.get(db.name) ?? new PoolStats();
    const a = p.janitor.dbAverages.get(db.name) ?? new PoolStats();
    if (kind === 'stats') w.row([db.name, ...statCells(t), ...statCells(a)]);
    else w.row([db.name, ...statCells(kind === 'totals' ? t : a)]);
  }
  return w;
}

/** SHOW TOTALS' row names after their total_ / avg_ prefix, in statCells order. */
export const TOTALS_NAMES = [
  'server_assignment_count', 'xact_count', 'query_count', 'client_bytes', 'server_bytes', 'xact_time', 'query_time',
  'wait_time', 'ps_client_parse_count', 'ps_server_parse_count', 'ps_bind_count', 'client_login_count',
] as const;

function showTotals(p: Pooler): Rows {
  const w = new Rows(SIMPLE_COLUMNS.totals);
  const t = sumStats(p.janitor.databaseTotals().values());
  for (const [prefix, s] of [['total', t], ['avg', p.janitor.totalAverages]] as const) {
    const cells = statCells(s);
    TOTALS_NAMES.forEach((n, i) => w.row([`${prefix}_${n}`, cells[i]!]));
  }
  return w;
}

function showDatabases(p: Pooler): Rows {
  const w = new Rows(DATABASES_COLUMNS);
  const st = p.settings;
  const rows: [string, Cell[]][] = [];
  for (const db of p.databases.values()) {
    const e = db.entry;
    rows.push([
      db.name,
      [
        db.name, e.host ?? null, e.port, db.dbname, e.user ?? null, e.pool_size ?? st.default_pool_size,
        e.min_pool_size ?? st.min_pool_size, e.reserve_pool_size ?? st.reserve_pool_size,
        e.server_lifetime ?? st.server_lifetime, e.pool_mode ?? null, e.load_balance_hosts ?? null,
        e.max_db_connections ?? st.max_db_connections, db.serverCount,
        e.max_db_client_connections ?? st.max_db_client_connections, db.clientCount, p.isPaused(db) ? 1 : 0,
        db.disabled ? 1 : 0,
      ],
    ]);
  }
  rows.push([
    'pgbouncer',
    ['pgbouncer', null, st.listen_port, 'pgbouncer', 'pgbouncer', ADMIN_POOL_SIZE, 0, 0, 0, 'statement', null, 0, 0, 0,
      0, 0, 0],
  ]);
  rows.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [, r] of rows) w.row(r);
  return w;
}

function showUsers(p: Pooler): Rows {
  const w = new Rows(USERS_COLUMNS);
  const st = p.settings;
  const users = [...p.users.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const u of users) {
    const e = u.entry;
    w.row([
      u.name, e?.pool_size ?? null, e?.reserve_pool_size ?? null, e?.pool_mode ?? null,
      e?.max_user_connections ?? st.max_user_connections, u.serverCount,
      e?.max_user_client_connections ?? st.max_user_client_connections, u.clientCount,
    ]);
  }
  return w;
}

function showConfig(p: Pooler): Rows {
  const w = new Rows(SIMPLE_COLUMNS.config);
  const values = p.settings as unknown as Record<string, SettingValue>;
  for (const param of PARAMS) {
    const value = values[param.name];
    w.row([
      param.name,
      value === undefined ? '' : formatSettingValue(param.name as SettingName, value),
      'unsetDefault' in param && param.unsetDefault ? null : param.default,
      param.reloadable ? 'yes' : 'no',
    ]);
  }
  return w;
}

function showLists(p: Pooler, con: AdminConsole): Rows {
  const w = new Rows(SIMPLE_COLUMNS.lists);
  let pools = 0;
  let servers = 0;
  for (const pool of p.pools()) {
    pools++;
    servers += pool.serverCount();
  }
  const adminPool = con.clients.count > 0 ? 1 : 0;
  const rows: [string, number][] = [
    ['databases', p.databases.size + 1],
    ['users', p.users.size],
    ['peers', 0],
    ['pools', pools + adminPool],
    ['peer_pools', 0],
    ['free_clients', 0],
    ['used_clients', p.clientCount],
    ['login_clients', p.loginClients.count],
    ['free_servers', 0],
    ['used_servers', servers],
    ['dns_names', 0],
    ['dns_zones', 0],
    ['dns_queries', 0],
    ['dns_pending', 0],
  ];
  for (const r of rows) w.row(r);
  return w;
}

function showMem(p: Pooler): Rows {
  const w = new Rows(SIMPLE_COLUMNS.mem);
  let pools = 0;
  let servers = 0;
  for (const pool of p.pools()) {
    pools++;
    servers += pool.serverCount();
  }
  // pgtide has no slab caches: `used` counts the live objects, sizes are 0; node_heap is V8's heap in bytes
  w.row(['user_cache', 0, p.users.size, 0, 0]);
  w.row(['db_cache', 0, p.databases.size, 0, 0]);
  w.row(['peer_cache', 0, 0, 0, 0]);
  w.row(['pool_cache', 0, pools, 0, 0]);
  w.row(['server_cache', 0, servers, 0, 0]);
  w.row(['client_cache', 0, p.clientCount, 0, 0]);
  w.row(['iobuf_cache', 0, 0, 0, 0]);
  const m = process.memoryUsage();
  w.row(['node_heap', 1, m.heapUsed, Math.max(0, m.heapTotal - m.heapUsed), m.heapTotal]);
  const young = newSpace();
  w.row(['node_new_space', 1, young.used, young.available, young.size]);
  return w;
}

/** When this process started (SHOW WORKERS). */
export const PROCESS_START = Date.now() - Math.round(process.uptime() * 1000);

/**
 * This process's row of SHOW WORKERS. A worker leaves the slot counts and restarts to the primary (admin/merge.ts);
 * a single process (workers = 1) is worker 0.
 */
function showWorkers(p: Pooler): Rows {
  let servers = 0;
  for (const pool of p.pools()) servers += pool.serverCount();
  const w = new Rows(SIMPLE_COLUMNS.workers);
  const index = workerIndex();
  const single = index === 0;
  w.row([index, single ? 'single' : 'worker', process.pid, p.clientCount, servers, single ? p.clientCount : null, single ? servers : null, 0, formatTime(PROCESS_START)]);
  return w;
}

function showState(p: Pooler): Rows {
  const w = new Rows(SIMPLE_COLUMNS.state);
  // as PgBouncer: the pooler-wide pause mode (PAUSE without a database, SIGUSR1); a paused database shows in DATABASES
  w.row(['active', p.pausedAll ? 'no' : 'yes']);
  w.row(['paused', p.pausedAll ? 'yes' : 'no']);
  w.row(['suspended', 'no']);
  return w;
}

/** The rows of `SHOW <what>` (what in lower case), or null for an unknown name (and for HELP, which has none). */
export function showTable(p: Pooler, con: AdminConsole, what: string): Table | null {
  switch (what) {
    case 'version':
      return new Rows(SIMPLE_COLUMNS.version).row([VERSION_LINE]);
    case 'config':
      return showConfig(p);
    case 'databases':
      return showDatabases(p);
    case 'users':
      return showUsers(p);
    case 'pools':
      return showPools(p, con);
    case 'clients':
      return showClients(p, con);
    case 'servers':
      return showServers(p);
    case 'sockets':
      return showSockets(p, con, false);
    case 'active_sockets':
      return showSockets(p, con, true);
    case 'lists':
      return showLists(p, con);
    case 'stats':
      return showStats(p, 'stats');
    case 'stats_totals':
      return showStats(p, 'totals');
    case 'stats_averages':
      return showStats(p, 'averages');
    case 'totals':
      return showTotals(p);
    case 'mem':
      return showMem(p);
    case 'state':
      return showState(p);
    case 'workers':
      return showWorkers(p);
    case 'session_state': {
      const w = new Rows(SIMPLE_COLUMNS.session_state);
      for (const pool of sortedPools(p)) {
        let pinned = 0;
        for (const c of pool.activeClients.toArray()) if (c.pinReason !== null) pinned++;
        const st = pool.stats;
        w.row([pool.db.name, pool.user.name, st.stateChecks, st.statePins, st.stateRefusals, pinned, st.stmtRetries, st.unnamedReprepares, st.pipelineWaits, st.sequenceResets]);
      }
      return w;
    }
    case 'session_state_reasons': {
      const w = new Rows(SIMPLE_COLUMNS.session_state_reasons);
      for (const pool of sortedPools(p)) {
        const st = pool.stats;
        for (const [action, counts] of [['pin', st.pinReasons], ['refuse', st.refusalReasons]] as const)
          for (let r = 0; r < REASONS.length; r++) if (counts[r]! > 0) w.row([pool.db.name, pool.user.name, action, REASONS[r]!, counts[r]!]);
      }
      return w;
    }
    case 'prepared_statements': {
      const w = new Rows(SIMPLE_COLUMNS.prepared_statements);
      const all = [...p.stmts.all()].sort((a, b) => a.id - b.id);
      for (const st of all) w.row([st.name, st.query, st.clientRefs, st.serverRefs, st.retries]);
      return w;
    }
    case 'fds':
      return new Rows(SIMPLE_COLUMNS.fds);
    case 'dns_hosts':
      return new Rows(SIMPLE_COLUMNS.dns_hosts);
    case 'dns_zones':
      return new Rows(SIMPLE_COLUMNS.dns_zones);
    case 'peers':
      return new Rows(SIMPLE_COLUMNS.peers);
    case 'peer_pools':
      return new Rows(SIMPLE_COLUMNS.peer_pools);
    default:
      return null;
  }
}

/** RowDescription, the DataRows and CommandComplete of a table. */
export function encodeTable(t: Table): Buffer {
  const w = new ResultWriter(t.columns);
  for (const r of t.rows) w.row(r);
  return w.finish();
}

/** SHOW HELP: a NOTICE with the command list. */
export function showHelp(): Buffer {
  return Buffer.concat([
    noticeResponse({ severity: 'NOTICE', code: '00000', message: 'Console usage', detail: HELP.map((l) => `\t${l}`).join('\n') }),
    commandComplete('SHOW'),
  ]);
}

/**
 * Run `SHOW <what>` (what in lower case) in this process. Returns the messages up to CommandComplete (no
 * ReadyForQuery), or null for an unknown name.
 */
export function runShow(p: Pooler, con: AdminConsole, _c: ClientConn | null, what: string): Buffer | null {
  if (what === 'help') return showHelp();
  const t = showTable(p, con, what);
  return t ? encodeTable(t) : null;
}

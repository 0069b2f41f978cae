/* The types of pooler.stats() for the library: the rows of SHOW POOLS, SHOW STATS and SHOW TOTALS as objects with the
 * console's column names (api/pooler.ts fills them from admin/show.ts's rows, not computed again). */

import type { POOLS_COLUMNS, STAT_NAMES, TOTALS_NAMES } from '../admin/show.js';

/**
 * One row of SHOW POOLS: a (database, user) pool. Counts of clients (`cl_*`) and server connections (`sv_*`) in each
 * state, the longest current wait, and the pool mode. While someone is connected to the admin console, a row with
 * database and user `pgbouncer` stands for it, as in PgBouncer.
 */
export interface PoolRow {
  database: string;
  user: string;
  /** Clients linked to a server connection, or idle and able to run a query. */
  cl_active: number;
  /** Clients that sent a query and wait for a server connection. */
  cl_waiting: number;
  /** Always 0 (cancel requests are forwarded at once). */
  cl_active_cancel_req: number;
  /** Always 0. */
  cl_waiting_cancel_req: number;
  /** Server connections linked to a client. */
  sv_active: number;
  /** Always 0. */
  sv_active_cancel: number;
  /** Server connections with a cancel request in flight. */
  sv_being_canceled: number;
  /** Server connections ready for a client. */
  sv_idle: number;
  /** Server connections idle for longer than server_check_delay (server_check_query runs before reuse). */
  sv_used: number;
  /** Server connections running server_reset_query or server_check_query. */
  sv_tested: number;
  /** Server connections logging in. */
  sv_login: number;
  /** How long the oldest waiting client has waited: whole seconds … */
  maxwait: number;
  /** … and the microseconds on top of them. */
  maxwait_us: number;
  pool_mode: string;
  /** null unless the database entry sets it. */
  load_balance_hosts: string | null;
}

/** SHOW STATS' counters, each as total_<name> and avg_<name> (avg_recv for received). */
type StatName =
  | 'server_assignment_count'
  | 'xact_count'
  | 'query_count'
  | 'received'
  | 'sent'
  | 'xact_time'
  | 'query_time'
  | 'wait_time'
  | 'client_parse_count'
  | 'server_parse_count'
  | 'bind_count'
  | 'client_login_count';
type AvgName<N extends string> = N extends 'received' ? 'avg_recv' : `avg_${N}`;

/**
 * One row of SHOW STATS: a database. `total_*` count since the pooler started (bytes, times in microseconds);
 * `avg_*` are the averages over the last `stats_period` (per second for counts and bytes; per transaction, query or
 * server assignment for the times), 0 until the first period has passed.
 */
export type DatabaseStatsRow = { database: string } & { [N in StatName as `total_${N}`]: number } & {
  [N in StatName as AvgName<N>]: number;
};

/** SHOW TOTALS' rows, each as total_<name> and avg_<name>. */
type TotalName =
  | 'server_assignment_count'
  | 'xact_count'
  | 'query_count'
  | 'client_bytes'
  | 'server_bytes'
  | 'xact_time'
  | 'query_time'
  | 'wait_time'
  | 'ps_client_parse_count'
  | 'ps_server_parse_count'
  | 'ps_bind_count'
  | 'client_login_count';

/** SHOW TOTALS as one object: `total_*` over every database since start, `avg_*` over the last stats_period. */
export type TotalsRow = { [N in TotalName as `total_${N}`]: number } & { [N in TotalName as `avg_${N}`]: number };

/** What `pooler.stats()` returns: a snapshot, taken when it is called. */
export interface PoolerStats {
  /** SHOW POOLS, sorted by database and user. */
  pools: PoolRow[];
  /** SHOW STATS, one row per database, sorted by name. */
  databases: DatabaseStatsRow[];
  /** SHOW TOTALS. */
  totals: TotalsRow;
}

// The row types must name exactly the console's columns: one added to admin/show.ts without its field here fails to
// compile (these checks are not part of the published declarations).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Checks = [
  Same<keyof PoolRow, (typeof POOLS_COLUMNS)[number][0]>,
  Same<StatName, (typeof STAT_NAMES)[number]>,
  Same<TotalName, (typeof TOTALS_NAMES)[number]>,
];
const checks: Checks = [true, true, true];
void checks;

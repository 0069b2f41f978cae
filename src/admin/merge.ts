/* SHOW with workers > 1: the console of one worker gathers every worker's rows (through the primary) and merges them
 * into one answer with PgBouncer's columns: connection lists are concatenated, per-pool and per-database figures are
 * summed, averages are weighted by their counts. VERSION, CONFIG, STATE and HELP are answered by the worker itself
 * (every worker has the same configuration and pause state). */

import type { Part, Table, WorkerInfo } from '../cluster/messages.js';
import { formatTime, Oid, type Cell, type Column } from './rows.js';

/** SHOWs whose rows are collected from every worker. */
export const GATHERED: ReadonlySet<string> = new Set([
  'clients', 'servers', 'sockets', 'active_sockets', 'prepared_statements', 'fds', 'dns_hosts', 'dns_zones', 'peers',
  'peer_pools', 'pools', 'stats', 'stats_totals', 'stats_averages', 'totals', 'lists', 'mem', 'databases', 'users',
  'session_state', 'session_state_reasons', 'workers',
]);

/** SHOWs whose rows are simply put one after the other (worker 1 first). */
const CONCAT: ReadonlySet<string> = new Set([
  'clients', 'servers', 'sockets', 'active_sockets', 'prepared_statements', 'fds', 'dns_hosts', 'dns_zones', 'peers',
  'peer_pools',
]);

/**
 * How a column is combined across rows with the same key: summed, the largest, the first worker's value, or an
 * average weighted by another column of the same row (`{ wavg: 'avg_xact_count' }`).
 */
type Rule = 'sum' | 'max' | 'first' | { wavg: string };

interface SumSpec {
  key: readonly string[];
  /** Rule for columns not named in `rules`: numeric columns are summed by default, text columns take the first. */
  numeric?: Rule;
  rules?: Readonly<Record<string, Rule>>;
  /** A per-row exception (LISTS: counts of shared configuration are not summed). */
  rowRule?: (key: string, column: string) => Rule | undefined;
}

const STATS_AVG_TIMES: Record<string, Rule> = {
  avg_xact_time: { wavg: 'avg_xact_count' },
  avg_query_time: { wavg: 'avg_query_count' },
  avg_wait_time: { wavg: 'avg_server_assignment_count' },
};

/** LISTS rows that count configuration every worker has (databases, users…): the largest, not the sum. */
const LISTS_SHARED = new Set(['databases', 'users', 'peers', 'pools', 'peer_pools', 'dns_names', 'dns_zones']);

const SUMMED: Readonly<Record<string, SumSpec>> = {
  pools: { key: ['database', 'user'], rules: { maxwait: 'max', maxwait_us: 'max' } },
  stats: { key: ['database'], rules: STATS_AVG_TIMES },
  stats_totals: { key: ['database'] },
  stats_averages: {
    key: ['database'],
    rules: { xact_time: { wavg: 'xact_count' }, query_time: { wavg: 'query_count' }, wait_time: { wavg: 'server_assignment_count' } },
  },
  lists: { key: ['list'], rowRule: (key) => (LISTS_SHARED.has(key) ? 'max' : undefined) },
  mem: { key: ['name'] },
  databases: { key: ['name'], numeric: 'first', rules: { current_connections: 'sum', current_client_connections: 'sum', paused: 'max', disabled: 'max' } },
  users: { key: ['name'], numeric: 'first', rules: { current_connections: 'sum', current_client_connections: 'sum' } },
  session_state: { key: ['database', 'user'] },
  session_state_reasons: { key: ['database', 'user', 'action', 'reason'] },
};

function isNumeric(c: Column): boolean {
  return c[1] === Oid.Int4 || c[1] === Oid.Int8 || c[1] === Oid.Numeric;
}

function num(v: Cell): number {
  return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : typeof v === 'string' ? Number(v) : 0;
}

/** Sum rows with the same key over all tables, column by column (order: first appearance). */
function sumByKey(tables: readonly Table[], spec: SumSpec): Table {
  const columns = tables[0]!.columns;
  const names = columns.map((c) => c[0]);
  const keyIdx = spec.key.map((k) => names.indexOf(k));
  const groups = new Map<string, Cell[][]>();
  for (const t of tables) {
    for (const row of t.rows) {
      const k = keyIdx.map((i) => String(row[i])).join('\0');
      const g = groups.get(k);
      if (g) g.push(row);
      else groups.set(k, [row]);
    }
  }
  const rows: Cell[][] = [];
  for (const [k, group] of groups) {
    const out: Cell[] = [...group[0]!];
    columns.forEach((col, i) => {
      if (keyIdx.includes(i)) return;
      const rule = spec.rowRule?.(k, col[0]) ?? spec.rules?.[col[0]] ?? (isNumeric(col) ? (spec.numeric ?? 'sum') : 'first');
      const cells = group.map((r) => r[i]!);
      if (rule === 'first') return;
      if (cells.every((c) => c === null)) return;
      if (rule === 'sum') out[i] = cells.reduce<number>((a, c) => a + num(c), 0);
      else if (rule === 'max') out[i] = Math.max(...cells.map(num));
      else {
        const w = names.indexOf(rule.wavg);
        let weight = 0;
        let total = 0;
        for (const r of group) {
          weight += num(r[w]!);
          total += num(r[i]!) * num(r[w]!);
        }
        out[i] = weight > 0 ? Math.floor(total / weight) : 0;
      }
    });
    rows.push(out);
  }
  return { columns, rows };
}

/** SHOW POOLS: maxwait and maxwait_us come from the same worker (the one whose client waited longest). */
function fixMaxwait(tables: readonly Table[], merged: Table): void {
  const names = merged.columns.map((c) => c[0]);
  const [db, user, s, us] = ['database', 'user', 'maxwait', 'maxwait_us'].map((n) => names.indexOf(n)) as [number, number, number, number];
  const longest = new Map<string, [number, number]>();
  for (const t of tables) {
    for (const r of t.rows) {
      const k = `${String(r[db])}\0${String(r[user])}`;
      const v: [number, number] = [num(r[s]!), num(r[us]!)];
      const best = longest.get(k);
      if (!best || v[0] * 1e6 + v[1] > best[0] * 1e6 + best[1]) longest.set(k, v);
    }
  }
  for (const r of merged.rows) {
    const v = longest.get(`${String(r[db])}\0${String(r[user])}`);
    if (v) [r[s], r[us]] = v;
  }
}

/** SHOW TOTALS (name, value rows): sums, with the average times weighted by the matching average counts. */
function mergeTotals(tables: readonly Table[]): Table {
  const weightOf: Record<string, string> = {
    avg_xact_time: 'avg_xact_count',
    avg_query_time: 'avg_query_count',
    avg_wait_time: 'avg_server_assignment_count',
  };
  const order: string[] = [];
  const sums = new Map<string, number>();
  const weighted = new Map<string, { total: number; weight: number }>();
  for (const t of tables) {
    const byName = new Map(t.rows.map((r) => [String(r[0]), num(r[1]!)]));
    for (const [name, v] of byName) {
      if (!sums.has(name) && !weighted.has(name)) order.push(name);
      const wName = weightOf[name];
      if (wName) {
        const w = byName.get(wName) ?? 0;
        const acc = weighted.get(name) ?? { total: 0, weight: 0 };
        acc.total += v * w;
        acc.weight += w;
        weighted.set(name, acc);
      } else sums.set(name, (sums.get(name) ?? 0) + v);
    }
  }
  const rows = order.map((name): Cell[] => {
    const w = weighted.get(name);
    return [name, w ? (w.weight > 0 ? Math.floor(w.total / w.weight) : 0) : sums.get(name)!];
  });
  return { columns: tables[0]!.columns, rows };
}

/**
 * SHOW WORKERS: the primary first (worker 0: the clients of all workers, the slots it has handed out), then each
 * worker with its own counts and the slots the primary counts for it.
 */
function mergeWorkers(columns: readonly Column[], parts: readonly Part[], workers: readonly WorkerInfo[]): Table {
  const rows: Cell[][] = [];
  const answered = new Map<number, Cell[]>();
  for (const p of parts) if (p.table?.rows[0]) answered.set(p.index, p.table.rows[0]);
  let clients = 0;
  for (const r of answered.values()) clients += num(r[3]!);
  for (const w of [...workers].sort((a, b) => a.index - b.index)) {
    if (w.index === 0) {
      rows.push([0, 'primary', w.pid, clients, null, w.clientSlots, w.serverSlots, w.restarts, formatTime(w.startedAt)]);
      continue;
    }
    const r = answered.get(w.index);
    if (r) rows.push([r[0]!, r[1]!, r[2]!, r[3]!, r[4]!, w.clientSlots, w.serverSlots, w.restarts, r[8]!]);
    else rows.push([w.index, 'starting', w.pid, null, null, w.clientSlots, w.serverSlots, w.restarts, formatTime(w.startedAt)]);
  }
  return { columns, rows };
}

/** One table from every worker's answer to `SHOW what` (null when no worker answered). */
export function mergeTables(what: string, parts: readonly Part[], workers: readonly WorkerInfo[]): Table | null {
  const tables = parts.map((p) => p.table).filter((t): t is Table => t !== null);
  if (tables.length === 0) return null;
  const columns = tables[0]!.columns;
  if (what === 'workers') return mergeWorkers(columns, parts, workers);
  if (CONCAT.has(what)) return { columns, rows: tables.flatMap((t) => t.rows) };
  if (what === 'totals') return mergeTotals(tables);
  const spec = SUMMED[what];
  if (!spec) return tables[0]!;
  const merged = sumByKey(tables, spec);
  if (what === 'pools') fixMaxwait(tables, merged);
  return merged;
}

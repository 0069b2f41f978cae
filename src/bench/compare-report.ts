/* The report of `pgtide bench --compare`: medians per workload, client count and target over the rounds, the ratios
 * pgtide/PgBouncer and pgtide/direct, and the Markdown around them. */

import type { BenchProtocol } from '../cli/bench-args.js';
import { fmt } from './report.js';

export type CompareTarget = 'direct' | 'pgbouncer' | 'pgtide';

export const TARGET_NAMES: Record<CompareTarget, string> = { direct: 'direct', pgbouncer: 'PgBouncer', pgtide: 'pgtide' };

/** One pgbench run: one target, protocol and client count in one round. */
export interface CompareRun {
  /** 1-based. */
  round: number;
  target: CompareTarget;
  /** The workload's protocol. */
  protocol: BenchProtocol;
  /** The pgbench -M used: the protocol, except extended for prepared through a PgBouncer older than 1.21. */
  mode: BenchProtocol;
  clients: number;
  seconds: number;
  /** Completed with no aborted client, no failed transaction and exit code 0. */
  ok: boolean;
  problem?: string;
  /** Transactions per second, without the time to connect the clients. */
  tps?: number;
  /** Transactions in pgbench's log. */
  transactions?: number;
  latencyAvgMs?: number;
  p99Ms?: number;
  /** The CPU window: seconds, and the transactions completed in it. */
  cpuWindowS?: number;
  cpuTransactions?: number;
  /** Whether the window is the whole run (too short for a window inside it). */
  cpuWholeRun?: boolean;
  /** utime+stime per transaction, µs: the pooler process; PostgreSQL (postmaster + backends). */
  poolerCpuUs?: number;
  postgresCpuUs?: number;
  /** Share of all CPUs busy during the window, %. */
  hostBusyPct?: number;
}

/** The medians of one target at one workload and client count. */
export interface CompareMedian {
  protocol: BenchProtocol;
  clients: number;
  target: CompareTarget;
  mode: BenchProtocol;
  runs: number;
  /** Runs that did not complete without errors. */
  errors: number;
  tps?: number;
  latencyAvgMs?: number;
  p99Ms?: number;
  poolerCpuUs?: number;
  postgresCpuUs?: number;
  hostBusyPct?: number;
}

export interface CompareRatio {
  protocol: BenchProtocol;
  clients: number;
  /** PgBouncer ran -M extended for prepared. */
  pgbouncerMode?: BenchProtocol;
  tpsVsPgbouncer?: number;
  p99VsPgbouncer?: number;
  poolerCpuVsPgbouncer?: number;
  tpsVsDirect?: number;
  /** (pgtide + PostgreSQL) CPU per transaction through pgtide ÷ PostgreSQL's per transaction direct. */
  serverCpuVsDirect?: number;
}

/** The median of the defined values (the mean of the middle two for an even count); undefined if none. */
export function median(values: (number | undefined)[]): number | undefined {
  const v = values.filter((x): x is number => x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1]! + v[mid]!) / 2;
}

/** Medians over the rounds, in the order protocol, client count, target (direct, PgBouncer, pgtide). */
export function medians(runs: CompareRun[], protocols: BenchProtocol[], levels: number[]): CompareMedian[] {
  const out: CompareMedian[] = [];
  for (const protocol of protocols) {
    for (const clients of levels) {
      for (const target of ['direct', 'pgbouncer', 'pgtide'] as const) {
        const rs = runs.filter((r) => r.protocol === protocol && r.clients === clients && r.target === target);
        if (rs.length === 0) continue;
        const m = (f: (r: CompareRun) => number | undefined) => median(rs.map(f));
        out.push({
          protocol, clients, target, mode: rs[0]!.mode, runs: rs.length, errors: rs.filter((r) => !r.ok).length,
          tps: m((r) => r.tps), latencyAvgMs: m((r) => r.latencyAvgMs), p99Ms: m((r) => r.p99Ms),
          poolerCpuUs: m((r) => r.poolerCpuUs), postgresCpuUs: m((r) => r.postgresCpuUs), hostBusyPct: m((r) => r.hostBusyPct),
        });
      }
    }
  }
  return out;
}

const div = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !(b > 0) ? undefined : a / b);

/** The ratios of the medians, per workload and client count. */
export function ratios(meds: CompareMedian[]): CompareRatio[] {
  const out: CompareRatio[] = [];
  const keys = [...new Set(meds.map((m) => `${m.protocol} ${m.clients}`))];
  for (const key of keys) {
    const at = meds.filter((m) => `${m.protocol} ${m.clients}` === key);
    const get = (t: CompareTarget) => at.find((m) => m.target === t);
    const d = get('direct');
    const b = get('pgbouncer');
    const p = get('pgtide');
    const r: CompareRatio = { protocol: at[0]!.protocol, clients: at[0]!.clients };
    if (b && b.mode !== b.protocol) r.pgbouncerMode = b.mode;
    if (p && b) {
      r.tpsVsPgbouncer = div(p.tps, b.tps);
      r.p99VsPgbouncer = div(p.p99Ms, b.p99Ms);
      r.poolerCpuVsPgbouncer = div(p.poolerCpuUs, b.poolerCpuUs);
    }
    if (p && d) {
      r.tpsVsDirect = div(p.tps, d.tps);
      const through = p.poolerCpuUs !== undefined && p.postgresCpuUs !== undefined ? p.poolerCpuUs + p.postgresCpuUs : undefined;
      r.serverCpuVsDirect = div(through, d.postgresCpuUs);
    }
    out.push(r);
  }
  return out;
}

export interface CompareMeta {
  date: string;
  /** "Machine: …" line. */
  machine: string;
  /** Versions of PostgreSQL, pgbench, PgBouncer, pgtide. */
  versions: string;
  /** What each target is: pgbench → … */
  targets: { target: CompareTarget; desc: string }[];
  /** The settings line. */
  settings: string;
  rounds: number;
  /** How CPU was read (or why not). */
  cpu: string[];
  notes: string[];
}

const num = (v: number | undefined, unit = '') => (v === undefined ? 'n/a' : `${fmt(v)}${unit}`);
const ratio = (v: number | undefined) => (v === undefined ? 'n/a' : v.toFixed(2));
const cell = (s: string) => s.replace(/\|/g, '\\|');

function workload(protocol: BenchProtocol, pgbouncerMode?: BenchProtocol): string {
  return pgbouncerMode ? `${protocol} (PgBouncer: -M ${pgbouncerMode})` : protocol;
}

/** The whole Markdown report. */
export function renderCompare(runs: CompareRun[], protocols: BenchProtocol[], levels: number[], m: CompareMeta): { markdown: string; medians: CompareMedian[]; ratios: CompareRatio[] } {
  const meds = medians(runs, protocols, levels);
  const rats = ratios(meds);
  const out: string[] = [`# pgtide bench --compare (${m.date})`, ''];
  out.push(`Machine: ${m.machine}`, '');
  out.push(`Versions: ${m.versions}`, '');
  out.push('Targets:', '', ...m.targets.map((t) => `- **${TARGET_NAMES[t.target]}**: ${t.desc}`), '');
  out.push(`Settings: ${m.settings}`, '');

  out.push(`## Results (medians of ${m.rounds} round${m.rounds > 1 ? 's' : ''})`, '');
  out.push('| Workload | Clients | Target | tps | latency avg | p99 | pooler CPU per xact | PostgreSQL CPU per xact | host CPU busy | runs with errors |');
  out.push('| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const x of meds) {
    const target = x.mode !== x.protocol ? `${TARGET_NAMES[x.target]} (-M ${x.mode})` : TARGET_NAMES[x.target];
    out.push(`| ${x.protocol} | ${x.clients} | ${target} | ${num(x.tps)} | ${num(x.latencyAvgMs, ' ms')} | ${num(x.p99Ms, ' ms')} | ` +
      `${x.target === 'direct' ? '–' : num(x.poolerCpuUs, ' µs')} | ${num(x.postgresCpuUs, ' µs')} | ${num(x.hostBusyPct, ' %')} | ${x.errors} of ${x.runs} |`);
  }
  out.push('');

  const withBouncer = meds.some((x) => x.target === 'pgbouncer');
  out.push('## Ratios (of the medians)', '');
  if (withBouncer) {
    out.push('| Workload | Clients | tps pgtide/PgBouncer | p99 pgtide/PgBouncer | pooler CPU per xact pgtide/PgBouncer | tps pgtide/direct | server CPU per xact pgtide/direct |');
    out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const r of rats) {
      out.push(`| ${workload(r.protocol, r.pgbouncerMode)} | ${r.clients} | ${ratio(r.tpsVsPgbouncer)} | ${ratio(r.p99VsPgbouncer)} | ${ratio(r.poolerCpuVsPgbouncer)} | ${ratio(r.tpsVsDirect)} | ${ratio(r.serverCpuVsDirect)} |`);
    }
  } else {
    out.push('| Workload | Clients | tps pgtide/direct | server CPU per xact pgtide/direct |', '| --- | ---: | ---: | ---: |');
    for (const r of rats) out.push(`| ${r.protocol} | ${r.clients} | ${ratio(r.tpsVsDirect)} | ${ratio(r.serverCpuVsDirect)} |`);
  }
  out.push('');
  out.push('Above 1.00: pgtide has more throughput, or uses more CPU per transaction, or has a higher p99. ' +
    '"server CPU per xact pgtide/direct" = (pgtide\'s CPU + PostgreSQL\'s CPU) per transaction through pgtide ÷ PostgreSQL\'s CPU per transaction direct.', '');

  const problems = runs.filter((r) => !r.ok);
  if (problems.length) {
    out.push('## Runs with errors', '');
    for (const r of problems) out.push(`- round ${r.round}, ${r.protocol}, ${r.clients} clients, ${TARGET_NAMES[r.target]}: ${cell(r.problem ?? 'errors')}`);
    out.push('');
  }
  out.push('## How it is measured', '',
    '- **tps**: pgbench\'s tps without the time to connect the clients. **latency avg**: pgbench\'s `latency average`. ' +
    '**p99**: 99th percentile (nearest rank) of every transaction\'s latency in pgbench\'s log (`-l`).',
    ...m.cpu.map((c) => `- ${c}`),
    '- **host CPU busy**: share of all the machine\'s CPUs busy during the same window (/proc/stat): pgbench, PostgreSQL, the pooler and anything else.',
    `- Each figure is the median over the rounds; a run with errors still counts with what it measured.`,
    '');
  if (m.notes.length) out.push('## Notes', '', ...m.notes.map((n) => `- ${n}`), '');
  return { markdown: out.join('\n'), medians: meds, ratios: rats };
}

// Benchmark report: machine description, per-(workload, target) medians over rounds, ratios, idle-client memory, and the
// Markdown rendering.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem, type } from 'node:os';
import { pgBin } from '../test/harness/postgres.js';
import type { IdleRecord, IdleTarget } from './idle.js';
import type { PgbenchResult, Workload } from './pgbench.js';
import { BUSY_POLL_US } from './poolers.js';

export type Target = 'direct' | 'pgbouncer' | 'pgtide' | 'pgtide-bare' | 'pgtide-w2' | 'pgtide-busy';
export const TARGET_LABEL: Record<Target, string> = {
  direct: 'direct PostgreSQL',
  pgbouncer: 'PgBouncer',
  pgtide: 'pgtide',
  'pgtide-bare': 'pgtide, no statement tracking',
  'pgtide-w2': 'pgtide, workers = 2',
  'pgtide-busy': `pgtide, busy_poll_us = ${BUSY_POLL_US}`,
};
export const IDLE_LABEL: Record<IdleTarget, string> = {
  'bare-node': 'bare Node.js socket server',
  pgbouncer: TARGET_LABEL.pgbouncer,
  pgtide: TARGET_LABEL.pgtide,
  'pgtide-bare': TARGET_LABEL['pgtide-bare'],
  'pgtide-w2': TARGET_LABEL['pgtide-w2'],
  'pgtide-busy': TARGET_LABEL['pgtide-busy'],
};

export interface Machine {
  cpuModel: string;
  logicalCpus: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  postgres: string;
  pgbench: string;
  pgbouncer: string;
  pgtide: string;
  clkTck: number;
}

export interface RunRecord {
  round: number;
  workload: string;
  target: Target;
  /** Position of this target within its (round, workload) group, 0-based. */
  position: number;
  startedAt: string;
  wallSeconds: number;
  /** pgbench -T: BENCH_SECONDS plus the time connecting the clients took last time (see run.ts). */
  pgbenchSeconds?: number;
  /**
   * Length of the window the CPU figures cover (from the first logged transaction to 0.3 s before -T ends), s;
   * absent when they cover the whole pgbench run.
   */
  cpuWindowSeconds?: number;
  pgbench?: PgbenchResult;
  /** Pooler process utime+stime over the run, µs per transaction (undefined for direct). */
  poolerCpuUsPerXact?: number;
  /** PostgreSQL (postmaster + backends, live and exited) utime+stime over the run, µs per transaction. */
  pgCpuUsPerXact?: number;
  /** pgbench's own utime+stime, µs per transaction. */
  clientCpuUsPerXact?: number;
  /** Whole-machine CPU busy share over the run, % of all CPUs. */
  hostBusyPct?: number;
  /** Busy CPU not accounted for by the pooler, PostgreSQL or pgbench (other work on the machine, kernel threads), % of all CPUs. */
  otherCpuPct?: number;
  /** 1-minute load average when the run started (the machine may be shared with other work). */
  load1?: number;
  /** Why this run does not count (pgbench problem, pooler down…). */
  error?: string;
  /** Pooler log tail, when the run had an error. */
  poolerLog?: string;
}

export interface Summary {
  workload: string;
  label: string;
  target: Target;
  runs: number;
  okRuns: number;
  tps?: number;
  latencyAvgMs?: number;
  p99Ms?: number;
  poolerCpuUs?: number;
  pgCpuUs?: number;
  /** Median over rounds of pooler + PostgreSQL CPU µs per transaction. */
  serverCpuUs?: number;
  hostBusyPct?: number;
  clientCpuUs?: number;
  otherCpuPct?: number;
  /** Failed transactions + aborted clients + failed runs, summed over all rounds. */
  errors: number;
  tpsByRound: (number | undefined)[];
  otherCpuByRound: (number | undefined)[];
}

export interface Ratio {
  workload: string;
  label: string;
  tpsVsPgbouncer?: number;
  tpsVsDirect?: number;
  p99VsPgbouncer?: number;
  poolerCpuVsPgbouncer?: number;
  /** pgtide's (pooler + PostgreSQL) CPU per transaction over direct PostgreSQL's CPU per transaction. */
  serverCpuVsDirect?: number;
}

function sh(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]!.trim();
  } catch (e) {
    return `unknown (${(e as Error).message.split('\n')[0]})`;
  }
}

export function describeMachine(versions: { pgbouncer: string; pgtide: string; postgres?: string }, clkTck: number): Machine {
  let cpuModel = 'unknown';
  try {
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  } catch { /* keep unknown */ }
  return {
    cpuModel,
    logicalCpus: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${type()} ${release()}`,
    node: process.version,
    postgres: versions.postgres ?? sh(pgBin('postgres'), ['--version']),
    pgbench: sh(pgBin('pgbench'), ['--version']),
    pgbouncer: versions.pgbouncer,
    pgtide: versions.pgtide,
    clkTck,
  };
}

export function median(xs: (number | undefined)[]): number | undefined {
  const v = xs.filter((x): x is number => x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1]! + v[mid]!) / 2;
}

export function summarize(records: RunRecord[], workloads: Workload[], targets: Target[], rounds: number): { summaries: Summary[]; ratios: Ratio[] } {
  const summaries: Summary[] = [];
  const ratios: Ratio[] = [];
  for (const w of workloads) {
    const byTarget = new Map<Target, Summary>();
    for (const t of targets) {
      const rs = records.filter((r) => r.workload === w.id && r.target === t);
      // pgtide-busy runs the 1-client workloads only: no empty rows for the rest
      if (rs.length === 0 && t === 'pgtide-busy') continue;
      const ok = rs.filter((r) => !r.error);
      const s: Summary = {
        workload: w.id,
        label: w.label,
        target: t,
        runs: rs.length,
        okRuns: ok.length,
        tps: median(ok.map((r) => r.pgbench?.tps)),
        latencyAvgMs: median(ok.map((r) => r.pgbench?.latencyAvgMs)),
        p99Ms: median(ok.map((r) => r.pgbench?.p99Ms)),
        poolerCpuUs: median(ok.map((r) => r.poolerCpuUsPerXact)),
        pgCpuUs: median(ok.map((r) => r.pgCpuUsPerXact)),
        serverCpuUs: median(ok.map((r) => (r.pgCpuUsPerXact === undefined ? undefined : r.pgCpuUsPerXact + (r.poolerCpuUsPerXact ?? 0)))),
        hostBusyPct: median(ok.map((r) => r.hostBusyPct)),
        clientCpuUs: median(ok.map((r) => r.clientCpuUsPerXact)),
        otherCpuPct: median(ok.map((r) => r.otherCpuPct)),
        errors: rs.reduce((n, r) => n + (r.pgbench?.failed ?? 0) + (r.pgbench?.aborted ?? 0) + (r.error ? 1 : 0), 0),
        tpsByRound: Array.from({ length: rounds }, (_, i) => {
          const r = rs.find((x) => x.round === i + 1);
          return r && !r.error ? r.pgbench?.tps : undefined;
        }),
        otherCpuByRound: Array.from({ length: rounds }, (_, i) => rs.find((x) => x.round === i + 1)?.otherCpuPct),
      };
      summaries.push(s);
      byTarget.set(t, s);
    }
    const div = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
    const tide = byTarget.get('pgtide');
    // -M prepared against PgBouncer's best mode: 1.18 cannot run -M prepared in transaction pooling
    const bouncer =
      w.kind === 'prepared'
        ? summaries.find((x) => x.target === 'pgbouncer' && x.workload === `extended-c${w.clients}`)
        : byTarget.get('pgbouncer');
    const direct = byTarget.get('direct');
    if (tide) {
      ratios.push({
        workload: w.id,
        label: w.kind === 'prepared' ? `${w.label} (PgBouncer: -M extended)` : w.label,
        tpsVsPgbouncer: div(tide.tps, bouncer?.tps),
        tpsVsDirect: div(tide.tps, direct?.tps),
        p99VsPgbouncer: div(tide.p99Ms, bouncer?.p99Ms),
        poolerCpuVsPgbouncer: div(tide.poolerCpuUs, bouncer?.poolerCpuUs),
        serverCpuVsDirect: div(tide.serverCpuUs, direct?.pgCpuUs),
      });
    }
  }
  return { summaries, ratios };
}

const f = (x: number | undefined, digits: number) => (x === undefined ? '–' : x.toFixed(digits));
const fTps = (x: number | undefined) => (x === undefined ? '–' : x >= 1000 ? Math.round(x).toString() : x.toFixed(1));
const fRatio = (x: number | undefined) => (x === undefined ? '–' : x.toFixed(2));

export function resultsTable(summaries: Summary[]): string {
  const lines = [
    '| Workload | Target | tps | latency avg (ms) | p99 (ms) | pooler CPU (µs/xact) | PostgreSQL CPU (µs/xact) | pgbench CPU (µs/xact) | host CPU busy (%) | other CPU (%) | errors |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const s of summaries) {
    const runs = s.okRuns < s.runs ? ` (${s.okRuns}/${s.runs} runs ok)` : '';
    lines.push(`| ${s.label} | ${TARGET_LABEL[s.target]}${runs} | ${fTps(s.tps)} | ${f(s.latencyAvgMs, 3)} | ${f(s.p99Ms, 3)} | ${s.target === 'direct' ? 'n/a' : f(s.poolerCpuUs, 1)} | ${f(s.pgCpuUs, 1)} | ${f(s.clientCpuUs, 1)} | ${f(s.hostBusyPct, 0)} | ${f(s.otherCpuPct, 0)} | ${s.errors} |`);
  }
  return lines.join('\n');
}

export function ratiosTable(ratios: Ratio[]): string {
  const lines = [
    '| Workload | tps pgtide/PgBouncer | tps pgtide/direct | p99 pgtide/PgBouncer | pooler CPU per xact pgtide/PgBouncer | server CPU per xact pgtide/direct |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of ratios) lines.push(`| ${r.label} | ${fRatio(r.tpsVsPgbouncer)} | ${fRatio(r.tpsVsDirect)} | ${fRatio(r.p99VsPgbouncer)} | ${fRatio(r.poolerCpuVsPgbouncer)} | ${fRatio(r.serverCpuVsDirect)} |`);
  return lines.join('\n');
}

/**
 * Latency each pooler adds over direct PostgreSQL at 1 client (issue 6: pgtide's ≤ PgBouncer's), from the average
 * latencies: target − direct, same workload (for -M prepared, PgBouncer's is that of -M extended over direct -M extended).
 */
/** pgbench's select-only workloads (`-S` in one of the three protocols). */
export const isSelectOnly = (w: Workload): boolean => w.kind === 'simple' || w.kind === 'extended' || w.kind === 'prepared';

export function addedLatencyTable(summaries: Summary[], workloads: Workload[]): string {
  const one = workloads.filter((w) => w.clients === 1 && isSelectOnly(w));
  if (one.length === 0) return '';
  const us = (ms: number | undefined) => (ms === undefined ? undefined : ms * 1000);
  const get = (id: string, t: Target) => us(summaries.find((s) => s.workload === id && s.target === t)?.latencyAvgMs);
  const added = (id: string, t: Target) => {
    const a = get(id, t);
    const d = get(id, 'direct');
    return a === undefined || d === undefined ? undefined : a - d;
  };
  const lines = [
    `| Workload | direct PostgreSQL latency (µs) | added by PgBouncer (µs) | added by pgtide (µs) | added by ${TARGET_LABEL['pgtide-busy']} (µs) |`,
    '| --- | ---: | ---: | ---: | ---: |',
  ];
  for (const w of one) {
    const bouncer = w.kind === 'prepared' ? added('extended-c1', 'pgbouncer') : added(w.id, 'pgbouncer');
    const label = w.kind === 'prepared' ? `${w.label} (PgBouncer: -M extended)` : w.label;
    lines.push(`| ${label} | ${f(get(w.id, 'direct'), 0)} | ${f(bouncer, 0)} | ${f(added(w.id, 'pgtide'), 0)} | ${f(added(w.id, 'pgtide-busy'), 0)} |`);
  }
  return lines.join('\n');
}

export function roundsTable(summaries: Summary[], rounds: number): string {
  const head = Array.from({ length: rounds }, (_, i) => `round ${i + 1}`);
  const lines = [`| Workload | Target | ${head.join(' | ')} |`, `| --- | --- | ${head.map(() => '---:').join(' | ')} |`];
  for (const s of summaries) {
    const cells = s.tpsByRound.map((t, i) => `${fTps(t)} (${f(s.otherCpuByRound[i], 0)}%)`);
    lines.push(`| ${s.label} | ${TARGET_LABEL[s.target]} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

export function machineList(m: Machine): string {
  return [
    `- CPU: ${m.cpuModel}, ${m.logicalCpus} logical CPUs`,
    `- Memory: ${m.memoryGiB} GiB`,
    `- Kernel: ${m.kernel}`,
    `- Node.js: ${m.node}`,
    `- PostgreSQL: ${m.postgres}; ${m.pgbench}`,
    `- PgBouncer: ${m.pgbouncer}`,
    `- pgtide: ${m.pgtide}`,
  ].join('\n');
}

// ---------------------------------------------------------------- idle-client memory

export interface IdleSummary {
  clients: number;
  target: IdleTarget;
  runs: number;
  okRuns: number;
  beforeMiB?: number;
  afterMiB?: number;
  rssPerClientKiB?: number;
  pssPerClientKiB?: number;
  /** RSS per client ÷ the bare Node.js server's, same client count. */
  vsBareNode?: number;
  /** RSS per client ÷ PgBouncer's, same client count. */
  vsPgbouncer?: number;
  openSeconds?: number;
  freshQueryMs?: number;
  heldQueryMs?: number;
  /** Held clients the process closed, summed over rounds. */
  dropped: number;
}

export function summarizeIdle(records: IdleRecord[], clientCounts: number[], targets: IdleTarget[]): IdleSummary[] {
  const out: IdleSummary[] = [];
  for (const clients of clientCounts) {
    const group: IdleSummary[] = [];
    for (const target of targets) {
      const rs = records.filter((r) => r.clients === clients && r.target === target);
      const ok = rs.filter((r) => !r.error);
      group.push({
        clients,
        target,
        runs: rs.length,
        okRuns: ok.length,
        beforeMiB: median(ok.map((r) => (r.before ? r.before.rssKiB / 1024 : undefined))),
        afterMiB: median(ok.map((r) => (r.after ? r.after.rssKiB / 1024 : undefined))),
        rssPerClientKiB: median(ok.map((r) => r.rssPerClientKiB)),
        pssPerClientKiB: median(ok.map((r) => r.pssPerClientKiB)),
        openSeconds: median(ok.map((r) => r.openSeconds)),
        freshQueryMs: median(ok.map((r) => r.freshQueryMs)),
        heldQueryMs: median(ok.map((r) => r.heldQueryMs)),
        dropped: rs.reduce((n, r) => n + (r.closedByServer ?? 0), 0),
      });
    }
    const per = (t: IdleTarget) => group.find((g) => g.target === t)?.rssPerClientKiB;
    const div = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
    for (const g of group) {
      g.vsBareNode = div(g.rssPerClientKiB, per('bare-node'));
      g.vsPgbouncer = div(g.rssPerClientKiB, per('pgbouncer'));
    }
    out.push(...group);
  }
  return out;
}

export function idleTable(summaries: IdleSummary[]): string {
  const lines = [
    '| Idle clients | Process | RSS before (MiB) | RSS after (MiB) | RSS per client (KiB) | PSS per client (KiB) | ÷ bare Node.js | ÷ PgBouncer | open all (s) | login + SELECT 1 while held (ms) | SELECT 1 on a held client (ms) | dropped |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const s of summaries) {
    const runs = s.okRuns < s.runs ? ` (${s.okRuns}/${s.runs} ok)` : '';
    const pooler = s.target !== 'bare-node';
    lines.push(`| ${s.clients.toLocaleString('en-US')} | ${IDLE_LABEL[s.target]}${runs} | ${f(s.beforeMiB, 1)} | ${f(s.afterMiB, 1)} | ${f(s.rssPerClientKiB, 2)} | ${f(s.pssPerClientKiB, 2)} | ${fRatio(s.vsBareNode)} | ${fRatio(s.vsPgbouncer)} | ${f(s.openSeconds, 1)} | ${pooler ? f(s.freshQueryMs, 1) : 'n/a'} | ${pooler ? f(s.heldQueryMs, 1) : 'n/a'} | ${s.dropped} |`);
  }
  return lines.join('\n');
}

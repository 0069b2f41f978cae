// Benchmark client: runs one pgbench run (select-only or TPC-B-like) and parses its summary and per-transaction logs (p99 latency).

import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { onProcessExit, pgBin, pgEnv } from '../test/harness/postgres.js';
import { childrenOf, execCapture } from './procs.js';

/** select-only with -M simple/extended/prepared; connect = select-only with -C; tpcb = pgbench's built-in TPC-B-like script. */
export type WorkloadKind = 'simple' | 'extended' | 'prepared' | 'connect' | 'tpcb';

export interface Workload {
  /** Stable id, e.g. `simple-c10`. */
  id: string;
  kind: WorkloadKind;
  clients: number;
  /** Human label for tables. */
  label: string;
}

export interface PgbenchOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  db: string;
  /** pgbench -T (it counts from pgbench's start, the time to connect the clients included). */
  seconds: number;
  /** pgbench -t (transactions per client) instead of -T. */
  transactions?: number;
  /** pgbench --sampling-rate for the per-transaction log (1 = every transaction). */
  samplingRate: number;
  probe?: PgbenchProbe;
}

/**
 * Hooks for reading CPU counters over the part of a run where transactions run, without the time to connect the clients
 * (seconds for a thousand SCRAM logins to PostgreSQL) at the start and to disconnect them at the end.
 */
export interface PgbenchProbe {
  /** Called once when the per-transaction log first has data: the clients are connected and transactions run. */
  onTransactionsStart(pgbenchPid: number | undefined): void;
  /** Called once `endAfterMs` after pgbench was started (set it a little before -T ends), if transactions had started. */
  onWindowEnd(pgbenchPid: number | undefined): void;
  endAfterMs: number;
}

export interface PgbenchResult {
  /** pgbench command line (password not included: it goes through PGPASSWORD). */
  command: string;
  exitCode: number | null;
  tps?: number;
  /** What pgbench said about the tps figure, e.g. "without initial connection time". */
  tpsNote?: string;
  transactions?: number;
  failed?: number;
  /** Clients that pgbench reported as aborted. */
  aborted: number;
  latencyAvgMs?: number;
  latencyStddevMs?: number;
  initialConnMs?: number;
  avgConnMs?: number;
  /** 99th percentile of the logged per-transaction latencies, ms. */
  p99Ms?: number;
  p50Ms?: number;
  /** Transactions found in the per-transaction logs (with sampling, about transactions × rate). */
  logged: number;
  /** Why this run does not count, if it doesn't (pgbench failed, timed out, printed no tps…). */
  error?: string;
  /** CPU time (user + sys) pgbench itself used, seconds. */
  clientCpuSeconds?: number;
  /** pgbench's stderr lines other than progress chatter (first 20). */
  stderr: string[];
  /**
   * The probe's window (epoch ms) and the transactions that completed within it according to the per-transaction
   * log (scaled by 1/sampling rate); absent when the window was not taken (no probe, or no transactions before its end).
   */
  window?: { fromMs: number; toMs: number; transactions: number };
}

/** The pgbench arguments for a workload (without connection and logging options): -T seconds, or -t transactions. */
export function workloadArgs(w: Workload, seconds: number, transactions?: number): string[] {
  const length = transactions !== undefined ? ['-t', String(transactions)] : ['-T', String(seconds)];
  const args = ['-n', ...(w.kind === 'tpcb' ? ['-b', 'tpcb-like'] : ['-S']), ...length, '-c', String(w.clients), '-j', String(Math.min(2, w.clients))];
  if (w.kind === 'extended' || w.kind === 'prepared') args.push('-M', w.kind);
  else args.push('-M', 'simple');
  if (w.kind === 'connect') args.push('-C');
  return args;
}

/** Parse pgbench's end-of-run summary (PostgreSQL 15 format). */
export function parseSummary(out: string): Pick<PgbenchResult, 'tps' | 'tpsNote' | 'transactions' | 'failed' | 'latencyAvgMs' | 'latencyStddevMs' | 'initialConnMs' | 'avgConnMs'> {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : undefined;
  };
  const tps = /^tps = ([\d.]+)(?: \(([^)]*)\))?/m.exec(out);
  return {
    tps: tps ? Number(tps[1]) : undefined,
    tpsNote: tps?.[2],
    transactions: num(/^number of transactions actually processed: (\d+)/m),
    failed: num(/^number of failed transactions: (\d+)/m),
    latencyAvgMs: num(/^latency average = ([\d.]+) ms/m),
    latencyStddevMs: num(/^latency stddev = ([\d.]+) ms/m),
    initialConnMs: num(/^initial connection time = ([\d.]+) ms/m),
    avgConnMs: num(/^average connection time = ([\d.]+) ms/m),
  };
}

/**
 * Read pgbench -l files: the latencies (µs, 3rd column, sorted) of the transactions that succeeded (failed or skipped
 * ones have no number there), and how many of them completed within [fromMs, toMs] (5th and 6th columns, epoch s and µs).
 */
export function readLog(dir: string, window?: { fromMs: number; toMs: number }): { latencies: Float64Array; inWindow: number } {
  const chunks: number[][] = [];
  let total = 0;
  let inWindow = 0;
  for (const name of readdirSync(dir)) {
    const text = readFileSync(join(dir, name), 'latin1');
    const vals: number[] = [];
    let pos = 0;
    while (pos < text.length) {
      let nl = text.indexOf('\n', pos);
      if (nl < 0) nl = text.length;
      // columns: client_id transaction_no time script_no time_epoch time_us …; ends[k] = end of column k
      const ends: number[] = [];
      for (let at = pos; ends.length < 6 && at <= nl; ) {
        const sp = text.indexOf(' ', at);
        const end = sp < 0 || sp > nl ? nl : sp;
        ends.push(end);
        at = end + 1;
      }
      if (ends.length >= 3) {
        const v = Number(text.slice(ends[1]! + 1, ends[2]!));
        if (Number.isFinite(v) && ends[2]! > ends[1]! + 1) {
          vals.push(v);
          if (window && ends.length >= 6) {
            const t = Number(text.slice(ends[3]! + 1, ends[4]!)) * 1000 + Number(text.slice(ends[4]! + 1, ends[5]!)) / 1000;
            if (t >= window.fromMs && t <= window.toMs) inWindow++;
          }
        }
      }
      pos = nl + 1;
    }
    chunks.push(vals);
    total += vals.length;
  }
  const all = new Float64Array(total);
  let i = 0;
  for (const c of chunks) for (const v of c) all[i++] = v;
  return { latencies: all.sort(), inWindow };
}

/** True once any pgbench -l file has data. */
function logHasData(dir: string): boolean {
  try {
    return readdirSync(dir).some((name) => statSync(join(dir, name)).size > 0);
  } catch {
    return false;
  }
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: Float64Array, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Run pgbench once; never throws: problems land in `error`. */
/** BENCH_TLS=1: every client (pgbench, psql) connects with sslmode=require (bench/run.ts sets up TLS everywhere). */
export const BENCH_TLS = process.env.BENCH_TLS === '1';
export const CLIENT_ENV: Record<string, string> = BENCH_TLS ? { PGSSLMODE: 'require' } : {};

export async function runPgbench(w: Workload, o: PgbenchOptions): Promise<PgbenchResult> {
  const logDir = mkdtempSync('/tmp/pgtide-bench-log-');
  const removeLogDir = () => rmSync(logDir, { recursive: true, force: true });
  const unregister = onProcessExit(removeLogDir); // also on Ctrl-C mid-run
  const args = [
    ...workloadArgs(w, o.seconds, o.transactions),
    '-l', '--log-prefix', join(logDir, 'x'),
    ...(o.samplingRate < 1 ? ['--sampling-rate', String(o.samplingRate)] : []),
    '-h', o.host, '-p', String(o.port), '-U', o.user, o.db,
  ];
  const command = `pgbench ${args.join(' ').replace(logDir, '<tmp>')}`;
  let poll: NodeJS.Timeout | undefined;
  let endTimer: NodeJS.Timeout | undefined;
  let fromMs: number | undefined;
  let toMs: number | undefined;
  const onSpawn = (bashPid: number) => {
    const probe = o.probe;
    if (!probe) return;
    let pgbenchPid: number | undefined;
    poll = setInterval(() => {
      if (!logHasData(logDir)) return;
      clearInterval(poll);
      pgbenchPid = childrenOf(bashPid)[0]; // bash's child
      fromMs = Date.now();
      probe.onTransactionsStart(pgbenchPid);
    }, 25);
    endTimer = setTimeout(() => {
      clearInterval(poll);
      if (fromMs === undefined) return;
      toMs = Date.now();
      probe.onWindowEnd(pgbenchPid);
    }, probe.endAfterMs);
  };
  try {
    // bash runs pgbench, then `times` reports pgbench's CPU time (the shell's children's user and sys) on stderr.
    const r = await execCapture('bash', ['-c', '"$0" "$@"; rc=$?; times >&2; exit $rc', pgBin('pgbench'), ...args], {
      env: pgEnv({ PGPASSWORD: o.password, ...CLIENT_ENV }),
      timeoutMs: (o.seconds + 90) * 1000,
      cwd: logDir,
      onSpawn,
    });
    clearInterval(poll);
    clearTimeout(endTimer);
    const summary = parseSummary(r.stdout);
    const { cpuSeconds, rest } = splitTimes(r.stderr);
    const stderrLines = rest.split('\n').filter((l) => l.trim() && !/^pgbench \(|^starting vacuum|^progress:/.test(l));
    const aborted = stderrLines.filter((l) => /client \d+ aborted/.test(l)).length;
    const window = fromMs !== undefined && toMs !== undefined ? { fromMs, toMs } : undefined;
    let lat: Float64Array = new Float64Array(0);
    let inWindow = 0;
    try { ({ latencies: lat, inWindow } = readLog(logDir, window)); } catch { /* no logs */ }
    const res: PgbenchResult = {
      command,
      exitCode: r.code,
      ...summary,
      aborted,
      logged: lat.length,
      clientCpuSeconds: cpuSeconds,
      p99Ms: ms(percentile(lat, 99)),
      p50Ms: ms(percentile(lat, 50)),
      stderr: stderrLines.slice(0, 20),
      window: window ? { ...window, transactions: Math.round(inWindow / o.samplingRate) } : undefined,
    };
    if (r.spawnError) res.error = `pgbench could not run: ${r.spawnError}`;
    else if (r.timedOut) res.error = `pgbench killed after ${o.seconds + 90} s`;
    else if (summary.tps === undefined) {
      res.error = `pgbench printed no tps (exit ${r.code ?? r.signal})` +
        (summary.initialConnMs !== undefined && summary.transactions === 0 ? `: no transaction ran, connecting the clients took ${(summary.initialConnMs / 1000).toFixed(1)} s of the ${o.seconds} s` : '') +
        (stderrLines.length ? `: ${stderrLines.slice(0, 3).join(' | ')}` : '');
    }
    else if (r.code !== 0) res.error = `pgbench exited ${r.code ?? r.signal}: ${stderrLines.slice(0, 3).join(' | ')}`;
    return res;
  } finally {
    clearInterval(poll);
    clearTimeout(endTimer);
    unregister();
    removeLogDir();
  }
}

/** Take bash's `times` output (two lines: shell, then children) off the end of stderr; children's user+sys in seconds. */
export function splitTimes(stderr: string): { cpuSeconds?: number; rest: string } {
  const re = /(?:^|\n)(\d+)m([\d.]+)s (\d+)m([\d.]+)s\n(\d+)m([\d.]+)s (\d+)m([\d.]+)s\n?$/;
  const m = re.exec(stderr);
  if (!m) return { rest: stderr };
  const n = m.slice(5, 9).map(Number) as [number, number, number, number];
  return { cpuSeconds: n[0] * 60 + n[1] + n[2] * 60 + n[3], rest: stderr.slice(0, m.index) };
}

function ms(us: number | undefined): number | undefined {
  return us === undefined ? undefined : us / 1000;
}

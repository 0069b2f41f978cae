// Benchmark client: runs one pgbench select-only run and parses its summary and per-transaction logs (p99 latency).

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { onProcessExit, pgBin, pgEnv } from '../test/harness/postgres.js';
import { execCapture } from './procs.js';

export type WorkloadKind = 'simple' | 'extended' | 'prepared' | 'connect';

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
  seconds: number;
  /** pgbench --sampling-rate for the per-transaction log (1 = every transaction). */
  samplingRate: number;
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
}

/** The pgbench arguments for a workload (without connection and logging options). */
export function workloadArgs(w: Workload, seconds: number): string[] {
  const args = ['-n', '-S', '-T', String(seconds), '-c', String(w.clients), '-j', String(Math.min(2, w.clients))];
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

/** Latencies (µs) from pgbench -l files: the 3rd column of each line; failed/skipped lines are not numbers and are left out. */
export function readLatencies(dir: string): Float64Array {
  const chunks: number[][] = [];
  let total = 0;
  for (const name of readdirSync(dir)) {
    const text = readFileSync(join(dir, name), 'latin1');
    const vals: number[] = [];
    let pos = 0;
    while (pos < text.length) {
      let nl = text.indexOf('\n', pos);
      if (nl < 0) nl = text.length;
      // columns: client_id transaction_no time script_no time_epoch time_us …
      const s1 = text.indexOf(' ', pos);
      const s2 = s1 < 0 ? -1 : text.indexOf(' ', s1 + 1);
      const s3 = s2 < 0 ? -1 : text.indexOf(' ', s2 + 1);
      if (s3 > 0 && s3 < nl) {
        const v = Number(text.slice(s2 + 1, s3));
        if (Number.isFinite(v)) vals.push(v);
      }
      pos = nl + 1;
    }
    chunks.push(vals);
    total += vals.length;
  }
  const all = new Float64Array(total);
  let i = 0;
  for (const c of chunks) for (const v of c) all[i++] = v;
  return all.sort();
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
    ...workloadArgs(w, o.seconds),
    '-l', '--log-prefix', join(logDir, 'x'),
    ...(o.samplingRate < 1 ? ['--sampling-rate', String(o.samplingRate)] : []),
    '-h', o.host, '-p', String(o.port), '-U', o.user, o.db,
  ];
  const command = `pgbench ${args.join(' ').replace(logDir, '<tmp>')}`;
  try {
    // bash runs pgbench, then `times` reports pgbench's CPU time (the shell's children's user and sys) on stderr.
    const r = await execCapture('bash', ['-c', '"$0" "$@"; rc=$?; times >&2; exit $rc', pgBin('pgbench'), ...args], {
      env: pgEnv({ PGPASSWORD: o.password, ...CLIENT_ENV }),
      timeoutMs: (o.seconds + 90) * 1000,
      cwd: logDir,
    });
    const summary = parseSummary(r.stdout);
    const { cpuSeconds, rest } = splitTimes(r.stderr);
    const stderrLines = rest.split('\n').filter((l) => l.trim() && !/^pgbench \(|^starting vacuum|^progress:/.test(l));
    const aborted = stderrLines.filter((l) => /client \d+ aborted/.test(l)).length;
    let lat: Float64Array = new Float64Array(0);
    try { lat = readLatencies(logDir); } catch { /* no logs */ }
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
    };
    if (r.spawnError) res.error = `pgbench could not run: ${r.spawnError}`;
    else if (r.timedOut) res.error = `pgbench killed after ${o.seconds + 90} s`;
    else if (summary.tps === undefined) res.error = `pgbench printed no tps (exit ${r.code ?? r.signal}): ${stderrLines.slice(0, 3).join(' | ')}`;
    else if (r.code !== 0) res.error = `pgbench exited ${r.code ?? r.signal}: ${stderrLines.slice(0, 3).join(' | ')}`;
    return res;
  } finally {
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

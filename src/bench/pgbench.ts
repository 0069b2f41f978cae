/* pgbench for `pgtide bench`: finding it, the web-app request script (--before-after) and the select-only script
 * (--compare), one run (with -C: a new connection per request) with progress, and parsing its summary, progress
 * lines, errors and per-transaction logs. */

import { spawn } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export class PgbenchMissing extends Error {}

/** The first executable pgbench: `explicit`, else on PATH, else the newest /usr/lib/postgresql/<version>/bin/pgbench. */
export function findPgbench(explicit?: string, path = process.env.PATH ?? ''): string {
  const executable = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (explicit) {
    if (executable(explicit)) return explicit;
    throw new PgbenchMissing(`--pgbench ${explicit}: not an executable file`);
  }
  for (const dir of path.split(delimiter).filter(Boolean)) if (executable(join(dir, 'pgbench'))) return join(dir, 'pgbench');
  let versions: string[] = [];
  try {
    versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch {
    /* no such dir */
  }
  for (const v of versions) {
    const p = `/usr/lib/postgresql/${v}/bin/pgbench`;
    if (executable(p)) return p;
  }
  throw new PgbenchMissing('pgbench not found on PATH or in /usr/lib/postgresql/*/bin: install PostgreSQL\'s pgbench ' +
    '(Debian/Ubuntu: the postgresql-NN package; elsewhere the PostgreSQL client or contrib package), or give --pgbench PATH');
}

/** SQL transactions in one run of REQUEST_SCRIPT. */
export const TRANSACTIONS_PER_REQUEST = 3;

/**
 * One web request: with -C, pgbench opens a connection, runs this (three short transactions: a lookup, a
 * two-statement transaction, a small aggregate), and closes the connection. It reads only the system catalogs and
 * generate_series, so it needs no table of the user's and leaves nothing behind.
 */
export const REQUEST_SCRIPT = `\\set id random(1, 3000)
SELECT typname, typlen FROM pg_catalog.pg_type WHERE oid = :id;
BEGIN;
SELECT relname, relkind, relpages FROM pg_catalog.pg_class WHERE oid = :id;
SELECT count(*) FROM generate_series(1, 100) AS g WHERE g % 7 = :id % 7;
COMMIT;
SELECT n.nspname, count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace GROUP BY 1 ORDER BY 2 DESC LIMIT 3;
`;

/**
 * One short read-only transaction, in the style of pgbench's select-only (-S) built-in: an index lookup with a random
 * key, here in the system catalogs, so it needs no table of the user's (no pgbench -i) and leaves nothing behind.
 * With -M extended or prepared, :id is sent as a parameter.
 */
export const SELECT_SCRIPT = `\\set id random(1, 3000)
SELECT typname, typlen FROM pg_catalog.pg_type WHERE oid = :id;
`;

export interface PgbenchSummary {
  /** Script runs per second: the first tps line (with -C: including reconnection times). */
  tps?: number;
  /** Without -C: tps without the initial connection time (PostgreSQL 14+: the only tps line; 13: the second one). */
  tpsNoConnect?: number;
  requests?: number;
  failed?: number;
  /** pgbench's "average connection time" (-C: over every connection of the run), ms. */
  avgConnMs?: number;
  latencyAvgMs?: number;
}

/** Parse pgbench's end-of-run summary (PostgreSQL 13–17 wording). */
export function parseSummary(out: string): PgbenchSummary {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : undefined;
  };
  return {
    tps: num(/^tps = ([\d.]+)/m),
    tpsNoConnect: num(/^tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/m),
    requests: num(/^number of transactions actually processed: (\d+)/m),
    failed: num(/^number of failed transactions: (\d+)/m),
    avgConnMs: num(/^average connection time = ([\d.]+) ms/m),
    latencyAvgMs: num(/^latency average = ([\d.]+) ms/m),
  };
}

/** A `-P` line: "progress: 5.0 s, 1811.2 tps, lat 5.521 ms stddev 1.2, 0 failed". */
export function parseProgress(line: string): { seconds: number; tps: number } | undefined {
  const m = /^progress: ([\d.]+) s, ([\d.]+) tps/.exec(line);
  return m ? { seconds: Number(m[1]), tps: Number(m[2]) } : undefined;
}

/** Aborted clients and the distinct error messages (first few, most frequent first) of pgbench's stderr. */
export function summarizeErrors(stderr: string): { aborted: number; messages: string[] } {
  const lines = stderr.split('\n');
  const aborted = lines.filter((l) => /client \d+ aborted/.test(l)).length;
  const counts = new Map<string, number>();
  for (const l of lines) {
    if (!/^pgbench: (error|fatal):/.test(l) || /client \d+ aborted|Run was aborted/.test(l)) continue;
    // "connection to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already" → the part after the last "failed: "
    const msg = l.replace(/^pgbench: (error|fatal): /, '').replace(/^.*failed: /, '').replace(/\s+/g, ' ').trim();
    counts.set(msg, (counts.get(msg) ?? 0) + 1);
  }
  const messages = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([m, n]) => (n > 1 ? `${m} (×${n})` : m));
  return { aborted, messages };
}

/** Whether `name` is one of pgbench's -l files for --log-prefix `prefix` (prefix.<pid> or prefix.<pid>.<thread>). */
function isLogOf(name: string, prefix: string): boolean {
  return name.startsWith(`${prefix}.`) && /^\d+(\.\d+)?$/.test(name.slice(prefix.length + 1));
}

/**
 * The -l files in `dir` for `prefix`: the latency (µs, the third column) of every successful transaction, sorted, and
 * when each completed (epoch ms, from the fifth and sixth columns), sorted.
 */
export function readLog(dir: string, prefix: string): { latencies: Float64Array; ends: Float64Array } {
  const lat: number[] = [];
  const ends: number[] = [];
  for (const name of readdirSync(dir)) {
    if (!isLogOf(name, prefix)) continue;
    for (const line of readFileSync(join(dir, name), 'latin1').split('\n')) {
      const f = line.split(' '); // client_id transaction_no time script_no time_epoch time_us
      const v = Number(f[2]);
      if (!line || !Number.isFinite(v)) continue; // an empty line, or "failed"/"skipped"
      lat.push(v);
      const end = Number(f[4]) * 1000 + Number(f[5]) / 1000;
      if (Number.isFinite(end)) ends.push(end);
    }
  }
  return { latencies: Float64Array.from(lat).sort(), ends: Float64Array.from(ends).sort() };
}

/** Per-request latencies (µs) from the -l files in `dir` for `prefix`, sorted. */
export function readLatencies(dir: string, prefix: string): Float64Array {
  return readLog(dir, prefix).latencies;
}

/** How many of the sorted values lie in (from, to]. */
export function countIn(sorted: Float64Array, from: number, to: number): number {
  const firstAbove = (x: number) => {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid]! <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  return Math.max(0, firstAbove(to) - firstAbove(from));
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: Float64Array, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Where pgbench connects. */
export interface PgbenchEndpoint {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  sslmode: string;
}

export interface PgbenchRunOptions extends PgbenchEndpoint {
  pgbench: string;
  clients: number;
  threads: number;
  seconds: number;
  protocol: 'simple' | 'extended' | 'prepared';
  /** -C: a new connection for every script run (default true). */
  reconnect?: boolean;
  scriptFile: string;
  /** Directory for the -l files. */
  logDir: string;
  /** Unique -l file prefix within logDir. */
  logPrefix: string;
  /** Called with each -P progress line. */
  onProgress?: (p: { seconds: number; tps: number }) => void;
  /** Called once pgbench has been started. */
  onStart?: (pid: number) => void;
  progressEvery?: number;
  /** Return the completion times of the logged transactions (PgbenchRun.ends). */
  keepEnds?: boolean;
}

export interface PgbenchRun extends PgbenchSummary {
  exitCode: number | null;
  aborted: number;
  errors: string[];
  p99Ms?: number;
  p50Ms?: number;
  /** Requests in the -l logs. */
  logged: number;
  /** With keepEnds: when each logged transaction completed, epoch ms, sorted. */
  ends?: Float64Array;
  /** Why the run did not complete without errors, if it did not. */
  problem?: string;
}

const live = new Set<number>();
let exitHook = false;

/** Kill every pgbench still running (process groups), e.g. on Ctrl-C. */
export function killAllPgbench(): void {
  for (const pid of live) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  live.clear();
}

/** Run pgbench once (own process group, killed on timeout or when this process exits). Never rejects. */
export function runPgbench(o: PgbenchRunOptions): Promise<PgbenchRun> {
  if (!exitHook) {
    exitHook = true;
    process.on('exit', killAllPgbench);
  }
  const args = [
    '-n', ...(o.reconnect === false ? [] : ['-C']), '-f', o.scriptFile, '-M', o.protocol,
    '-T', String(o.seconds), '-c', String(o.clients), '-j', String(Math.max(1, Math.min(o.threads, o.clients))),
    '-P', String(o.progressEvery ?? Math.max(1, Math.round(o.seconds / 4))),
    '-l', '--log-prefix', join(o.logDir, o.logPrefix),
    '-h', o.host, '-p', String(o.port), '-U', o.user, o.database,
  ];
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  Object.assign(env, { LC_ALL: 'C', LANG: 'C', PGPASSWORD: o.password, PGSSLMODE: o.sslmode, PGCONNECT_TIMEOUT: '10' });
  const timeoutMs = (o.seconds + 60) * 1000;
  return new Promise((resolve) => {
    const child = spawn(o.pgbench, args, { env, cwd: o.logDir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    if (child.pid) {
      live.add(child.pid);
      o.onStart?.(child.pid);
    }
    let stdout = '';
    let stderr = '';
    let partial = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const l of lines) {
        const p = parseProgress(l);
        if (p) o.onProgress?.(p);
        else if (stderr.length < 1 << 20) stderr += l + '\n';
      }
    });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, timeoutMs);
    let spawnError: string | undefined;
    child.once('error', (e) => (spawnError = e.message));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (child.pid) live.delete(child.pid);
      stderr += partial;
      const summary = parseSummary(stdout);
      const { aborted, messages } = summarizeErrors(stderr);
      let lat: Float64Array = new Float64Array(0);
      let ends: Float64Array = new Float64Array(0);
      try {
        ({ latencies: lat, ends } = readLog(o.logDir, o.logPrefix));
      } catch {
        /* no logs */
      }
      const p = (q: number) => {
        const v = percentile(lat, q);
        return v === undefined ? undefined : v / 1000;
      };
      const run: PgbenchRun = { ...summary, exitCode: code, aborted, errors: messages, p99Ms: p(99), p50Ms: p(50), logged: lat.length };
      if (o.keepEnds) run.ends = ends;
      if (spawnError) run.problem = `pgbench could not run: ${spawnError}`;
      else if (timedOut) run.problem = `pgbench did not finish within ${timeoutMs / 1000} s and was killed`;
      else if (signal) run.problem = `pgbench was killed by ${signal}`;
      else if (aborted > 0) run.problem = `${aborted} of ${o.clients} clients aborted${messages.length ? `: ${messages.join('; ')}` : ''}`;
      else if ((summary.failed ?? 0) > 0) run.problem = `${summary.failed} failed requests${messages.length ? `: ${messages.join('; ')}` : ''}`;
      else if (code !== 0) run.problem = `pgbench exited with code ${code}${messages.length ? `: ${messages.join('; ')}` : ''}`;
      else if (summary.tps === undefined) run.problem = 'pgbench printed no tps';
      resolve(run);
    });
  });
}

/**
 * While a bench runs: Ctrl-C or SIGTERM runs `cleanupSync` (stop pgbench and the temporary poolers, remove their
 * files), then exits with 130; a plain exit runs it too. Returns the function that takes these hooks away again.
 */
export function cleanUpOnInterrupt(what: string, cleanupSync: () => void): () => void {
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\npgtide bench: ${sig}, stopping ${what}\n`);
    cleanupSync();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', cleanupSync);
  return () => {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('exit', cleanupSync);
  };
}

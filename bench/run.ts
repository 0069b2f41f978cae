// Benchmark entry point (`npm run bench`): pgbench select-only through direct PostgreSQL, PgBouncer and pgtide, interleaved, medians over rounds.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { onProcessExit, pgBin, pgEnv, pgFileOwner, run, startPostgres, type PgServer } from '../test/harness/postgres.js';
import { BENCH_TLS, CLIENT_ENV, runPgbench, type Workload, type WorkloadKind } from './pgbench.js';
import { makeCerts } from '../test/harness/certs.js';
import { ensurePgbouncer, poolerVersion, REPO_ROOT, startPooler, type Pooler, type PoolerKind } from './poolers.js';
import { CLK_TCK, cpuTicks, hostCpu, sleep, treeCpuTicks } from './procs.js';
import { describeMachine, machineList, ratiosTable, resultsTable, roundsTable, summarize, TARGET_LABEL, type RunRecord, type Target } from './report.js';

// ---------------------------------------------------------------- configuration (environment knobs)

function envInt(name: string, def: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}=${raw}: expected an integer ≥ ${min}`);
  return n;
}

function envNum(name: string, def: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${name}=${raw}: expected a number in [${min}, ${max}]`);
  return n;
}

function envList<T extends string>(name: string, all: readonly T[], defaults: readonly T[] = all): T[] {
  const raw = process.env[name];
  if (!raw) return [...defaults];
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (!(all as readonly string[]).includes(i)) throw new Error(`${name}: unknown item "${i}" (expected some of ${all.join(',')})`);
  return all.filter((a) => items.includes(a)); // canonical order
}

const ALL_TARGETS = ['direct', 'pgbouncer', 'pgtide', 'pgtide-bare', 'pgtide-w2'] as const;
/** pgtide-bare (what transaction-mode safety costs) and pgtide-w2 (workers = 2) only when asked for:
 * BENCH_TARGETS=direct,pgbouncer,pgtide,pgtide-bare,pgtide-w2 */
const DEFAULT_TARGETS = ['direct', 'pgbouncer', 'pgtide'] as const;
const ALL_WORKLOADS = ['simple', 'extended', 'prepared', 'connect'] as const;

const cfg = {
  seconds: envInt('BENCH_SECONDS', 10, 1),
  rounds: envInt('BENCH_ROUNDS', 3, 1),
  clients: (process.env.BENCH_CLIENTS ?? '1,10,100').split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_CLIENTS: bad client count "${s}"`);
    return n;
  }),
  connectClients: envInt('BENCH_CONNECT_CLIENTS', 10, 1),
  targets: envList('BENCH_TARGETS', ALL_TARGETS, DEFAULT_TARGETS) as Target[],
  workloadKinds: envList('BENCH_WORKLOADS', ALL_WORKLOADS) as WorkloadKind[],
  poolSize: envInt('BENCH_POOL_SIZE', 20, 1),
  scale: envInt('BENCH_SCALE', 10, 1),
  warmupSeconds: envInt('BENCH_WARMUP', 2, 0),
  samplingRate: envNum('BENCH_SAMPLING', 1, 0.0001, 1),
};

const workloads: Workload[] = [];
for (const kind of cfg.workloadKinds) {
  if (kind === 'connect') workloads.push({ id: `connect-c${cfg.connectClients}`, kind, clients: cfg.connectClients, label: `connect per xact (-C), ${cfg.connectClients} clients` });
  else for (const c of cfg.clients) workloads.push({ id: `${kind}-c${c}`, kind, clients: c, label: `${kind}, ${c} client${c === 1 ? '' : 's'}` });
}

const USER = 'app';
const PASSWORD = 'apppass';
const DB = 'app';

// ---------------------------------------------------------------- helpers

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(0)} s`;
const say = (msg: string) => process.stderr.write(`[bench ${elapsed()}] ${msg}\n`);

function stamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

function gitDescribe(): string {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'src'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    return `git ${rev}${dirty ? ' + uncommitted changes in src/' : ''}`;
  } catch {
    return 'git revision unknown';
  }
}

function postmasterPid(pg: PgServer): number | undefined {
  try {
    const n = Number(readFileSync(join(pg.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

async function checkLogin(port: number): Promise<void> {
  await run(pgBin('psql'), ['-X', '-A', '-t', '-q', '-h', '127.0.0.1', '-p', String(port), '-U', USER, '-d', DB, '-c', 'SELECT 1'],
    { env: pgEnv({ PGPASSWORD: PASSWORD, ...CLIENT_ENV }), timeoutMs: 20_000 });
}

/** `[a,b,c]` rotated left by k. */
function rotate<T>(xs: T[], k: number): T[] {
  const n = xs.length;
  return n === 0 ? [] : xs.map((_, i) => xs[(i + k) % n]!);
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const resultsDir = join(REPO_ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const base = join(resultsDir, stamp(new Date()));
  const notes: string[] = [];
  const planned = workloads.length * cfg.targets.length * cfg.rounds;
  say(`plan: ${workloads.length} workloads × ${cfg.targets.length} targets × ${cfg.rounds} rounds × ${cfg.seconds} s = ${planned} runs, ≈ ${Math.round((planned * (cfg.seconds + 1.5)) / 60)} min of pgbench`);

  let targets = [...cfg.targets];
  if (targets.includes('pgbouncer')) {
    const pgb = await ensurePgbouncer();
    if (!pgb.ok) {
      const msg = `PgBouncer NOT AVAILABLE, benchmark runs WITHOUT it: ${pgb.note}`;
      notes.push(`**${msg}**`);
      say(`!!!!! ${msg}`);
      targets = targets.filter((t) => t !== 'pgbouncer');
    }
  }

  const maxClients = Math.max(...workloads.map((w) => w.clients), 1);
  let pg: PgServer;
  let extraConf = `shared_buffers = 256MB\nlog_connections = off\nlog_disconnections = off\nmax_wal_size = 4GB\n`;
  // BENCH_TLS=1: TLS on every hop (pgbench → pooler → PostgreSQL, and pgbench → PostgreSQL), certificates made here
  const certs = BENCH_TLS ? makeCerts(pgFileOwner()) : null;
  if (certs) {
    onProcessExit(() => certs.cleanup());
    extraConf += `ssl = on\nssl_cert_file = '${certs.f('server.crt')}'\nssl_key_file = '${certs.f('server.key')}'\n`;
    notes.push('BENCH_TLS=1: TLS on both sides: pgbench uses sslmode=require; both poolers have client_tls_sslmode = require and server_tls_sslmode = require, with the same certificate; direct PostgreSQL has ssl = on.');
  }
  try {
    pg = await startPostgres({ maxConnections: Math.max(1100, maxClients + 100), extraConf });
  } catch (e) {
    say(`PostgreSQL with max_connections=1100 did not start (${(e as Error).message.split('\n')[0]}); retrying with fewer`);
    pg = await startPostgres({ maxConnections: maxClients + 2 * cfg.poolSize + 30, extraConf });
  }
  const poolers = new Map<PoolerKind, Pooler>();
  try {
    say(`PostgreSQL on 127.0.0.1:${pg.port}; pgbench -i -s ${cfg.scale}`);
    await run(pgBin('pgbench'), ['-i', '-q', '-s', String(cfg.scale), '-h', pg.socketDir, '-p', String(pg.port), '-U', USER, DB], { timeoutMs: 900_000 });
    await pg.psql('VACUUM ANALYZE; CHECKPOINT;', DB);
    const pmPid = postmasterPid(pg);
    const pgVersion = await pg.psql('SHOW server_version').catch(() => undefined);

    const poolerSettings = { pgPort: pg.port, poolSize: cfg.poolSize, tls: certs ? { key: certs.f('server.key'), cert: certs.f('server.crt') } : undefined };
    for (const t of targets) {
      if (t === 'direct') continue;
      try {
        const p = await startPooler(t, poolerSettings);
        poolers.set(t, p);
        await checkLogin(p.port);
        say(`${TARGET_LABEL[t]} on 127.0.0.1:${p.port} (pid ${p.pid})`);
      } catch (e) {
        const msg = `${TARGET_LABEL[t]} could not be started or logged into; left out: ${(e as Error).message}`;
        notes.push(msg);
        say(msg);
        await poolers.get(t)?.stop();
        poolers.delete(t);
        targets = targets.filter((x) => x !== t);
      }
    }
    const portOf = (t: Target) => (t === 'direct' ? pg.port : poolers.get(t)!.port);

    const machine = describeMachine({
      pgbouncer: cfg.targets.includes('pgbouncer') ? poolerVersion('pgbouncer') : 'not benchmarked',
      pgtide: `${poolerVersion('pgtide')} (${gitDescribe()})`,
      postgres: pgVersion ? `PostgreSQL ${pgVersion}` : undefined,
    }, CLK_TCK);

    if (cfg.warmupSeconds > 0) {
      for (const t of targets) {
        const w: Workload = { id: 'warmup', kind: 'simple', clients: 10, label: 'warm-up' };
        const r = await runPgbench(w, { host: '127.0.0.1', port: portOf(t), user: USER, password: PASSWORD, db: DB, seconds: cfg.warmupSeconds, samplingRate: 0.01 });
        say(`warm-up ${TARGET_LABEL[t]}: ${r.error ?? `${Math.round(r.tps ?? 0)} tps`}`);
      }
    }

    const records: RunRecord[] = [];
    const writeJson = (complete: boolean, extra: object = {}) =>
      writeFileSync(`${base}.json`, JSON.stringify({ complete, config: { ...cfg, targets, workloads }, machine, notes, records, ...extra }, null, 2) + '\n');

    let n = 0;
    for (let round = 1; round <= cfg.rounds; round++) {
      for (const [wi, w] of workloads.entries()) {
        const order = rotate(targets, round - 1 + wi);
        for (const [position, target] of order.entries()) {
          n++;
          // PgBouncer 1.18 (Debian 12) has no prepared-statement tracking: -M prepared fails in transaction mode, so
          // pgtide's -M prepared is compared with PgBouncer's -M extended instead (report.ts)
          if (w.kind === 'prepared' && (target === 'pgbouncer' || target === 'pgtide-bare')) continue;
          const rec = await measure(round, w, target, position);
          records.push(rec);
          const pb = rec.pgbench;
          say(`[${n}/${workloads.length * targets.length * cfg.rounds}] r${round} ${w.id} ${target}: ` + (rec.error
            ? `ERROR ${rec.error}`
            : `${pb?.tps?.toFixed(0)} tps, avg ${pb?.latencyAvgMs?.toFixed(3)} ms, p99 ${pb?.p99Ms?.toFixed(3)} ms` +
              `${rec.poolerCpuUsPerXact !== undefined ? `, pooler ${rec.poolerCpuUsPerXact.toFixed(1)} µs/xact` : ''}` +
              `, pg ${rec.pgCpuUsPerXact?.toFixed(1)} µs/xact, pgbench ${rec.clientCpuUsPerXact?.toFixed(1)} µs/xact` +
              `, host ${rec.hostBusyPct?.toFixed(0)}% busy, other ${rec.otherCpuPct?.toFixed(0)}%`));
          writeJson(false);
          await sleep(500);
        }
      }
    }

    async function measure(round: number, w: Workload, target: Target, position: number): Promise<RunRecord> {
      const rec: RunRecord = { round, workload: w.id, target, position, startedAt: new Date().toISOString(), wallSeconds: 0, load1: loadavg()[0] };
      let pooler = target === 'direct' ? undefined : poolers.get(target);
      if (pooler && !pooler.alive()) {
        const why = `${TARGET_LABEL[target]} was not running before this run (${pooler.exitInfo()}); restarted`;
        notes.push(`round ${round}, ${w.id}: ${why}`);
        say(why);
        rec.poolerLog = pooler.logTail(30);
        await pooler.stop();
        try {
          pooler = await startPooler(target as PoolerKind, poolerSettings);
          poolers.set(target as PoolerKind, pooler);
        } catch (e) {
          rec.error = `restart failed: ${(e as Error).message}`;
          return rec;
        }
      }
      const port = target === 'direct' ? pg.port : pooler!.port;
      const poolerPid = pooler?.pid;
      // workers = 2: the primary and its workers (live ones, and any that exited and were reaped) together
      const poolerCpu = target === 'pgtide-w2' ? treeCpuTicks : cpuTicks;
      const cpu0 = poolerPid !== undefined ? poolerCpu(poolerPid) : undefined;
      const pg0 = pmPid !== undefined ? treeCpuTicks(pmPid) : undefined;
      const host0 = hostCpu();
      const start = process.hrtime.bigint();
      const pb = await runPgbench(w, { host: '127.0.0.1', port, user: USER, password: PASSWORD, db: DB, seconds: cfg.seconds, samplingRate: cfg.samplingRate });
      rec.wallSeconds = Number(process.hrtime.bigint() - start) / 1e9;
      const cpu1 = poolerPid !== undefined ? poolerCpu(poolerPid) : undefined;
      const pg1 = pmPid !== undefined ? treeCpuTicks(pmPid) : undefined;
      const host1 = hostCpu();
      rec.pgbench = pb;
      const xacts = pb.transactions ?? 0;
      const usPerTick = 1e6 / CLK_TCK;
      if (xacts > 0) {
        if (cpu0 !== undefined && cpu1 !== undefined) rec.poolerCpuUsPerXact = ((cpu1 - cpu0) * usPerTick) / xacts;
        if (pg0 !== undefined && pg1 !== undefined) rec.pgCpuUsPerXact = ((pg1 - pg0) * usPerTick) / xacts;
      }
      if (xacts > 0 && pb.clientCpuSeconds !== undefined) rec.clientCpuUsPerXact = (pb.clientCpuSeconds * 1e6) / xacts;
      if (host1.total > host0.total) {
        const hostTotal = host1.total - host0.total; // jiffies over all CPUs (USER_HZ = CLK_TCK)
        const hostBusy = host1.busy - host0.busy;
        rec.hostBusyPct = (100 * hostBusy) / hostTotal;
        if (pg0 !== undefined && pg1 !== undefined && pb.clientCpuSeconds !== undefined) {
          const ours = (cpu1 ?? 0) - (cpu0 ?? 0) + (pg1 - pg0) + pb.clientCpuSeconds * CLK_TCK;
          rec.otherCpuPct = (100 * (hostBusy - ours)) / hostTotal;
        }
      }
      if (pb.error) rec.error = pb.error;
      if (pooler && !pooler.alive()) rec.error = `${rec.error ? rec.error + '; ' : ''}${TARGET_LABEL[target]} died during the run (${pooler.exitInfo()})`;
      else if (pooler && cpu1 === undefined) rec.error = `${rec.error ? rec.error + '; ' : ''}could not read the pooler's CPU time`;
      if (rec.error && pooler) rec.poolerLog = pooler.logTail(30);
      return rec;
    }

    // ---- report
    const { summaries, ratios } = summarize(records, workloads, targets, cfg.rounds);
    const totalSeconds = (Date.now() - t0) / 1000;
    const failedRuns = records.filter((r) => r.error);
    const loads = records.map((r) => r.load1 ?? 0).sort((a, b) => a - b);
    const loadNote = loads.length ? `1-minute load average at run starts: min ${loads[0]!.toFixed(1)}, median ${loads[loads.length >> 1]!.toFixed(1)}, max ${loads[loads.length - 1]!.toFixed(1)} (${machine.logicalCpus} CPUs; the benchmark itself keeps them busy)` : '';
    const md = [
      `# pgtide benchmark ${stamp(new Date(t0))}`,
      '',
      ...(notes.length ? ['## Notes', '', ...notes.map((x) => `- ${x}`), ''] : []),
      '## Machine',
      '',
      machineList(machine),
      '',
      '## Settings',
      '',
      `- pgbench \`-n -S\` (select-only), \`-T ${cfg.seconds}\`, \`-j min(2, clients)\`; ${cfg.rounds} round(s), targets interleaved and rotated; medians over rounds; ${cfg.warmupSeconds ? `${cfg.warmupSeconds} s warm-up per target (10 clients, simple), not counted` : 'no warm-up'}`,
      `- pgbench -i -s ${cfg.scale}; poolers: pool_mode=transaction, default_pool_size=${cfg.poolSize}, max_client_conn=2000, auth_type=md5 (clients), SCRAM to PostgreSQL`,
      `- p99 from pgbench per-transaction logs (\`-l\`${cfg.samplingRate < 1 ? `, \`--sampling-rate ${cfg.samplingRate}\`` : ', every transaction'})`,
      `- pooler CPU = utime+stime of the pooler process (/proc/<pid>/stat, CLK_TCK ${CLK_TCK}) over the pgbench run ÷ transactions (pgtide with workers = 2: the primary plus its workers); PostgreSQL CPU likewise over postmaster + backends (live and exited)`,
      `- pgbench CPU = pgbench's own user+sys time (bash \`times\`) ÷ transactions; host CPU busy = share of all CPUs busy (/proc/stat); other CPU = host busy minus pooler, PostgreSQL and pgbench, i.e. other work on the machine (negative or small values = noise)`,
      `- errors = failed transactions + aborted clients + failed runs, summed over rounds`,
      ...(loadNote ? [`- ${loadNote}`] : []),
      '',
      '## Results (medians over rounds)',
      '',
      resultsTable(summaries),
      '',
      '## Ratios (of the medians)',
      '',
      'server CPU per xact pgtide/direct = (pgtide CPU + PostgreSQL CPU) per transaction through pgtide ÷ PostgreSQL CPU per transaction direct.',
      '',
      ratiosTable(ratios),
      '',
      '## tps per round (other CPU % in brackets)',
      '',
      roundsTable(summaries, cfg.rounds),
      '',
      ...(failedRuns.length
        ? ['## Failed runs', '', ...failedRuns.map((r) => `- round ${r.round}, ${r.workload}, ${r.target}: ${r.error}${r.poolerLog ? `\n\n  \`\`\`\n${r.poolerLog.split('\n').map((l) => '  ' + l).join('\n')}\n  \`\`\`` : ''}`), '']
        : []),
      `Total runtime: ${(totalSeconds / 60).toFixed(1)} min (${totalSeconds.toFixed(0)} s).`,
      '',
    ].join('\n');
    writeJson(true, { summaries, ratios, totalSeconds });
    writeFileSync(`${base}.md`, md);
    process.stdout.write(`\n${resultsTable(summaries)}\n\n${ratiosTable(ratios)}\n\n`);
    if (notes.length) process.stdout.write(`Notes:\n${notes.map((x) => `- ${x}`).join('\n')}\n\n`);
    if (failedRuns.length) process.stdout.write(`${failedRuns.length} run(s) failed; see ${base}.md\n`);
    process.stdout.write(`Results: ${base}.json, ${base}.md\nTotal runtime: ${(totalSeconds / 60).toFixed(1)} min (${totalSeconds.toFixed(0)} s)\n`);
    return 0;
  } finally {
    for (const p of poolers.values()) await p.stop().catch(() => {});
    await pg.stop().catch(() => {});
  }
}

// On Ctrl-C/SIGTERM the harness's exit hooks kill PostgreSQL and the poolers; results so far are in <timestamp>.json.
main().then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    process.stderr.write(`bench failed after ${elapsed()}: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);

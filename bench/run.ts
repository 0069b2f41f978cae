// Benchmark entry point (`npm run bench`): pgbench workloads through direct PostgreSQL, PgBouncer and pgtide, interleaved,
// medians over rounds; then the idle-client memory of fresh poolers against a bare Node.js socket server.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { onProcessExit, pgBin, pgEnv, pgFileOwner, run, startPostgres, type PgServer } from '../test/harness/postgres.js';
import { BENCH_TLS, CLIENT_ENV, runPgbench, type Workload } from './pgbench.js';
import { makeCerts } from '../test/harness/certs.js';
import { ensurePgbouncer, poolerVersion, REPO_ROOT, startPooler, type AuthUser, type Pooler, type PoolerKind, type PoolerSettings } from './poolers.js';
import { CLK_TCK, cpuTicks, hostCpu, openFilesLimit, sleep, treeCpuTicks } from './procs.js';
import { authMethod, type Login } from './clients.js';
import { measureIdle, type IdleRecord, type IdleTarget } from './idle.js';
import {
  addedLatencyTable, describeMachine, IDLE_LABEL, isSelectOnly, idleTable, machineList, ratiosTable, resultsTable, roundsTable, summarize, summarizeIdle, TARGET_LABEL,
  type RunRecord, type Target,
} from './report.js';

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

const ALL_TARGETS = ['direct', 'pgbouncer', 'pgtide', 'pgtide-busy', 'pgtide-bare', 'pgtide-w2'] as const;
/** pgtide-bare (what transaction-mode safety costs) and pgtide-w2 (workers = 2) only when asked for:
 * BENCH_TARGETS=direct,pgbouncer,pgtide,pgtide-bare,pgtide-w2. pgtide-busy (busy_poll_us) runs the 1-client
 * select-only workloads only (see skipped). */
const DEFAULT_TARGETS = ['direct', 'pgbouncer', 'pgtide', 'pgtide-busy'] as const;
/** `idle` is the idle-client memory phase (not pgbench). */
const ALL_WORKLOADS = ['simple', 'extended', 'prepared', 'connect', 'tpcb', 'idle'] as const;

function envCounts(name: string, def: string): number[] {
  return (process.env[name] || def).split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: bad client count "${s}"`);
    return n;
  });
}

const cfg = {
  seconds: envInt('BENCH_SECONDS', 10, 1),
  rounds: envInt('BENCH_ROUNDS', 3, 1),
  clients: envCounts('BENCH_CLIENTS', '1,10,100,500,1000'),
  connectClients: envInt('BENCH_CONNECT_CLIENTS', 10, 1),
  tpcbClients: envInt('BENCH_TPCB_CLIENTS', 50, 1),
  idleClients: envCounts('BENCH_IDLE_CLIENTS', '1000,10000'),
  idleRounds: envInt('BENCH_IDLE_ROUNDS', envInt('BENCH_ROUNDS', 3, 1), 1),
  targets: envList('BENCH_TARGETS', ALL_TARGETS, DEFAULT_TARGETS) as Target[],
  workloadKinds: envList('BENCH_WORKLOADS', ALL_WORKLOADS),
  poolSize: envInt('BENCH_POOL_SIZE', 20, 1),
  scale: envInt('BENCH_SCALE', 10, 1),
  warmupSeconds: envInt('BENCH_WARMUP', 2, 0),
  samplingRate: envNum('BENCH_SAMPLING', 1, 0.0001, 1),
};

const workloads: Workload[] = [];
for (const kind of cfg.workloadKinds) {
  if (kind === 'idle') continue;
  if (kind === 'connect') workloads.push({ id: `connect-c${cfg.connectClients}`, kind, clients: cfg.connectClients, label: `login rate: connect per xact (-C, SCRAM), ${cfg.connectClients} clients` });
  else if (kind === 'tpcb') workloads.push({ id: `tpcb-c${cfg.tpcbClients}`, kind, clients: cfg.tpcbClients, label: `TPC-B-like, ${cfg.tpcbClients} clients` });
  else for (const c of cfg.clients) workloads.push({ id: `${kind}-c${c}`, kind, clients: c, label: `${kind}, ${c} client${c === 1 ? '' : 's'}` });
}
const idlePhase = cfg.workloadKinds.includes('idle');

/** The md5 user (a plain password in userlist.txt) runs every workload but connect. */
const USER = 'app';
const PASSWORD = 'apppass';
const DB = 'app';
/** The connect workload's user: its userlist.txt entry is the SCRAM secret PostgreSQL stores, so clients do SCRAM. */
const SCRAM_USER = 'app_scram';
const SCRAM_PASSWORD = 'scrampass';
/** Idle-client logins opened at the same time (below PgBouncer's and pgtide's listen_backlog of 128). */
const IDLE_CONCURRENCY = 50;

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

async function checkLogin(port: number, user = USER, password = PASSWORD): Promise<void> {
  await run(pgBin('psql'), ['-X', '-A', '-t', '-q', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', DB, '-c', 'SELECT 1'],
    { env: pgEnv({ PGPASSWORD: password, ...CLIENT_ENV }), timeoutMs: 20_000 });
}

/** The login a workload's pgbench uses. */
const loginFor = (w: Workload) => (w.kind === 'connect' ? { user: SCRAM_USER, password: SCRAM_PASSWORD } : { user: USER, password: PASSWORD });

/** `[a,b,c]` rotated left by k. */
function rotate<T>(xs: T[], k: number): T[] {
  const n = xs.length;
  return n === 0 ? [] : xs.map((_, i) => xs[(i + k) % n]!);
}

// ---------------------------------------------------------------- main

/** CPU counters at one moment: pooler, PostgreSQL tree and pgbench in clock ticks, the host in jiffies. */
interface Snap {
  pooler?: number;
  pg?: number;
  host: { busy: number; total: number };
  pgbench?: number;
}

/** `${target} ${clients}` → seconds pgbench last took to connect that many clients to that target. */
const connSeconds = new Map<string, number>();

/**
 * Seconds added to -T so that transactions run for about BENCH_SECONDS after the clients are connected: 1.25× what
 * connecting took last time (1,000 SCRAM logins to PostgreSQL take seconds), nothing when that was under 0.1 s or
 * with -C (no initial connections).
 */
function connectAllowance(w: Workload, t: Target): number {
  const c = w.kind === 'connect' ? undefined : connSeconds.get(`${t} ${w.clients}`);
  return c === undefined || c < 0.1 ? 0 : Math.ceil(1.25 * c + 0.25);
}

/** pgbench runs in the plan: -M prepared does not run on PgBouncer 1.18 or pgtide-bare (see the loop in main). */
function plannedRuns(targets: readonly Target[]): number {
  return workloads.reduce((n, w) => n + targets.filter((t) => !skipped(w, t)).length, 0) * cfg.rounds;
}

/**
 * A rough length of the whole run, s, from a 2-CPU machine: per pgbench run -T plus 0.8 s, plus connecting and
 * disconnecting its clients (≈ 10 ms per client directly with SCRAM, 1.5 ms through a pooler); per idle measurement
 * 4 s plus 0.4 s per 1,000 clients plus a 1 s pause; a minute for setting up.
 */
function plannedSeconds(targets: readonly Target[]): number {
  let s = 60;
  for (const w of workloads) {
    for (const t of targets) {
      if (skipped(w, t)) continue;
      s += cfg.rounds * (cfg.seconds + 0.8 + (w.kind === 'connect' ? 0 : w.clients * (t === 'direct' ? 0.01 : 0.0015)) + (w.kind === 'tpcb' ? 0.5 : 0));
    }
  }
  const idleProcesses = idleTargetsOf(targets).length;
  if (idlePhase) for (const n of cfg.idleClients) s += cfg.idleRounds * idleProcesses * (5 + (0.4 * n) / 1000);
  return s;
}

/**
 * PgBouncer 1.18 (Debian 12) has no prepared-statement tracking: -M prepared fails in transaction mode, so pgtide's
 * -M prepared is compared with PgBouncer's -M extended instead (report.ts); pgtide-bare does not track them either.
 * pgtide-busy is for the 1-client latency (busy polling is meant for low concurrency): select-only at 1 client only.
 */
const skipped = (w: Workload, t: Target) =>
  (w.kind === 'prepared' && (t === 'pgbouncer' || t === 'pgtide-bare')) ||
  (t === 'pgtide-busy' && (w.clients !== 1 || !isSelectOnly(w)));

/**
 * The idle-memory phase's processes: the bare Node.js server and each pooler target, but pgtide-w2 (its memory is
 * spread over several processes) and pgtide-busy (busy polling does not change what an idle client holds).
 */
function idleTargetsOf(targets: readonly Target[]): IdleTarget[] {
  return ['bare-node', ...targets.filter((t): t is PoolerKind => t !== 'direct' && t !== 'pgtide-w2' && t !== 'pgtide-busy')];
}

async function main(): Promise<number> {
  const resultsDir = join(REPO_ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const base = join(resultsDir, stamp(new Date()));
  const notes: string[] = [];
  say(`plan: ${workloads.length} pgbench workloads × ${cfg.targets.length} targets × ${cfg.rounds} rounds × ${cfg.seconds} s = ${plannedRuns(cfg.targets)} runs` +
    (idlePhase ? `; idle memory: ${cfg.idleClients.join(', ')} clients × ${idleTargetsOf(cfg.targets).length} processes × ${cfg.idleRounds} round(s)` : '') +
    `; ≈ ${Math.round(plannedSeconds(cfg.targets) / 60)} min in all`);

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
    notes.push('BENCH_TLS=1: TLS on both sides: pgbench uses sslmode=require; both poolers have client_tls_sslmode = require and server_tls_sslmode = require, with the same certificate; direct PostgreSQL has ssl = on.' +
      (idlePhase ? ' The idle-memory phase runs its poolers without TLS (its raw clients speak plain TCP).' : ''));
  }
  try {
    pg = await startPostgres({ maxConnections: Math.max(1100, maxClients + 100), extraConf });
  } catch (e) {
    say(`PostgreSQL with max_connections=1100 did not start (${(e as Error).message.split('\n')[0]}); retrying with fewer`);
    pg = await startPostgres({ maxConnections: maxClients + 2 * cfg.poolSize + 30, extraConf });
  }
  const poolers = new Map<PoolerKind, Pooler>();
  try {
    say(`PostgreSQL on 127.0.0.1:${pg.port}`);
    if (workloads.length) {
      say(`pgbench -i -s ${cfg.scale}`);
      await run(pgBin('pgbench'), ['-i', '-q', '-s', String(cfg.scale), '-h', pg.socketDir, '-p', String(pg.port), '-U', USER, DB], { timeoutMs: 900_000 });
      await pg.psql('VACUUM ANALYZE; CHECKPOINT;', DB);
    }
    // The SCRAM user of the connect workload; the poolers get the secret PostgreSQL stores for it
    await pg.psql(`SET password_encryption = 'scram-sha-256';\nCREATE ROLE ${SCRAM_USER} LOGIN PASSWORD '${SCRAM_PASSWORD}';\nGRANT CONNECT ON DATABASE ${DB} TO ${SCRAM_USER};`);
    if (workloads.length) await pg.psql(`GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO ${SCRAM_USER};`, DB);
    const scramSecret = await pg.scramSecret(SCRAM_USER);
    if (!scramSecret.startsWith('SCRAM-SHA-256$')) throw new Error(`pg_authid holds no SCRAM secret for ${SCRAM_USER}: "${scramSecret.slice(0, 20)}…"`);
    const users: AuthUser[] = [{ name: USER, secret: PASSWORD }, { name: SCRAM_USER, secret: scramSecret }];
    const pmPid = postmasterPid(pg);
    const pgVersion = await pg.psql('SHOW server_version').catch(() => undefined);

    const poolerSettings: PoolerSettings = { pgPort: pg.port, poolSize: cfg.poolSize, users, tls: certs ? { key: certs.f('server.key'), cert: certs.f('server.crt') } : undefined };
    /** Per target: the authentication each user is asked for at login (`authMethod`), e.g. { app: 'md5', app_scram: 'SCRAM-SHA-256' }. */
    const clientAuth: Partial<Record<Target, Record<string, string>>> = {};
    for (const t of workloads.length ? targets : []) {
      if (t !== 'direct') {
        try {
          const p = await startPooler(t, poolerSettings);
          poolers.set(t, p);
          await checkLogin(p.port);
          await checkLogin(p.port, SCRAM_USER, SCRAM_PASSWORD);
          const fds = openFilesLimit(p.pid);
          if (fds !== undefined && fds < maxClients + 2 * cfg.poolSize + 50) notes.push(`${TARGET_LABEL[t]}'s open-files limit is ${fds}, below ${maxClients} clients plus its server connections`);
          say(`${TARGET_LABEL[t]} on 127.0.0.1:${p.port} (pid ${p.pid}, open-files limit ${fds})`);
        } catch (e) {
          const msg = `${TARGET_LABEL[t]} could not be started or logged into; left out: ${(e as Error).message}`;
          notes.push(msg);
          say(msg);
          await poolers.get(t)?.stop();
          poolers.delete(t);
          targets = targets.filter((x) => x !== t);
          continue;
        }
      }
      // Which authentication each user gets (the raw probe speaks plain TCP only)
      if (!certs) {
        const port = t === 'direct' ? pg.port : poolers.get(t)!.port;
        clientAuth[t] = { [USER]: await authMethod(port, USER, DB), [SCRAM_USER]: await authMethod(port, SCRAM_USER, DB) };
        say(`${TARGET_LABEL[t]}: client authentication ${Object.entries(clientAuth[t]!).map(([u, m]) => `${u} ${m}`).join(', ')}`);
        if (clientAuth[t]![SCRAM_USER] !== 'SCRAM-SHA-256') notes.push(`**${TARGET_LABEL[t]} asked ${SCRAM_USER} for ${clientAuth[t]![SCRAM_USER]}, not SCRAM-SHA-256**`);
      }
    }
    const portOf = (t: Target) => (t === 'direct' ? pg.port : poolers.get(t)!.port);

    const machine = describeMachine({
      pgbouncer: cfg.targets.includes('pgbouncer') ? poolerVersion('pgbouncer') : 'not benchmarked',
      pgtide: `${poolerVersion('pgtide')} (${gitDescribe()})`,
      postgres: pgVersion ? `PostgreSQL ${pgVersion}` : undefined,
    }, CLK_TCK);

    if (cfg.warmupSeconds > 0 && workloads.length) {
      for (const t of targets) {
        const w: Workload = { id: 'warmup', kind: 'simple', clients: 10, label: 'warm-up' };
        const r = await runPgbench(w, { host: '127.0.0.1', port: portOf(t), user: USER, password: PASSWORD, db: DB, seconds: cfg.warmupSeconds, samplingRate: 0.01 });
        say(`warm-up ${TARGET_LABEL[t]}: ${r.error ?? `${Math.round(r.tps ?? 0)} tps`}`);
      }
    }
    // How long connecting 100 or more clients takes on each target (pgbench -t 1), for the first round's -T
    const manyClients = [...new Set(workloads.filter((w) => w.kind !== 'connect' && w.clients >= 100).map((w) => w.clients))].sort((x, y) => x - y);
    for (const t of manyClients.length ? targets.filter((x) => workloads.some((w) => w.clients >= 100 && !skipped(w, x))) : []) {
      const times: string[] = [];
      for (const clients of manyClients) {
        const w: Workload = { id: 'connect-time', kind: 'simple', clients, label: 'connect time' };
        const r = await runPgbench(w, { host: '127.0.0.1', port: portOf(t), user: USER, password: PASSWORD, db: DB, seconds: 0, transactions: 1, samplingRate: 1 });
        if (r.initialConnMs !== undefined) connSeconds.set(`${t} ${clients}`, r.initialConnMs / 1000);
        times.push(`${clients} in ${r.initialConnMs !== undefined ? `${(r.initialConnMs / 1000).toFixed(1)} s` : `? (${r.error})`}`);
      }
      say(`${TARGET_LABEL[t]}: pgbench connects ${times.join(', ')}`);
    }

    const records: RunRecord[] = [];
    const idleRecords: IdleRecord[] = [];
    const writeJson = (complete: boolean, extra: object = {}) =>
      writeFileSync(`${base}.json`, JSON.stringify({ complete, config: { ...cfg, targets, workloads }, machine, clientAuth, notes, records, idleRecords, ...extra }, null, 2) + '\n');

    let n = 0;
    const total = plannedRuns(targets);
    for (let round = 1; round <= cfg.rounds; round++) {
      for (const [wi, w] of workloads.entries()) {
        const order = rotate(targets, round - 1 + wi);
        for (const [position, target] of order.entries()) {
          if (skipped(w, target)) continue;
          n++;
          const rec = await measure(round, w, target, position);
          records.push(rec);
          const pb = rec.pgbench;
          say(`[${n}/${total}] r${round} ${w.id} ${target}: ` + (rec.error
            ? `ERROR ${rec.error}`
            : `${pb?.tps?.toFixed(0)} tps, avg ${pb?.latencyAvgMs?.toFixed(3)} ms, p99 ${pb?.p99Ms?.toFixed(3)} ms` +
              `${rec.poolerCpuUsPerXact !== undefined ? `, pooler ${rec.poolerCpuUsPerXact.toFixed(1)} µs/xact` : ''}` +
              `, pg ${rec.pgCpuUsPerXact?.toFixed(1)} µs/xact, pgbench ${rec.clientCpuUsPerXact?.toFixed(1)} µs/xact` +
              `, host ${rec.hostBusyPct?.toFixed(0)}% busy, other ${rec.otherCpuPct?.toFixed(0)}%` +
              (pb?.failed || pb?.aborted ? `, ${pb.failed ?? 0} failed transactions, ${pb.aborted} aborted clients` : '') +
              (rec.pgbenchSeconds !== cfg.seconds ? `, -T ${rec.pgbenchSeconds} (connecting took ${((pb?.initialConnMs ?? 0) / 1000).toFixed(1)} s)` : '') +
              `, CPU over ${rec.cpuWindowSeconds !== undefined ? `${rec.cpuWindowSeconds.toFixed(1)} s` : 'the whole run'}`));
          writeJson(false);
          // TPC-B-like updates leave dead rows (autovacuum is off): vacuum them so that every run starts alike
          if (w.kind === 'tpcb') await pg.psql('VACUUM pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history;', DB).catch((e: Error) => say(`VACUUM failed: ${e.message}`));
          await sleep(500);
        }
      }
    }

    // ---- idle-client memory: fresh processes, after the pgbench runs (whose poolers are stopped first)
    // pgtide-w2 is left out: its memory is spread over several processes
    const idleTargets: IdleTarget[] = idlePhase ? idleTargetsOf(targets) : [];
    if (idlePhase) {
      for (const p of poolers.values()) await p.stop();
      const idleSettings: PoolerSettings = { ...poolerSettings, tls: undefined };
      const login: Login = { user: USER, password: PASSWORD, db: DB };
      for (let round = 1; round <= cfg.idleRounds; round++) {
        for (const [ni, clients] of cfg.idleClients.entries()) {
          for (const [position, target] of rotate(idleTargets, round - 1 + ni).entries()) {
            idleRecords.push(await measureIdle(target, { round, clients, position, poolerSettings: idleSettings, login, concurrency: IDLE_CONCURRENCY, say }));
            writeJson(false);
            await sleep(1000); // let the closed sockets go
          }
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
      const snap = (pgbenchPid?: number): Snap => ({
        pooler: poolerPid !== undefined ? poolerCpu(poolerPid) : undefined,
        pg: pmPid !== undefined ? treeCpuTicks(pmPid) : undefined,
        host: hostCpu(),
        pgbench: pgbenchPid !== undefined ? cpuTicks(pgbenchPid) : undefined,
      });
      // -T counts the time pgbench takes to connect its clients: lengthen it by what that took last time
      const seconds = cfg.seconds + connectAllowance(w, target);
      rec.pgbenchSeconds = seconds;
      let a: Snap | undefined;
      let b: Snap | undefined;
      const s0 = snap();
      const start = process.hrtime.bigint();
      const pb = await runPgbench(w, {
        host: '127.0.0.1', port, ...loginFor(w), db: DB, seconds, samplingRate: cfg.samplingRate,
        // with -C there is no connecting phase to leave out, and at a few hundred logins per second pgbench's log
        // buffer fills late: CPU over the whole run then
        probe: w.kind === 'connect' ? undefined : { endAfterMs: seconds * 1000 - 300, onTransactionsStart: (pid) => { a = snap(pid); }, onWindowEnd: (pid) => { b = snap(pid); } },
      });
      rec.wallSeconds = Number(process.hrtime.bigint() - start) / 1e9;
      const s1 = snap();
      rec.pgbench = pb;
      if (pb.initialConnMs !== undefined) connSeconds.set(`${target} ${w.clients}`, pb.initialConnMs / 1000);
      // CPU over the window in which transactions ran (from the first logged transaction to just before -T ends), per
      // transaction completed in it; without a window, over the whole run per transaction
      let from = s0;
      let to = s1;
      let xacts = pb.transactions ?? 0;
      let clientTicks = pb.clientCpuSeconds !== undefined ? pb.clientCpuSeconds * CLK_TCK : undefined;
      if (pb.window && a && b && pb.window.transactions > 0) {
        from = a;
        to = b;
        xacts = pb.window.transactions;
        clientTicks = a.pgbench !== undefined && b.pgbench !== undefined ? b.pgbench - a.pgbench : undefined;
        rec.cpuWindowSeconds = (pb.window.toMs - pb.window.fromMs) / 1000;
      }
      const usPerTick = 1e6 / CLK_TCK;
      // a process tree's reading can go down: a child that exited but is not reaped yet is in no reading (its time
      // moves to its parent's once it is); such a difference is reported as unknown, never as negative CPU
      const d = (x?: number, y?: number) => (x !== undefined && y !== undefined && y >= x ? y - x : undefined);
      const poolerTicks = d(from.pooler, to.pooler);
      const pgTicks = d(from.pg, to.pg);
      if (xacts > 0) {
        if (poolerTicks !== undefined) rec.poolerCpuUsPerXact = (poolerTicks * usPerTick) / xacts;
        if (pgTicks !== undefined) rec.pgCpuUsPerXact = (pgTicks * usPerTick) / xacts;
        if (clientTicks !== undefined) rec.clientCpuUsPerXact = (clientTicks * usPerTick) / xacts;
      }
      if (to.host.total > from.host.total) {
        const hostTotal = to.host.total - from.host.total; // jiffies over all CPUs (USER_HZ = CLK_TCK)
        const hostBusy = to.host.busy - from.host.busy;
        rec.hostBusyPct = (100 * hostBusy) / hostTotal;
        if (pgTicks !== undefined && clientTicks !== undefined) {
          const ours = (poolerTicks ?? 0) + pgTicks + clientTicks;
          rec.otherCpuPct = (100 * (hostBusy - ours)) / hostTotal;
        }
      }
      if (pb.error) rec.error = pb.error;
      if (pooler && !pooler.alive()) rec.error = `${rec.error ? rec.error + '; ' : ''}${TARGET_LABEL[target]} died during the run (${pooler.exitInfo()})`;
      else if (pooler && s1.pooler === undefined) rec.error = `${rec.error ? rec.error + '; ' : ''}could not read the pooler's CPU time`;
      if (rec.error && pooler) rec.poolerLog = pooler.logTail(30);
      return rec;
    }

    // ---- report
    const { summaries, ratios } = summarize(records, workloads, targets, cfg.rounds);
    const idleSummaries = summarizeIdle(idleRecords, cfg.idleClients, idleTargets);
    const totalSeconds = (Date.now() - t0) / 1000;
    const failedRuns = records.filter((r) => r.error);
    const failedIdle = idleRecords.filter((r) => r.error);
    const loads = records.map((r) => r.load1 ?? 0).sort((a, b) => a - b);
    const loadNote = loads.length ? `1-minute load average at run starts: min ${loads[0]!.toFixed(1)}, median ${loads[loads.length >> 1]!.toFixed(1)}, max ${loads[loads.length - 1]!.toFixed(1)} (${machine.logicalCpus} CPUs; the benchmark itself keeps them busy)` : '';
    const authSeen = Object.entries(clientAuth).map(([t, m]) => `${TARGET_LABEL[t as Target]}: ${Object.entries(m).map(([u, a]) => `${u} ${a}`).join(', ')}`).join('; ');
    const latencyTable = addedLatencyTable(summaries, workloads);
    const pgbenchSection = workloads.length ? [
      '## Settings',
      '',
      `- pgbench, \`-T ${cfg.seconds}\`, \`-j min(2, clients)\`: select-only \`-n -S\` with \`-M simple\`, \`extended\` or \`prepared\`; connect = \`-n -S -M simple -C\`; TPC-B-like = \`-n -b tpcb-like -M simple\` (pgbench_* vacuumed after each TPC-B-like run)`,
      `- ${cfg.rounds} round(s), targets interleaved and rotated; medians over rounds; ${cfg.warmupSeconds ? `${cfg.warmupSeconds} s warm-up per target (10 clients, simple), not counted` : 'no warm-up'}`,
      `- pgbench's -T includes connecting its clients: -T = ${cfg.seconds} s + 1.25 × the time connecting took last time (measured before round 1 with \`-t 1\` for 100 clients or more), when that was 0.1 s or more`,
      `- CPU figures cover the window from the first transaction in pgbench's log to 0.3 s before -T ends (not the connecting and disconnecting of the clients), divided by the transactions the log shows completed in it; for connect, the whole run divided by its transactions (every transaction is a login)`,
      `- pgbench -i -s ${cfg.scale}; poolers: pool_mode=transaction, default_pool_size=${cfg.poolSize}, max_client_conn=2000, auth_type=md5, SCRAM to PostgreSQL`,
      `- users: \`${USER}\` (plain password in userlist.txt: md5 with the poolers) runs every workload but connect; \`${SCRAM_USER}\` (userlist.txt holds the SCRAM-SHA-256 secret from pg_authid: SCRAM with the client) runs connect, whose tps is the login rate, new connections per second`,
      ...(authSeen ? [`- authentication each target asked for at login: ${authSeen}`] : []),
      `- p99 from pgbench per-transaction logs (\`-l\`${cfg.samplingRate < 1 ? `, \`--sampling-rate ${cfg.samplingRate}\`` : ', every transaction'})`,
      `- pooler CPU = utime+stime of the pooler process (/proc/<pid>/stat, CLK_TCK ${CLK_TCK}) over that window ÷ transactions (pgtide with workers = 2: the primary plus its workers); PostgreSQL CPU likewise over postmaster + backends (live and exited)`,
      `- pgbench CPU = pgbench's own user+sys time (/proc/<pid>/stat over the window; bash \`times\` when the whole run is used) ÷ transactions; host CPU busy = share of all CPUs busy (/proc/stat); other CPU = host busy minus pooler, PostgreSQL and pgbench, i.e. other work on the machine (negative or small values = noise)`,
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
      ...(latencyTable ? [
        '## Latency added at 1 client (average latency minus direct PostgreSQL\'s)',
        '',
        latencyTable,
        '',
      ] : []),
      '## tps per round (other CPU % in brackets)',
      '',
      roundsTable(summaries, cfg.rounds),
      '',
    ] : [];
    const idleSection = idlePhase ? [
      '## Idle-client memory',
      '',
      `- each measurement starts a fresh process: the poolers with the settings above and max_client_conn = clients + 100${certs ? ' (without TLS)' : ''}; the reference, a bare Node.js socket server (\`node -e\`, \`net.createServer\` that accepts sockets and does nothing)`,
      `- baseline after one login + SELECT 1 (poolers) or one connect (bare Node.js), once the process is idle (≤ 1 CPU tick in two consecutive 500 ms windows); RSS = VmRSS (/proc/<pid>/status), PSS = Pss (/proc/<pid>/smaps_rollup)`,
      `- then N raw clients, ${IDLE_CONCURRENCY} at a time, each completing its login as \`${USER}\` (startup, md5 password, ReadyForQuery; the bare server only accepts); once idle again, memory per client = (after − before) ÷ N`,
      `- while they are held: a fresh login + SELECT 1, and SELECT 1 on one held client; dropped = held clients the process closed`,
      `- ${cfg.idleRounds} round(s), medians over rounds; issue 6 asks for pgtide ≤ 1.5× the bare Node.js socket per idle client`,
      '',
      idleTable(idleSummaries),
      '',
    ] : [];
    const md = [
      `# pgtide benchmark ${stamp(new Date(t0))}`,
      '',
      ...(notes.length ? ['## Notes', '', ...notes.map((x) => `- ${x}`), ''] : []),
      '## Machine',
      '',
      machineList(machine),
      '',
      ...pgbenchSection,
      ...idleSection,
      ...(failedRuns.length
        ? ['## Failed runs', '', ...failedRuns.map((r) => `- round ${r.round}, ${r.workload}, ${r.target}: ${r.error}${r.poolerLog ? `\n\n  \`\`\`\n${r.poolerLog.split('\n').map((l) => '  ' + l).join('\n')}\n  \`\`\`` : ''}`), '']
        : []),
      ...(failedIdle.length
        ? ['## Failed idle-memory measurements', '', ...failedIdle.map((r) => `- round ${r.round}, ${r.clients} clients, ${IDLE_LABEL[r.target]}: ${r.error}`), '']
        : []),
      `Total runtime: ${(totalSeconds / 60).toFixed(1)} min (${totalSeconds.toFixed(0)} s).`,
      '',
    ].join('\n');
    writeJson(true, { summaries, ratios, idleSummaries, totalSeconds });
    writeFileSync(`${base}.md`, md);
    if (workloads.length) process.stdout.write(`\n${resultsTable(summaries)}\n\n${ratiosTable(ratios)}\n\n`);
    if (idlePhase) process.stdout.write(`${idleTable(idleSummaries)}\n\n`);
    if (notes.length) process.stdout.write(`Notes:\n${notes.map((x) => `- ${x}`).join('\n')}\n\n`);
    if (failedRuns.length) process.stdout.write(`${failedRuns.length} run(s) failed; see ${base}.md\n`);
    if (failedIdle.length) process.stdout.write(`${failedIdle.length} idle-memory measurement(s) failed; see ${base}.md\n`);
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

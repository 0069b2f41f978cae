/* `pgtide bench --before-after`: the same web-app load (pgbench -C, a few short transactions per connection) at
 * increasing concurrency straight against PostgreSQL, then through pgtide, with pg_stat_activity and /proc sampled
 * during each run; prints the seed's before/after table from what was measured. */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchArgs } from '../cli/bench-args.js';
import { VERSION_LINE } from '../version.js';
import { PgClient, PgClientError } from './pg-client.js';
import { cleanUpOnInterrupt, findPgbench, killAllPgbench, PgbenchMissing, REQUEST_SCRIPT, runPgbench, TRANSACTIONS_PER_REQUEST, type PgbenchEndpoint } from './pgbench.js';
import { backendMemoryUnreadable, isPostgresBackend, pssKb, rssKb } from './procmem.js';
import { fmt, renderReport, seedRows, type Mode, type StepResult } from './report.js';
import { describeTarget, isLocalAddress, parseTarget, redact, TargetError, type BenchTarget } from './target.js';
import { startTempPgtide, type TempPooler } from './temp-pooler.js';

/** A problem that ends the run with exit code 1 and this message. */
export class BenchError extends Error {}

/** Backends whose PSS is read per sample at most (the mean of these stands for the others). */
const PSS_SAMPLE_MAX = 100;

interface Sample {
  backends: number;
  memoryKb?: number;
  backendPssKb?: number;
  poolerGrowthKb?: number;
}

/** Watches the database's backends (and the pooler's RSS) during one run; keeps the peaks. */
class Sampler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  samples = 0;
  peakBackends: number | undefined;
  peakMemory: Sample | undefined;
  memoryError: string | undefined;

  constructor(
    private readonly monitor: PgClient,
    private readonly baseline: Set<number>,
    /** Why backend memory cannot be read (undefined: it can). */
    private readonly memoryReason: string | undefined,
    /** The pooler: its pid and RSS at start; null = direct; undefined pid = not known. */
    private readonly pooler: { pid: number | undefined; baseRssKb: number | undefined; why?: string } | null,
  ) {}

  start(everyMs: number): void {
    this.timer = setInterval(() => {
      if (!this.running) this.running = this.take().finally(() => (this.running = null));
    }, everyMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  private async take(): Promise<void> {
    let pids: number[];
    try {
      const rows = await this.monitor.query(
        "SELECT pid FROM pg_catalog.pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()");
      pids = rows.map((r) => Number(r[0])).filter((p) => !this.baseline.has(p));
    } catch {
      return; // a lost sample; the monitor's own failure shows elsewhere
    }
    this.samples++;
    const s: Sample = { backends: pids.length };
    this.peakBackends = Math.max(this.peakBackends ?? 0, s.backends);
    if (this.memoryReason !== undefined) return;
    let readKb = 0;
    let read = 0;
    const step = Math.max(1, pids.length / PSS_SAMPLE_MAX);
    for (let i = 0; i < pids.length; i += step) {
      const pid = pids[Math.floor(i)]!;
      const r = pssKb(pid);
      if ('kb' in r && isPostgresBackend(pid)) {
        readKb += r.kb;
        read++;
      }
    }
    s.backendPssKb = read ? (readKb / read) * pids.length : 0;
    if (this.pooler) {
      if (this.pooler.pid === undefined || this.pooler.baseRssKb === undefined) {
        this.memoryError = this.pooler.why ?? "the pooler's pid is not known (give --pooler-pid)";
        return;
      }
      const r = rssKb(this.pooler.pid);
      if (!('kb' in r)) {
        this.memoryError = `cannot read the pooler's RSS (${r.error})`;
        return;
      }
      s.poolerGrowthKb = Math.max(0, r.kb - this.pooler.baseRssKb);
    }
    s.memoryKb = s.backendPssKb + (s.poolerGrowthKb ?? 0);
    if (!this.peakMemory || s.memoryKb > this.peakMemory.memoryKb!) this.peakMemory = s;
  }
}

type Endpoint = PgbenchEndpoint;

/** "cannot connect to" when no connection was made, "cannot log in to" when the server said no. */
function connectFailure(e: unknown): string {
  return e instanceof PgClientError && e.stage === 'connect' ? 'cannot connect to' : 'cannot log in to';
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The start of a bench run: its clock, its progress line on stderr ("[pgtide bench 12 s] …"), and the URL it needs. */
export function benchStart(a: BenchArgs): { t0: number; say: (msg: string) => void; url: string; pgbench: string } {
  const t0 = Date.now();
  const say = (msg: string) => process.stderr.write(`[pgtide bench ${((Date.now() - t0) / 1000).toFixed(0)} s] ${msg}\n`);
  if (!a.url) throw new BenchError('missing POSTGRES_URL (postgres://user:password@host:port/database); see pgtide bench --help');
  try {
    return { t0, say, url: a.url, pgbench: findPgbench(a.pgbench) };
  } catch (e) {
    if (e instanceof PgbenchMissing) throw new BenchError(e.message);
    throw e;
  }
}

/** Run the before/after benchmark; resolves to the exit code. Throws BenchError for problems before measuring. */
export async function runBeforeAfter(a: BenchArgs): Promise<number> {
  const { t0, say, url, pgbench } = benchStart(a);

  let target: BenchTarget;
  let pooledTarget: BenchTarget | undefined;
  try {
    target = parseTarget(url, process.env.PGPASSWORD);
    if (a.pooledUrl) pooledTarget = parseTarget(a.pooledUrl, target.password);
  } catch (e) {
    if (e instanceof TargetError) throw new BenchError(e.message);
    throw e;
  }
  const notes: string[] = [];
  for (const t of [target, pooledTarget]) if (t?.ignored.length) notes.push(`URL parameters ignored: ${t.ignored.join(', ')}`);

  say(`connecting to PostgreSQL at ${describeTarget(target)} as ${target.user}, database ${target.database}`);
  let monitor: PgClient;
  try {
    monitor = await PgClient.connect(target, { applicationName: 'pgtide-bench-monitor' });
  } catch (e) {
    throw new BenchError(`${connectFailure(e)} PostgreSQL at ${describeTarget(target)}: ${(e as Error).message}`);
  }

  let tmp: string | undefined;
  let pooler: TempPooler | undefined;
  const cleanupSync = () => {
    killAllPgbench();
    if (pooler?.alive()) {
      try {
        process.kill(pooler.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  };
  const unhook = cleanUpOnInterrupt('pgbench and the temporary pgtide', cleanupSync);

  try {
    const [info] = await monitor.query(
      "SELECT current_setting('server_version'), current_setting('max_connections'), current_setting('superuser_reserved_connections'), " +
      '(SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_backend_pid())');
    const [version, maxConn, reserved, ssl] = info!;
    const baseline = new Set((await monitor.query(
      "SELECT pid FROM pg_catalog.pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )).map((r) => Number(r[0])));
    const maxConnections = Number(maxConn);
    say(`PostgreSQL ${version}, max_connections ${maxConn} (${reserved} reserved for superusers), ${baseline.size} other connection(s) to ${target.database} before the bench (not counted)`);
    const memoryReason = backendMemoryUnreadable(monitor.backendPid, isLocalAddress(target.host));
    if (memoryReason) say(`memory per connection will be n/a: ${memoryReason}`);
    notes.push(`One monitoring connection (${monitor.tls ? 'TLS' : 'no TLS'}) samples pg_stat_activity during every run; it holds one of PostgreSQL's connection slots.`);
    notes.push(`Direct connections use sslmode=${target.sslmode}${ssl === 't' ? ' and so TLS (the server has ssl on)' : ssl === 'f' ? ' (no TLS in use)' : ''}; ` +
      (pooledTarget ? `connections to the pooler use sslmode=${pooledTarget.sslmode}.` : 'pgbench connects to the temporary pgtide without TLS, and pgtide to PostgreSQL with server_tls_sslmode = ' + target.sslmode + '.'));

    tmp = mkdtempSync(join(tmpdir(), 'pgtide-bench-'));
    say(`work dir ${tmp} (pgbench script and logs${pooledTarget ? '' : ', the temporary pgtide\'s files'}; removed at the end)`);
    const scriptFile = join(tmp, 'request.sql');
    writeFileSync(scriptFile, REQUEST_SCRIPT);
    const threads = a.threads ?? availableParallelism();
    const levels = a.clients;
    const perTarget = levels.length * (a.seconds + 1) + a.warmup;
    say(`plan: ${levels.length} levels (${levels.join(', ')} clients) × 2 targets × ${a.seconds} s${a.warmup ? ` + ${a.warmup} s warm-up per target` : ''} ≈ ${Math.ceil((2 * perTarget) / 60)} min`);

    const steps: StepResult[] = [];
    let n = 0;
    const total = levels.length * 2;
    const everyMs = Math.min(500, Math.max(100, (a.seconds * 1000) / 4));

    const step = async (mode: Mode, clients: number, ep: Endpoint, sampler: Sampler | null, seconds: number, label: string): Promise<StepResult> => {
      sampler?.start(everyMs);
      const run = await runPgbench({
        pgbench, ...ep, clients, threads, seconds, protocol: a.protocol, scriptFile, logDir: tmp!, logPrefix: `${mode}-${clients}-${label === 'warm-up' ? 'w' : 'm'}`,
        onProgress: (p) => say(`  ${label}: ${p.seconds.toFixed(0)}/${seconds} s, ${fmt(p.tps * TRANSACTIONS_PER_REQUEST)} transactions/s`),
      });
      await sampler?.stop();
      const r: StepResult = {
        mode, clients, seconds, ok: run.problem === undefined, problem: run.problem,
        requestsPerSec: run.tps, xactPerSec: run.tps === undefined ? undefined : run.tps * TRANSACTIONS_PER_REQUEST,
        avgConnMs: run.avgConnMs, p50Ms: run.p50Ms, p99Ms: run.p99Ms,
        backendsPeak: sampler?.peakBackends, samples: sampler?.samples ?? 0,
      };
      if (sampler) {
        if (sampler.peakMemory?.memoryKb !== undefined && !sampler.memoryError) {
          r.memoryKb = sampler.peakMemory.memoryKb;
          r.memoryBackends = sampler.peakMemory.backends;
          r.backendPssKb = sampler.peakMemory.backendPssKb;
          r.poolerGrowthKb = sampler.peakMemory.poolerGrowthKb;
        } else r.memoryNote = memoryReason ?? sampler.memoryError ?? 'no sample taken during the run';
      }
      return r;
    };
    const report = (r: StepResult) => {
      const mem = r.memoryKb !== undefined ? `${fmt(r.memoryKb / 1024 / r.clients)} MB/connection` : 'memory n/a';
      say(`  → ${r.xactPerSec !== undefined ? fmt(r.xactPerSec) : 'n/a'} transactions/s, setup ${r.avgConnMs !== undefined ? fmt(r.avgConnMs) : 'n/a'} ms, ` +
        `p99 ${r.p99Ms !== undefined ? fmt(r.p99Ms) : 'n/a'} ms, ${r.backendsPeak ?? 'n/a'} backends, ${mem}${r.ok ? '' : `; ERRORS: ${r.problem}`}`);
    };

    // ---- before: straight to PostgreSQL
    const direct: Endpoint = { host: target.host, port: target.port, user: target.user, password: target.password, database: target.database, sslmode: target.sslmode };
    if (a.warmup > 0) {
      say(`warm-up, direct, ${levels[0]} clients, ${a.warmup} s (not reported)`);
      await step('direct', levels[0]!, direct, null, a.warmup, 'warm-up');
    }
    let directFailedAt: number | undefined;
    for (const clients of levels) {
      n++;
      if (directFailedAt !== undefined && clients > a.afterClients) {
        say(`[${n}/${total}] direct, ${clients} clients: skipped (direct already had errors at ${directFailedAt} clients)`);
        continue;
      }
      say(`[${n}/${total}] direct, ${clients} clients, ${a.seconds} s`);
      const r = await step('direct', clients, direct, new Sampler(monitor, baseline, memoryReason, null), a.seconds, `direct ${clients}`);
      steps.push(r);
      report(r);
      if (!r.ok) directFailedAt ??= clients;
      await sleep(500);
    }

    // ---- after: through pgtide (a temporary one, or the pooler of --pooled-url)
    let pooled: Endpoint;
    let poolerInfo: { pid: number | undefined; baseRssKb: number | undefined; why?: string } = { pid: undefined, baseRssKb: undefined };
    let pooledDesc: string;
    if (pooledTarget) {
      pooled = { host: pooledTarget.host, port: pooledTarget.port, user: pooledTarget.user, password: pooledTarget.password, database: pooledTarget.database, sslmode: pooledTarget.sslmode };
      pooledDesc = `pgbench → the pooler at ${describeTarget(pooledTarget)} (${redact(a.pooledUrl!)}) → PostgreSQL`;
      let why: string | undefined;
      if (a.poolerPid === undefined) why = "the pooler's pid is not known (give --pooler-pid)";
      else if (!('kb' in rssKb(a.poolerPid))) why = `cannot read /proc/${a.poolerPid}/status (${(rssKb(a.poolerPid) as { error: string }).error})`;
      const base = a.poolerPid !== undefined ? rssKb(a.poolerPid) : undefined;
      poolerInfo = { pid: a.poolerPid, baseRssKb: base && 'kb' in base ? base.kb : undefined, why };
    } else {
      say(`starting a temporary pgtide (pool_mode = transaction, default_pool_size = ${a.poolSize}, max_client_conn = 2000, auth_type = ${a.authType})`);
      try {
        pooler = await startTempPgtide(tmp, target, { poolSize: a.poolSize, authType: a.authType });
      } catch (e) {
        throw new BenchError((e as Error).message);
      }
      pooled = { host: pooler.host, port: pooler.port, user: target.user, password: target.password, database: target.database, sslmode: 'disable' };
      pooledDesc = `pgbench → a temporary pgtide on 127.0.0.1:${pooler.port} (pool_mode = transaction, default_pool_size = ${a.poolSize}, ` +
        `min_pool_size = ${Math.min(5, a.poolSize)}, reserve_pool_size = 5, reserve_pool_timeout = 3, max_client_conn = 2000, clients log in with ${a.authType}) → the same PostgreSQL`;
    }
    const pooledAsTarget: BenchTarget = { ...pooled, sslmode: pooled.sslmode as BenchTarget['sslmode'], ignored: [] };
    try {
      const probe = await PgClient.connect(pooledAsTarget, { applicationName: 'pgtide-bench-check' });
      await probe.query('SELECT 1');
      probe.close();
    } catch (e) {
      const log = pooler ? `\n--- pgtide log ---\n${pooler.logTail(20)}` : '';
      throw new BenchError(`${connectFailure(e)} the pooler at ${describeTarget(pooledAsTarget)}: ${(e as Error).message}${log}`);
    }
    if (pooler) {
      await sleep(300); // let min_pool_size connections open before the RSS baseline
      const base = rssKb(pooler.pid);
      poolerInfo = { pid: pooler.pid, baseRssKb: 'kb' in base ? base.kb : undefined, why: 'kb' in base ? undefined : `cannot read pgtide's RSS (${base.error})` };
      say(`temporary pgtide on 127.0.0.1:${pooler.port} (pid ${pooler.pid}${'kb' in base ? `, RSS ${fmt(base.kb / 1024)} MB` : ''})`);
    }
    if (a.warmup > 0) {
      say(`warm-up, pooled, ${levels[0]} clients, ${a.warmup} s (not reported)`);
      await step('pooled', levels[0]!, pooled, null, a.warmup, 'warm-up');
    }
    for (const clients of levels) {
      n++;
      if (pooler && !pooler.alive()) throw new BenchError(`the temporary pgtide exited (${pooler.exitInfo()}):\n${pooler.logTail(20)}`);
      say(`[${n}/${total}] pooled, ${clients} clients, ${a.seconds} s`);
      const r = await step('pooled', clients, pooled, new Sampler(monitor, baseline, memoryReason, poolerInfo), a.seconds, `pooled ${clients}`);
      steps.push(r);
      report(r);
      await sleep(500);
    }

    // ---- the report
    const directDesc = `pgbench → PostgreSQL at ${describeTarget(target)} (${redact(url)})`;
    if (a.protocol !== 'simple') notes.push(`pgbench -M ${a.protocol}.`);
    notes.push(`pgbench runs on this machine with -j ${threads} (threads)${a.threads === undefined ? ', one per CPU' : ''}; it competes for the CPUs with PostgreSQL and the pooler. ` +
      'pgbench opens connections synchronously within each thread, so with few threads a slow connection also holds up the other clients of its thread; ' +
      'more threads (--threads) mostly raise the throughput through the pooler and the direct connection setup time (more connections start at once).');
    const meta = {
      date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      pgtide: VERSION_LINE,
      direct: directDesc,
      pooled: pooledDesc,
      postgres: `PostgreSQL ${version}`,
      maxConnections,
      levels,
      seconds: a.seconds,
      afterClients: a.afterClients,
      transactionsPerRequest: TRANSACTIONS_PER_REQUEST,
      protocol: a.protocol,
      notes,
    };
    const rep = renderReport(steps, meta);
    process.stdout.write(rep.markdown);
    if (a.json) {
      const tables: Record<string, unknown> = {};
      for (const c of new Set([rep.comparisonClients, a.afterClients])) {
        if (c === undefined || !steps.some((s) => s.clients === c)) continue;
        const tnotes: string[] = [];
        tables[String(c)] = { rows: seedRows(steps, c, levels, tnotes), notes: tnotes };
      }
      const json = {
        tool: 'pgtide bench --before-after',
        ...meta,
        settings: { clients: levels, seconds: a.seconds, warmup: a.warmup, poolSize: a.poolSize, authType: a.authType, protocol: a.protocol, threads, pgbench },
        script: REQUEST_SCRIPT,
        comparisonClients: rep.comparisonClients,
        tables,
        steps,
      };
      writeFileSync(a.json, JSON.stringify(json, null, 2) + '\n');
      say(`raw figures written to ${a.json}`);
    }
    say(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    return 0;
  } catch (e) {
    if (e instanceof PgClientError) throw new BenchError(`monitoring connection: ${e.message}`);
    throw e;
  } finally {
    monitor.close();
    if (pooler) await pooler.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    tmp = undefined;
    unhook();
  }
}

/* `pgtide bench --compare`: the same short read-only transactions (pgbench -n, a select-only style script) with each
 * protocol and client count against PostgreSQL directly, a temporary PgBouncer and a temporary pgtide with the same
 * settings, interleaved in rounds; the CPU of the pooler and of PostgreSQL read from /proc around every run. */

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem, type as osType } from 'node:os';
import { join } from 'node:path';
import type { BenchArgs, BenchProtocol } from '../cli/bench-args.js';
import { VERSION_LINE } from '../version.js';
import { BenchError, benchStart, sleep } from './before-after.js';
import { renderCompare, TARGET_NAMES, type CompareRun, type CompareTarget } from './compare-report.js';
import { PgClient, PgClientError } from './pg-client.js';
import { cleanUpOnInterrupt, countIn, killAllPgbench, runPgbench, SELECT_SCRIPT, type PgbenchEndpoint, type PgbenchRun } from './pgbench.js';
import { findPgbouncer, pgbouncerDir, pgbouncerUser, pgbouncerVersion, startTempPgbouncer, tracksPrepared, type RunAs } from './pgbouncer.js';
import { CLK_TCK, cpuTicks, parentPid, treeCpuTicks } from './proccpu.js';
import { isPostgresBackend } from './procmem.js';
import { fmt } from './report.js';
import { describeTarget, isLocalAddress, parseTarget, redact, TargetError, type BenchTarget } from './target.js';
import { startTempPgtide, type TempPooler } from './temp-pooler.js';

/** How often the CPU times are read during a run. */
const SAMPLE_MS = 200;

interface CpuSample {
  t: number;
  pooler?: number;
  postgres?: number;
  hostBusy: number;
  hostTotal: number;
}

/** Busy and total jiffies of the whole machine (/proc/stat: busy = total − idle − iowait). */
function hostCpu(): { busy: number; total: number } {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - v[3]! - v[4]!, total };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

/** Reads the pooler's and PostgreSQL's CPU times every SAMPLE_MS while a run lasts. */
class CpuSampler {
  readonly samples: CpuSample[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly poolerPid: number | undefined, private readonly postmasterPid: number | undefined) {}

  private take(): void {
    const h = hostCpu();
    // CPU time only grows: a lower reading of the tree missed a backend that had exited and was not reaped yet (its
    // time is then in neither its own stat nor the postmaster's), so the highest reading so far stands
    let postgres = this.postmasterPid === undefined ? undefined : treeCpuTicks(this.postmasterPid);
    const last = this.samples.length > 0 ? this.samples[this.samples.length - 1]!.postgres : undefined;
    if (postgres !== undefined && last !== undefined && postgres < last) postgres = last;
    this.samples.push({
      t: Date.now(),
      pooler: this.poolerPid === undefined ? undefined : cpuTicks(this.poolerPid),
      postgres,
      hostBusy: h.busy,
      hostTotal: h.total,
    });
  }

  start(): void {
    this.take();
    this.timer = setInterval(() => this.take(), SAMPLE_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.take();
  }
}

/**
 * CPU per transaction from the samples and the transactions' completion times: over the window from the first sample
 * after the first transaction to the last sample before the last one (the clients are connected and busy throughout),
 * divided by the transactions completed in it; when the run is too short for such a window, over the whole run.
 */
export function cpuPerTransaction(samples: CpuSample[], ends: Float64Array, poolerPid: boolean): Pick<CompareRun, 'cpuWindowS' | 'cpuTransactions' | 'cpuWholeRun' | 'poolerCpuUs' | 'postgresCpuUs' | 'hostBusyPct'> {
  if (ends.length === 0 || samples.length < 2) return {};
  const first = ends[0]!;
  const last = ends[ends.length - 1]!;
  const inside = samples.filter((s) => s.t >= first && s.t <= last);
  let a = inside[0];
  let b = inside[inside.length - 1];
  let xacts = a && b ? countIn(ends, a.t, b.t) : 0;
  let whole = false;
  if (!a || !b || b.t - a.t < SAMPLE_MS / 2 || xacts === 0) {
    a = samples[0]!;
    b = samples[samples.length - 1]!;
    xacts = ends.length;
    whole = true;
  }
  const us = (x: number | undefined, y: number | undefined) => (x === undefined || y === undefined ? undefined : ((y - x) / CLK_TCK) * 1e6 / xacts);
  const busy = b.hostTotal > a.hostTotal ? ((b.hostBusy - a.hostBusy) / (b.hostTotal - a.hostTotal)) * 100 : undefined;
  return {
    cpuWindowS: (b.t - a.t) / 1000,
    cpuTransactions: xacts,
    cpuWholeRun: whole || undefined,
    poolerCpuUs: poolerPid ? us(a.pooler, b.pooler) : undefined,
    postgresCpuUs: us(a.postgres, b.postgres),
    hostBusyPct: busy !== undefined && Number.isFinite(busy) ? busy : undefined,
  };
}

/** The targets of round `round` (0-based) for combination `combo`: rotated, so that none always goes first. */
export function targetOrder(targets: CompareTarget[], round: number, combo: number): CompareTarget[] {
  const k = (round + combo) % targets.length;
  return [...targets.slice(k), ...targets.slice(0, k)];
}

function connectFailure(e: unknown): string {
  return e instanceof PgClientError && e.stage === 'connect' ? 'cannot connect to' : 'cannot log in to';
}

function firstLine(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0]!.trim();
  } catch {
    return undefined;
  }
}

/** Run the side-by-side benchmark; resolves to the exit code. Throws BenchError for problems before measuring. */
export async function runCompare(a: BenchArgs): Promise<number> {
  const { t0, say, url, pgbench } = benchStart(a);
  let target: BenchTarget;
  try {
    target = parseTarget(url, process.env.PGPASSWORD);
  } catch (e) {
    if (e instanceof TargetError) throw new BenchError(e.message);
    throw e;
  }
  const notes: string[] = [];
  if (target.ignored.length) notes.push(`URL parameters ignored: ${target.ignored.join(', ')}`);

  // PgBouncer: found, or why not
  let bouncerBin: string | undefined;
  let bouncerUser: RunAs | null = null;
  let bouncerMissing: string | undefined;
  if (a.noPgbouncer) bouncerMissing = 'left out (--no-pgbouncer)';
  else {
    try {
      bouncerBin = findPgbouncer(a.pgbouncer);
    } catch (e) {
      throw new BenchError((e as Error).message);
    }
    if (!bouncerBin) bouncerMissing = 'not found on PATH nor in /usr/sbin, /usr/bin, /usr/local/bin (install PgBouncer, or give --pgbouncer PATH)';
    else {
      const who = pgbouncerUser();
      if (who === undefined) {
        bouncerMissing = 'PgBouncer refuses to run as root, and there is neither a postgres nor a nobody user to run it as';
        bouncerBin = undefined;
      } else bouncerUser = who;
    }
  }
  const bouncerVersion = bouncerBin ? pgbouncerVersion(bouncerBin) : undefined;
  if (bouncerBin && !bouncerVersion) notes.push(`\`${bouncerBin} --version\` did not answer; its version is unknown.`);
  const bouncerPrepared = bouncerVersion ? tracksPrepared(bouncerVersion.version) : false;

  say(`connecting to PostgreSQL at ${describeTarget(target)} as ${target.user}, database ${target.database}`);
  let version: string;
  let ssl: string | null;
  let postmaster: number | undefined;
  let pgCpuWhy: string | undefined;
  try {
    const monitor = await PgClient.connect(target, { applicationName: 'pgtide-bench-compare' });
    try {
      const [info] = await monitor.query("SELECT current_setting('server_version'), (SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_backend_pid())");
      version = String(info![0]);
      ssl = info![1] ?? null;
      // while the backend is there: it leads to the postmaster
      if (!isLocalAddress(target.host)) pgCpuWhy = 'PostgreSQL is not on this machine (the URL names neither a loopback address nor a unix socket)';
      else if (!isPostgresBackend(monitor.backendPid)) pgCpuWhy = `PostgreSQL's backend pid ${monitor.backendPid} is not a postgres process in this machine's /proc (another pid namespace, e.g. a container?)`;
      else {
        postmaster = parentPid(monitor.backendPid);
        if (postmaster === undefined || treeCpuTicks(postmaster) === undefined) {
          pgCpuWhy = `cannot read /proc/${postmaster ?? '?'}/stat of PostgreSQL's postmaster`;
          postmaster = undefined;
        }
      }
    } finally {
      monitor.close();
    }
  } catch (e) {
    throw new BenchError(`${connectFailure(e)} PostgreSQL at ${describeTarget(target)}: ${(e as Error).message}`);
  }
  say(`PostgreSQL ${version}; its CPU ${pgCpuWhy ? `will be n/a: ${pgCpuWhy}` : `is read from the postmaster (pid ${postmaster}) and its backends`}`);

  let tmp: string | undefined;
  let bouncerDir: string | undefined;
  const poolers: TempPooler[] = [];
  const cleanupSync = () => {
    killAllPgbench();
    for (const p of poolers) {
      try {
        if (p.alive()) process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const d of [tmp, bouncerDir]) if (d) rmSync(d, { recursive: true, force: true });
  };
  const unhook = cleanUpOnInterrupt('pgbench and the temporary poolers', cleanupSync);

  try {
    tmp = mkdtempSync(join(tmpdir(), 'pgtide-bench-'));
    say(`work dir ${tmp} (pgbench script and logs, the temporary pgtide's files; removed at the end)`);
    const scriptFile = join(tmp, 'select.sql');
    writeFileSync(scriptFile, SELECT_SCRIPT);
    const threads = a.threads ?? availableParallelism();
    const settings = { poolSize: a.poolSize, authType: a.authType };
    // the same extra lines for both poolers: statistics lines off; prepared statements tracked where PgBouncer can
    const extra = `log_stats = 0\n${bouncerPrepared ? 'max_prepared_statements = 200\n' : ''}`;
    const iniDesc = `pool_mode = transaction, default_pool_size = ${a.poolSize}, min_pool_size = ${Math.min(5, a.poolSize)}, reserve_pool_size = 5, ` +
      `reserve_pool_timeout = 3, max_client_conn = 2000, auth_type = ${a.authType}, server_tls_sslmode = ${target.sslmode}${bouncerPrepared ? ', max_prepared_statements = 200' : ''}`;

    const endpoints = new Map<CompareTarget, { ep: PgbenchEndpoint; pooler?: TempPooler; desc: string }>();
    endpoints.set('direct', {
      ep: { host: target.host, port: target.port, user: target.user, password: target.password, database: target.database, sslmode: target.sslmode },
      desc: `pgbench → PostgreSQL at ${describeTarget(target)} (${redact(url)}), sslmode=${target.sslmode}${ssl === 't' ? ' (TLS in use)' : ssl === 'f' ? ' (no TLS in use)' : ''}`,
    });
    const probe = async (name: string, p: TempPooler) => {
      const t: BenchTarget = { host: p.host, port: p.port, user: target.user, password: target.password, database: target.database, sslmode: 'disable', ignored: [] };
      try {
        const c = await PgClient.connect(t, { applicationName: 'pgtide-bench-check' });
        await c.query('SELECT 1');
        c.close();
      } catch (e) {
        throw new Error(`${connectFailure(e)} the temporary ${name} at ${describeTarget(t)}: ${(e as Error).message}\n--- ${name} log ---\n${p.logTail(20)}`);
      }
    };

    if (bouncerBin) {
      say(`starting a temporary PgBouncer (${bouncerBin}${bouncerVersion ? `, ${bouncerVersion.line}` : ''}${bouncerUser ? `, as ${bouncerUser.user}: PgBouncer refuses to run as root` : ''})`);
      try {
        bouncerDir = pgbouncerDir(bouncerUser);
        const p = await startTempPgbouncer(bouncerBin, bouncerDir, bouncerUser, target, settings, extra);
        poolers.push(p);
        await probe('PgBouncer', p);
        endpoints.set('pgbouncer', {
          ep: { host: p.host, port: p.port, user: target.user, password: target.password, database: target.database, sslmode: 'disable' },
          pooler: p,
          desc: `pgbench → a temporary PgBouncer (${bouncerVersion?.line ?? bouncerBin}${bouncerUser ? `, run as ${bouncerUser.user}` : ''}) on 127.0.0.1:${p.port} → the same PostgreSQL`,
        });
        say(`temporary PgBouncer on 127.0.0.1:${p.port} (pid ${p.pid}; dir ${bouncerDir})`);
      } catch (e) {
        bouncerMissing = `could not be started: ${(e as Error).message}`;
        say(`PgBouncer left out: ${bouncerMissing}`);
        await Promise.all(poolers.splice(0).map((p) => p.stop()));
      }
    }
    if (bouncerMissing) notes.push(`**PgBouncer ${bouncerMissing.split('\n')[0]}**: only direct and pgtide were compared.`);

    say(`starting a temporary pgtide (${iniDesc})`);
    let pgtide: TempPooler;
    try {
      pgtide = await startTempPgtide(tmp, target, settings, extra);
      poolers.push(pgtide);
      await probe('pgtide', pgtide);
    } catch (e) {
      throw new BenchError((e as Error).message);
    }
    endpoints.set('pgtide', {
      ep: { host: pgtide.host, port: pgtide.port, user: target.user, password: target.password, database: target.database, sslmode: 'disable' },
      pooler: pgtide,
      desc: `pgbench → a temporary pgtide (${VERSION_LINE}, this package's dist/cli.js) on 127.0.0.1:${pgtide.port} → the same PostgreSQL`,
    });
    say(`temporary pgtide on 127.0.0.1:${pgtide.port} (pid ${pgtide.pid})`);

    const targets = (['direct', 'pgbouncer', 'pgtide'] as const).filter((t) => endpoints.has(t));
    const modeFor = (t: CompareTarget, protocol: BenchProtocol): BenchProtocol =>
      t === 'pgbouncer' && protocol === 'prepared' && !bouncerPrepared ? 'extended' : protocol;
    if (endpoints.has('pgbouncer') && !bouncerPrepared && a.protocols.includes('prepared')) {
      notes.push(`PgBouncer ${bouncerVersion?.line.replace(/^PgBouncer\s*/, '') ?? '(version unknown)'} does not track protocol-level prepared statements in transaction pooling ` +
        '(max_prepared_statements came in PgBouncer 1.21), so `pgbench -M prepared` fails through it; for the prepared workload PgBouncer runs `-M extended` instead ' +
        '(the same statements, parsed anew every time), as marked.');
    }

    const combos = a.protocols.flatMap((protocol) => a.clients.map((clients) => ({ protocol, clients })));
    const total = a.rounds * combos.length * targets.length;
    const perRun = a.seconds + 0.7;
    const eta = total * perRun + targets.length * a.warmup;
    const estimate = eta < 90 ? `${Math.ceil(eta)} s` : `${Math.ceil(eta / 60)} min`;
    say(`plan: ${a.rounds} round(s) × ${combos.length} workload(s) (${a.protocols.join(', ')} × ${a.clients.join(', ')} clients) × ${targets.length} targets ` +
      `(${targets.map((t) => TARGET_NAMES[t]).join(', ')}) × ${a.seconds} s${a.warmup ? ` + ${a.warmup} s warm-up per target` : ''} ≈ ${estimate}`);

    let runNo = 0;
    const runOnce = async (t: CompareTarget, protocol: BenchProtocol, clients: number, seconds: number, label: string): Promise<PgbenchRun & { cpu: ReturnType<typeof cpuPerTransaction> }> => {
      const e = endpoints.get(t)!;
      const logDir = join(tmp!, `run-${++runNo}`);
      mkdirSync(logDir);
      const sampler = new CpuSampler(e.pooler?.pid, postmaster);
      let run: PgbenchRun;
      try {
        sampler.start();
        run = await runPgbench({
          pgbench, ...e.ep, clients, threads, seconds, protocol: modeFor(t, protocol), reconnect: false, keepEnds: true,
          scriptFile, logDir, logPrefix: 'pgbench',
          onProgress: (p) => say(`  ${label}: ${p.seconds.toFixed(0)}/${seconds} s, ${fmt(p.tps)} tps`),
        });
      } finally {
        sampler.stop();
        rmSync(logDir, { recursive: true, force: true });
      }
      const cpu = cpuPerTransaction(sampler.samples, run.ends ?? new Float64Array(0), e.pooler !== undefined);
      delete run.ends;
      return { ...run, cpu };
    };

    if (a.warmup > 0) {
      for (const t of targets) {
        say(`warm-up, ${TARGET_NAMES[t]}, ${a.protocols[0]}, ${a.clients[0]} clients, ${a.warmup} s (not reported)`);
        await runOnce(t, a.protocols[0]!, a.clients[0]!, a.warmup, 'warm-up');
      }
    }

    const runs: CompareRun[] = [];
    let n = 0;
    for (let round = 0; round < a.rounds; round++) {
      for (const [ci, { protocol, clients }] of combos.entries()) {
        for (const t of targetOrder(targets, round, ci)) {
          n++;
          const pooler = endpoints.get(t)!.pooler;
          const mode = modeFor(t, protocol);
          const base: CompareRun = { round: round + 1, target: t, protocol, mode, clients, seconds: a.seconds, ok: false };
          if (pooler && !pooler.alive()) {
            if (t === 'pgtide') throw new BenchError(`the temporary pgtide exited (${pooler.exitInfo()}):\n${pooler.logTail(20)}`);
            runs.push({ ...base, problem: `PgBouncer exited (${pooler.exitInfo()}): ${pooler.logTail(3).replace(/\n/g, ' | ')}` });
            say(`[${n}/${total}] round ${round + 1}, ${protocol}, ${clients} clients, ${TARGET_NAMES[t]}: skipped, PgBouncer exited`);
            continue;
          }
          say(`[${n}/${total}] round ${round + 1}, ${protocol}${mode !== protocol ? ` (-M ${mode})` : ''}, ${clients} clients, ${TARGET_NAMES[t]}, ${a.seconds} s`);
          const r = await runOnce(t, protocol, clients, a.seconds, `${TARGET_NAMES[t]} ${clients}`);
          const rec: CompareRun = {
            ...base, ok: r.problem === undefined, problem: r.problem, tps: r.tpsNoConnect ?? r.tps, transactions: r.logged,
            latencyAvgMs: r.latencyAvgMs, p99Ms: r.p99Ms, ...r.cpu,
          };
          runs.push(rec);
          const o = (v: number | undefined, unit = '') => (v === undefined ? 'n/a' : `${fmt(v)}${unit}`);
          say(`  → ${o(rec.tps)} tps, latency ${o(rec.latencyAvgMs, ' ms')}, p99 ${o(rec.p99Ms, ' ms')}` +
            `${pooler ? `, ${TARGET_NAMES[t]} ${o(rec.poolerCpuUs, ' µs')}/xact` : ''}, PostgreSQL ${o(rec.postgresCpuUs, ' µs')}/xact${rec.ok ? '' : `; ERRORS: ${rec.problem}`}`);
          await sleep(200);
        }
      }
    }

    // ---- the report
    const cpu0 = cpus()[0];
    const machine = `${cpu0?.model.trim() ?? 'unknown CPU'}, ${availableParallelism()} CPUs, ${fmt(totalmem() / 2 ** 30)} GiB; ${osType()} ${release()}; ` +
      `Node.js ${process.version}; load average at the end ${loadavg().map((l) => l.toFixed(2)).join(', ')}.`;
    const pgbenchVersion = firstLine(pgbench, ['--version']);
    const versions = [`PostgreSQL ${version}`, pgbenchVersion ?? 'pgbench (version unknown)', endpoints.has('pgbouncer') ? (bouncerVersion?.line ?? `PgBouncer at ${bouncerBin}`) : undefined, VERSION_LINE]
      .filter(Boolean).join('; ') + '.';
    const settingsLine = `${a.protocols.join(', ')} (pgbench -M) × ${a.clients.join(', ')} clients; ${a.rounds} round(s) of ${a.seconds} s per run, ` +
      `the targets taking turns within each round (the order rotated from one workload to the next)${a.warmup ? `, after a ${a.warmup} s warm-up per target` : ''}; ` +
      `\`pgbench -n -f select.sql -M <mode> -c <clients> -j ${threads}\` (-j at most the clients) with this script:\n\n\`\`\`\n${SELECT_SCRIPT}\`\`\`\n\n` +
      `Both poolers read the same pgbouncer.ini: ${iniDesc}; pgbench logs in to them with ${a.authType} as ${target.user}, without TLS.`;
    const cpu = [
      `**pooler CPU per xact**: utime+stime of the pooler process (/proc/<pid>/stat, CLK_TCK ${CLK_TCK}; PgBouncer${bouncerUser ? ` under runuser: the pgbouncer process itself` : ''}; pgtide: its node process, all threads), ` +
      `read every ${SAMPLE_MS} ms; over the window from the first reading after the first transaction in pgbench's log to the last reading before its last one (connecting and disconnecting the clients left out), ` +
      'divided by the transactions the log shows completed in that window. A run too short for such a window uses the whole run.',
      pgCpuWhy
        ? `**PostgreSQL CPU per xact**: n/a: ${pgCpuWhy}.`
        : `**PostgreSQL CPU per xact**: the same over the postmaster (pid ${postmaster}): its own time, its exited children's, and its live backends' (all of PostgreSQL, not only this database).`,
    ];
    const meta = {
      date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      machine,
      versions,
      targets: targets.map((t) => ({ target: t, desc: endpoints.get(t)!.desc })),
      settings: settingsLine,
      rounds: a.rounds,
      cpu,
      notes: [
        ...notes,
        `pgbench, PostgreSQL and the poolers share this machine's ${availableParallelism()} CPUs: tps reflects the CPU all of them spend per transaction, and anything else running on the machine (see host CPU busy).`,
      ],
    };
    const rep = renderCompare(runs, a.protocols, a.clients, meta);
    process.stdout.write(rep.markdown);
    if (a.json) {
      const json = {
        tool: 'pgtide bench --compare',
        date: meta.date,
        machine: meta.machine,
        versions: meta.versions,
        targets: meta.targets,
        cpuMethod: meta.cpu,
        notes: meta.notes,
        settings: {
          protocols: a.protocols, clients: a.clients, rounds: a.rounds, seconds: a.seconds, warmup: a.warmup, poolSize: a.poolSize, authType: a.authType,
          threads, pgbench, pgbouncer: endpoints.has('pgbouncer') ? bouncerBin : null, pgbouncerMissing: bouncerMissing ?? null, clkTck: CLK_TCK, sampleMs: SAMPLE_MS,
        },
        script: SELECT_SCRIPT,
        medians: rep.medians,
        ratios: rep.ratios,
        runs,
      };
      writeFileSync(a.json, JSON.stringify(json, null, 2) + '\n');
      say(`raw figures written to ${a.json}`);
    }
    say(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    return 0;
  } finally {
    await Promise.all(poolers.map((p) => p.stop()));
    for (const d of [tmp, bouncerDir]) if (d) rmSync(d, { recursive: true, force: true });
    tmp = undefined;
    bouncerDir = undefined;
    unhook();
  }
}

/* pgtide bench --compare, the pure parts: its arguments, pgbench's tps without connection time and the completion
 * times in its logs, CPU per transaction over the window, the targets' turns, finding PgBouncer, the ini both poolers
 * read (by pgtide's own loader), and the medians, ratios and Markdown of the report. */

import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { UsageError } from '../../src/cli/args.js';
import { COMPARE_LEVELS, DEFAULT_LEVELS, parseBenchArgs } from '../../src/cli/bench-args.js';
import { parseConfigText } from '../../src/config/loader.js';
import { cpuPerTransaction, targetOrder } from '../../src/bench/compare.js';
import { median, medians, ratios, renderCompare, type CompareRun } from '../../src/bench/compare-report.js';
import { countIn, parseSummary, readLog } from '../../src/bench/pgbench.js';
import { findPgbouncer, tracksPrepared } from '../../src/bench/pgbouncer.js';
import { CLK_TCK } from '../../src/bench/proccpu.js';
import { parseTarget } from '../../src/bench/target.js';
import { poolerIni, userlistLine } from '../../src/bench/temp-pooler.js';

const tmp = mkdtempSync(join(tmpdir(), 'pgtide-bench-compare-unit-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('pgtide bench --compare arguments', () => {
  it('defaults: 1, 10 and 100 clients, the three protocols, 3 rounds of 10 s, PgBouncer looked for', () => {
    const a = parseBenchArgs(['--compare', 'postgres://u:p@h/d']);
    assert.equal(a.compare, true);
    assert.equal(a.beforeAfter, false);
    assert.deepEqual(a.clients, COMPARE_LEVELS);
    assert.deepEqual(COMPARE_LEVELS, [1, 10, 100]);
    assert.deepEqual(a.protocols, ['simple', 'extended', 'prepared']);
    assert.equal(a.rounds, 3);
    assert.equal(a.seconds, 10);
    assert.equal(a.warmup, 2);
    assert.equal(a.poolSize, 25);
    assert.equal(a.pgbouncer, undefined);
    assert.equal(a.noPgbouncer, false);
    // --before-after keeps its own levels
    assert.deepEqual(parseBenchArgs(['--before-after', 'postgres://u:p@h/d']).clients, DEFAULT_LEVELS);
  });

  it('its options, in both forms; protocols deduplicated in the order given', () => {
    const a = parseBenchArgs(['--compare', '--clients=4,1', '--seconds', '1', '--rounds=1', '--protocols', 'prepared,simple,prepared',
      '--pgbouncer', '/opt/pgbouncer', '--pool-size', '5', '--auth-type=scram-sha-256', '--threads', '3', '--json', 'x.json', 'postgres://u:p@h/d']);
    assert.deepEqual(a.clients, [1, 4]);
    assert.equal(a.seconds, 1);
    assert.equal(a.rounds, 1);
    assert.deepEqual(a.protocols, ['prepared', 'simple']);
    assert.equal(a.pgbouncer, '/opt/pgbouncer');
    assert.equal(a.poolSize, 5);
    assert.equal(a.authType, 'scram-sha-256');
    assert.equal(a.threads, 3);
    assert.equal(a.json, 'x.json');
    assert.equal(parseBenchArgs(['--compare', '--no-pgbouncer', 'x']).noPgbouncer, true);
  });

  it('bad usage is a UsageError naming the problem', () => {
    for (const [argv, re] of [
      [['--compare', '--before-after', 'x'], /two modes: give one/],
      [['--compare', '--rounds', '0', 'x'], /--rounds: expected an integer from 1 to 100/],
      [['--compare', '--rounds', 'many', 'x'], /--rounds: expected an integer/],
      [['--compare', '--protocols', 'simple,fast', 'x'], /--protocols: expected one of simple, extended, prepared, got "fast"/],
      [['--compare', '--protocols=', 'x'], /--protocols needs a value/],
      [['--compare', '--pgbouncer'], /--pgbouncer needs a value/],
      [['--compare', '--pgbouncer', '/x', '--no-pgbouncer', 'x'], /contradict/],
      [['--compare', '--protocol', 'simple', 'x'], /--protocol only goes with --before-after/],
      [['--compare', '--after-clients', '5', '--pooled-url', 'y', 'x'], /--after-clients, --pooled-url only go with --before-after/],
      [['--before-after', '--rounds', '2', 'x'], /--rounds only goes with --compare/],
      [['--before-after', '--no-pgbouncer', 'x'], /--no-pgbouncer only goes with --compare/],
      [['--compare', '--clients', '0', 'x'], /--clients: expected an integer from 1/],
    ] as const) {
      assert.throws(() => parseBenchArgs([...argv]), (e: unknown) => e instanceof UsageError && re.test(e.message), argv.join(' '));
    }
  });
});

describe("pgbench's figures for --compare", () => {
  it('tps without the initial connection time: PostgreSQL 14+ and 13 wording', () => {
    const pg15 = 'number of transactions actually processed: 12036\nlatency average = 0.082 ms\ninitial connection time = 2.181 ms\ntps = 12096.652616 (without initial connection time)\n';
    assert.equal(parseSummary(pg15).tpsNoConnect, 12096.652616);
    const pg13 = 'tps = 9000.5 (including connections establishing)\ntps = 9100.25 (excluding connections establishing)\n';
    assert.equal(parseSummary(pg13).tps, 9000.5);
    assert.equal(parseSummary(pg13).tpsNoConnect, 9100.25);
    assert.equal(parseSummary('tps = 139.47 (including reconnection times)\n').tpsNoConnect, undefined);
  });

  it("completion times from the -l files of one prefix only (run-1 is not run-10's)", () => {
    const dir = join(tmp, 'logs');
    mkdirSync(dir);
    writeFileSync(join(dir, 'run-1.77'), '0 0 100 0 1700000000 500000\n0 1 200 0 1700000000 250000\n');
    writeFileSync(join(dir, 'run-1.77.1'), '1 0 300 0 1700000001 0\n1 1 failed 0 1700000001 5\n');
    writeFileSync(join(dir, 'run-10.78'), '0 0 999 0 1700000009 0\n');
    writeFileSync(join(dir, 'run-1.sql'), 'SELECT 1;\n');
    const r = readLog(dir, 'run-1');
    assert.deepEqual([...r.latencies], [100, 200, 300]);
    assert.deepEqual([...r.ends], [1700000000250, 1700000000500, 1700000001000]);
    assert.equal(countIn(r.ends, 1700000000250, 1700000001000), 2, '(from, to]');
    assert.equal(countIn(r.ends, 0, 1), 0);
    assert.equal(countIn(new Float64Array(0), 0, 1), 0);
  });

  it('CPU per transaction over the window inside the run, else over the whole run', () => {
    const t0 = 1_700_000_000_000;
    // transactions every ms from t0+300 to t0+1300 (1001), samples every 200 ms from t0: pooler +2 ticks, PostgreSQL +3 per sample
    const ends = Float64Array.from({ length: 1001 }, (_, i) => t0 + 300 + i);
    const samples = Array.from({ length: 8 }, (_, i) => ({ t: t0 + i * 200, pooler: 2 * i, postgres: 3 * i, hostBusy: 50 * i, hostTotal: 100 * i }));
    const c = cpuPerTransaction(samples, ends, true);
    // window: samples at t0+400 … t0+1200 (4 intervals), transactions in (400, 1200] = 800
    assert.equal(c.cpuWindowS, 0.8);
    assert.equal(c.cpuTransactions, 800);
    assert.equal(c.cpuWholeRun, undefined);
    assert.ok(Math.abs(c.poolerCpuUs! - ((8 / CLK_TCK) * 1e6) / 800) < 1e-9);
    assert.ok(Math.abs(c.postgresCpuUs! - ((12 / CLK_TCK) * 1e6) / 800) < 1e-9);
    assert.equal(c.hostBusyPct, 50);
    // direct: no pooler figure
    assert.equal(cpuPerTransaction(samples, ends, false).poolerCpuUs, undefined);
    // too short for a window: the whole run and every transaction
    const short = cpuPerTransaction([samples[0]!, samples[1]!], Float64Array.from([t0 + 50, t0 + 150]), true);
    assert.equal(short.cpuWholeRun, true);
    assert.equal(short.cpuTransactions, 2);
    assert.deepEqual(cpuPerTransaction(samples, new Float64Array(0), true), {});
  });

  it('the targets take turns: rotated by round and workload', () => {
    const all = ['direct', 'pgbouncer', 'pgtide'] as const;
    assert.deepEqual(targetOrder([...all], 0, 0), ['direct', 'pgbouncer', 'pgtide']);
    assert.deepEqual(targetOrder([...all], 1, 0), ['pgbouncer', 'pgtide', 'direct']);
    assert.deepEqual(targetOrder([...all], 1, 1), ['pgtide', 'direct', 'pgbouncer']);
    assert.deepEqual(targetOrder(['direct', 'pgtide'], 1, 0), ['pgtide', 'direct']);
  });
});

describe('PgBouncer for --compare', () => {
  it('found on PATH, or as given; an explicit path that is not executable is an error', () => {
    const bin = join(tmp, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'pgbouncer'), '#!/bin/sh\necho PgBouncer 1.22.1\n');
    chmodSync(join(bin, 'pgbouncer'), 0o755);
    assert.equal(findPgbouncer(undefined, `/nonexistent:${bin}`), join(bin, 'pgbouncer'));
    assert.equal(findPgbouncer(join(bin, 'pgbouncer'), ''), join(bin, 'pgbouncer'));
    assert.throws(() => findPgbouncer(join(tmp, 'nope')), /--pgbouncer .*nope: not an executable file/);
  });

  it('prepared statements are tracked from 1.21', () => {
    assert.equal(tracksPrepared([1, 18, 0]), false);
    assert.equal(tracksPrepared([1, 21, 0]), true);
    assert.equal(tracksPrepared([2, 0, 0]), true);
    assert.equal(tracksPrepared([]), false);
  });

  it("both poolers' pgbouncer.ini with the extra lines, read by pgtide's loader without warnings", () => {
    const target = parseTarget('postgres://app:pw@127.0.0.1:5433/app?sslmode=disable');
    writeFileSync(join(tmp, 'userlist.txt'), userlistLine(target.user, target.password));
    const ini = poolerIni(tmp, 16432, target, { poolSize: 7, authType: 'scram-sha-256' }, { logfile: 'pgbouncer.log', extra: 'log_stats = 0\nmax_prepared_statements = 200\n' });
    const cfg = parseConfigText(ini, join(tmp, 'pgbouncer.ini'));
    assert.deepEqual(cfg.warnings, []);
    assert.equal(cfg.settings.default_pool_size, 7);
    assert.equal(cfg.settings.auth_type, 'scram-sha-256');
    assert.equal(cfg.settings.log_stats, false);
    assert.equal(cfg.settings.max_prepared_statements, 200);
    assert.equal(cfg.settings.logfile, join(tmp, 'pgbouncer.log'));
  });
});

function run(target: CompareRun['target'], protocol: CompareRun['protocol'], clients: number, round: number, x: Partial<CompareRun>): CompareRun {
  return { round, target, protocol, mode: protocol, clients, seconds: 10, ok: true, ...x };
}

describe('the --compare report', () => {
  const runs: CompareRun[] = [];
  for (const round of [1, 2, 3]) {
    runs.push(run('direct', 'simple', 10, round, { tps: 10_000 * round, latencyAvgMs: 1, p99Ms: 2, postgresCpuUs: 20 }));
    runs.push(run('pgbouncer', 'simple', 10, round, { tps: 8000, latencyAvgMs: 1.2, p99Ms: 4, poolerCpuUs: 10 + round, postgresCpuUs: 22 }));
    runs.push(run('pgtide', 'simple', 10, round, { tps: 6000 + 1000 * round, latencyAvgMs: 1.4, p99Ms: 5, poolerCpuUs: 15, postgresCpuUs: 25 }));
    runs.push(run('direct', 'prepared', 10, round, { tps: 20_000, postgresCpuUs: 10 }));
    runs.push(run('pgbouncer', 'prepared', 10, round, { mode: 'extended', tps: 8000, poolerCpuUs: 12 }));
    runs.push(run('pgtide', 'prepared', 10, round, round === 2 ? { ok: false, problem: '1 of 10 clients aborted: boom | bang' } : { tps: 9000, poolerCpuUs: 18 }));
  }

  it('medians per target, errors counted; ratios of the medians', () => {
    assert.equal(median([3, undefined, 1, 2]), 2);
    assert.equal(median([4, 1]), 2.5);
    assert.equal(median([undefined]), undefined);
    const m = medians(runs, ['simple', 'prepared'], [10]);
    assert.deepEqual(m.map((x) => `${x.protocol} ${x.target} ${x.tps} ${x.errors}/${x.runs}`), [
      'simple direct 20000 0/3', 'simple pgbouncer 8000 0/3', 'simple pgtide 8000 0/3',
      'prepared direct 20000 0/3', 'prepared pgbouncer 8000 0/3', 'prepared pgtide 9000 1/3',
    ]);
    assert.equal(m[1]!.poolerCpuUs, 12);
    const r = ratios(m);
    assert.equal(r[0]!.tpsVsPgbouncer, 1);
    assert.equal(r[0]!.tpsVsDirect, 0.4);
    assert.equal(r[0]!.p99VsPgbouncer, 1.25);
    assert.equal(r[0]!.poolerCpuVsPgbouncer, 1.25);
    assert.equal(r[0]!.serverCpuVsDirect, (15 + 25) / 20);
    assert.equal(r[1]!.pgbouncerMode, 'extended');
    assert.equal(r[1]!.serverCpuVsDirect, undefined, "no PostgreSQL CPU through pgtide: n/a, not pgtide's alone");
  });

  it('the Markdown: results, ratios, runs with errors, methods', () => {
    const { markdown } = renderCompare(runs, ['simple', 'prepared'], [10], {
      date: '2026-01-01T00:00:00Z', machine: 'a test machine.', versions: 'PostgreSQL 15; PgBouncer 1.18.0; pgtide 0.1.0.',
      targets: [{ target: 'direct', desc: 'pgbench → PostgreSQL' }, { target: 'pgbouncer', desc: 'pgbench → PgBouncer' }, { target: 'pgtide', desc: 'pgbench → pgtide' }],
      settings: 'tiny.', rounds: 3, cpu: ['CPU how.'], notes: ['a note'],
    });
    assert.match(markdown, /^# pgtide bench --compare \(2026-01-01T00:00:00Z\)$/m);
    assert.match(markdown, /^## Results \(medians of 3 rounds\)$/m);
    assert.match(markdown, /^\| simple \| 10 \| direct \| 20,000 \| 1\.00 ms \| 2\.00 ms \| – \| 20\.0 µs \| n\/a \| 0 of 3 \|$/m);
    assert.match(markdown, /^\| simple \| 10 \| pgtide \| 8,000 \| 1\.40 ms \| 5\.00 ms \| 15\.0 µs \| 25\.0 µs \| n\/a \| 0 of 3 \|$/m);
    assert.match(markdown, /^\| prepared \| 10 \| PgBouncer \(-M extended\) \| 8,000 \| n\/a \| n\/a \| 12\.0 µs \| n\/a \| n\/a \| 0 of 3 \|$/m);
    assert.match(markdown, /^\| prepared \| 10 \| pgtide \| 9,000 \| .* \| 1 of 3 \|$/m);
    assert.match(markdown, /^\| simple \| 10 \| 1\.00 \| 1\.25 \| 1\.25 \| 0\.40 \| 2\.00 \|$/m);
    assert.match(markdown, /^\| prepared \(PgBouncer: -M extended\) \| 10 \| 1\.13 \| n\/a \| 1\.50 \| 0\.45 \| n\/a \|$/m);
    assert.match(markdown, /^- round 2, prepared, 10 clients, pgtide: 1 of 10 clients aborted: boom \\\| bang$/m);
    assert.match(markdown, /^- CPU how\.$/m);
    assert.match(markdown, /^- a note$/m);
  });

  it('without PgBouncer: the ratios against direct only', () => {
    const { markdown } = renderCompare(runs.filter((r) => r.target !== 'pgbouncer'), ['simple'], [10], {
      date: 'd', machine: 'm', versions: 'v', targets: [], settings: 's', rounds: 3, cpu: [], notes: [],
    });
    assert.match(markdown, /^\| Workload \| Clients \| tps pgtide\/direct \| server CPU per xact pgtide\/direct \|$/m);
    assert.match(markdown, /^\| simple \| 10 \| 0\.40 \| 2\.00 \|$/m);
    assert.doesNotMatch(markdown, /PgBouncer \|/);
  });
});

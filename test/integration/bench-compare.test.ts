// pgtide bench --compare against the harness PostgreSQL (tiny: 1 s per run, one round): direct, PgBouncer (when
// installed) and pgtide each measured at every protocol and client count with tps > 0 and CPU figures, the Markdown
// and the raw JSON, the temporary poolers and their dirs gone afterwards; without PgBouncer the report says so;
// a --pgbouncer that is not there is one line and exit code 1.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchCli as cli, tempDir } from '../harness/bench.js';
import { isAlive, sharedPostgres } from '../harness/postgres.js';
import { findPgbouncer } from '../../src/bench/pgbouncer.js';
import type { CompareMedian, CompareRatio, CompareRun } from '../../src/bench/compare-report.js';

const NUM = String.raw`[\d,]+(?:\.\d+)?`;
const PGBOUNCER = findPgbouncer();

interface Raw {
  runs: CompareRun[];
  medians: CompareMedian[];
  ratios: CompareRatio[];
  settings: { pgbouncer: string | null; pgbouncerMissing: string | null };
}

/** The pid and dir named in a progress line like "temporary PgBouncer on 127.0.0.1:1234 (pid 42; dir /tmp/x)". */
function started(stderr: string, name: string): { pid: number; dir?: string } {
  const m = new RegExp(`temporary ${name} on 127\\.0\\.0\\.1:\\d+ \\(pid (\\d+)(?:; dir (\\S+)\\))?`).exec(stderr);
  assert.ok(m, `no "temporary ${name} on" line in\n${stderr}`);
  return { pid: Number(m[1]), dir: m[2] };
}

test('a tiny run: direct, PgBouncer and pgtide at every protocol and client count, medians, ratios, raw JSON; all cleaned up', {
  skip: PGBOUNCER ? false : 'no pgbouncer on PATH nor in /usr/sbin, /usr/bin, /usr/local/bin (Debian: apt-get install pgbouncer); the run without it is the next test',
}, async (t) => {
  const pg = await sharedPostgres();
  const tmp = tempDir(t);
  const json = join(tmp, 'out.json');
  const r = await cli(['bench', '--compare', '--clients', '1,4', '--seconds', '1', '--rounds', '1', '--warmup', '0', '--protocols', 'simple,prepared',
    '--pool-size', '4', '--json', json, pg.url('app', 'apppass', 'app')], tmp);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, /apppass/, 'the password is never printed');

  // the Markdown: one results row per workload, client count and target, each with a tps figure
  assert.match(r.stdout, /^# pgtide bench --compare \(/m);
  assert.match(r.stdout, /^Machine: .+ CPUs/m);
  assert.match(r.stdout, /^## Results \(medians of 1 round\)$/m);
  for (const protocol of ['simple', 'prepared']) {
    for (const clients of [1, 4]) {
      for (const target of ['direct', 'PgBouncer', 'pgtide']) {
        const row = r.stdout.split('\n').find((l) => l.startsWith(`| ${protocol} | ${clients} | ${target}`));
        assert.ok(row, `no row for ${protocol}, ${clients} clients, ${target} in\n${r.stdout}`);
        const cells = row.split('|').map((c) => c.trim());
        assert.match(cells[4]!, new RegExp(`^${NUM}$`), row); // tps
        assert.equal(cells[10], '0 of 1', row);
      }
      assert.match(r.stdout, new RegExp(`^\\| ${protocol}[^|]* \\| ${clients} \\| \\d+\\.\\d\\d \\| \\d+\\.\\d\\d \\| \\d+\\.\\d\\d \\| \\d+\\.\\d\\d \\| \\d+\\.\\d\\d \\|$`, 'm'), `no ratios for ${protocol} ${clients}:\n${r.stdout}`);
    }
  }
  assert.match(r.stdout, /^## Ratios \(of the medians\)$/m);

  // progress on stderr
  assert.match(r.stderr, /\[1\/12\] round 1, simple, 1 clients, direct, 1 s/);
  assert.match(r.stderr, /\[12\/12\] round 1, prepared/);

  // the raw figures: every run measured, with CPU per transaction
  const raw = JSON.parse(readFileSync(json, 'utf8')) as Raw;
  assert.equal(raw.settings.pgbouncer, PGBOUNCER);
  assert.equal(raw.runs.length, 12);
  for (const run of raw.runs) {
    const what = JSON.stringify(run);
    assert.ok(run.ok && run.tps! > 0 && run.transactions! > 0 && run.p99Ms! > 0 && run.latencyAvgMs! > 0, what);
    assert.ok(run.postgresCpuUs! > 0, `PostgreSQL's CPU is readable here (same machine, root): ${what}`);
    if (run.target === 'direct') assert.equal(run.poolerCpuUs, undefined, what);
    else assert.ok(run.poolerCpuUs! > 0, what);
  }
  for (const target of ['direct', 'pgbouncer', 'pgtide']) assert.equal(raw.runs.filter((x) => x.target === target).length, 4, target);
  // PgBouncer 1.18 cannot run -M prepared in transaction pooling: extended instead, and said so
  const bouncerPrepared = raw.runs.find((x) => x.target === 'pgbouncer' && x.protocol === 'prepared')!;
  if (bouncerPrepared.mode === 'extended') assert.match(r.stdout, /\| prepared \| 1 \| PgBouncer \(-M extended\) \|/);
  assert.equal(raw.medians.length, 12);
  assert.equal(raw.ratios.length, 4);
  for (const x of raw.ratios) assert.ok(x.tpsVsPgbouncer! > 0 && x.tpsVsDirect! > 0 && x.poolerCpuVsPgbouncer! > 0, JSON.stringify(x));

  // cleaned up: the work dir, PgBouncer's dir, both poolers
  const work = /work dir (\S+) /.exec(r.stderr)?.[1];
  assert.ok(work?.startsWith(tmp), r.stderr);
  assert.equal(existsSync(work!), false, `${work} still there`);
  const bouncer = started(r.stderr, 'PgBouncer');
  assert.ok(bouncer.dir, r.stderr);
  assert.equal(existsSync(bouncer.dir!), false, `${bouncer.dir} still there`);
  assert.equal(isAlive(bouncer.pid), false, `the temporary PgBouncer (pid ${bouncer.pid}) is still running`);
  const pgtide = started(r.stderr, 'pgtide');
  assert.equal(isAlive(pgtide.pid), false, `the temporary pgtide (pid ${pgtide.pid}) is still running`);
  assert.deepEqual(readdirSync(tmp), ['out.json']);
});

test('--no-pgbouncer: direct and pgtide only, the report says PgBouncer was left out', async (t) => {
  const pg = await sharedPostgres();
  const tmp = tempDir(t);
  const r = await cli(['bench', '--compare', '--no-pgbouncer', '--clients', '2', '--seconds', '1', '--rounds', '1', '--warmup', '1', '--protocols', 'extended',
    pg.url('app', 'apppass', 'app')], tmp);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^- \*\*PgBouncer left out \(--no-pgbouncer\)\*\*: only direct and pgtide were compared\.$/m);
  assert.match(r.stdout, new RegExp(`^\\| extended \\| 2 \\| direct \\| ${NUM} \\|`, 'm'), r.stdout);
  assert.match(r.stdout, new RegExp(`^\\| extended \\| 2 \\| pgtide \\| ${NUM} \\|`, 'm'), r.stdout);
  assert.doesNotMatch(r.stdout, /^\| extended \| 2 \| PgBouncer/m);
  assert.match(r.stdout, /^\| extended \| 2 \| \d+\.\d\d \| \d+\.\d\d \|$/m, r.stdout);
  assert.match(r.stderr, /warm-up, direct, extended, 2 clients, 1 s \(not reported\)/);
  assert.match(r.stderr, /warm-up, pgtide, extended, 2 clients, 1 s \(not reported\)/);
  assert.deepEqual(readdirSync(tmp), []);
});

test('--compare: a --pgbouncer that is not there, a missing URL, a bad option: one line, exit code 1', async (t) => {
  const pg = await sharedPostgres();
  const tmp = tempDir(t);
  for (const [args, re] of [
    [['--pgbouncer', '/nonexistent/pgbouncer', pg.url('app', 'apppass', 'app')], /^pgtide bench: --pgbouncer \/nonexistent\/pgbouncer: not an executable file$/m],
    [[], /^pgtide bench: missing POSTGRES_URL/m],
    [['--protocols', 'fast', 'x'], /^pgtide bench: option --protocols: expected one of simple, extended, prepared, got "fast"$/m],
  ] as const) {
    const r = await cli(['bench', '--compare', ...args], tmp, 20_000);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.equal(r.stdout, '');
  }
  const none = await cli(['bench'], tmp, 10_000);
  assert.match(none.stderr, /Usage:\n\s+pgtide bench --before-after \[OPTION\]\.\.\. POSTGRES_URL\n\s+pgtide bench --compare \[OPTION\]\.\.\. POSTGRES_URL/);
  assert.deepEqual(readdirSync(tmp), []);
});

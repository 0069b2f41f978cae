// pgtide bench --before-after against the harness PostgreSQL (tiny: 1 s per step, 2 levels): exit 0, every row of the
// seed's table with numbers, the raw JSON, the temp dir and the child pgtide gone; bad URL, unreachable server, missing
// or wrong password are one clear line and exit code 1; --pooled-url measures a pooler that is already running.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchCli as cli, tempDir } from '../harness/bench.js';
import { freePort, isAlive, sharedPostgres, type PgServer } from '../harness/postgres.js';
import { pgtideWith, track } from '../harness/pgtide.js';

/** A database of its own, so that backends of tests running alongside (in database app) are not counted. */
const DB = 'pgtide_bench_it';
let dbReady: Promise<void> | undefined;
async function benchDb(): Promise<PgServer> {
  const pg = await sharedPostgres();
  dbReady ??= (async () => {
    if ((await pg.psql(`SELECT 1 FROM pg_database WHERE datname = '${DB}'`)) !== '1') await pg.psql(`CREATE DATABASE ${DB} OWNER app`);
  })();
  await dbReady;
  return pg;
}

const ROWS = ['Connections per user', 'Connection setup time', 'Concurrent users', 'Memory per connection', 'Query latency p99', 'Throughput'];
const NUM = String.raw`[\d,]+(?:\.\d+)?`;

test('a tiny before/after run: every row measured, raw JSON written, temp dir and child pgtide gone', async (t) => {
  const pg = await benchDb();
  const tmp = tempDir(t);
  const json = join(tmp, 'out.json');
  const r = await cli(['bench', '--before-after', '--clients', '2,4', '--seconds', '1', '--warmup', '0', '--after-clients', '4', '--json', json,
    pg.url('app', 'apppass', DB)], tmp);
  assert.equal(r.code, 0, r.stderr);

  // the seed's table, at the highest concurrency both served (4: both serve it easily), every row with numbers
  assert.match(r.stdout, /^## At 4 clients \(the highest concurrency both served without errors\)$/m, r.stdout);
  for (const row of ROWS) {
    const line = r.stdout.split('\n').find((l) => l.startsWith(`| **${row}** |`));
    assert.ok(line, `no row ${row} in\n${r.stdout}`);
    const [, before, after, gain] = line.split('|').map((c) => c.trim()).filter(Boolean);
    if (row === 'Concurrent users') {
      assert.equal(before, '4 (highest tested)', line);
      assert.equal(after, '4 (highest tested)', line);
    } else {
      assert.match(before!, new RegExp(`^${NUM}`), line);
      assert.match(after!, new RegExp(`^${NUM}`), line);
      assert.match(gain!, /^\*\*[+-][\d.]+(%|x)\*\*$/, line);
    }
  }
  assert.match(r.stdout, /^\| 2 \| direct \| none \| /m);
  assert.match(r.stdout, /^\| 4 \| pooled \| none \| /m);

  // progress on stderr while it ran
  assert.match(r.stderr, /\[1\/4\] direct, 2 clients, 1 s/);
  assert.match(r.stderr, /\[4\/4\] pooled, 4 clients, 1 s/);

  const raw = JSON.parse(readFileSync(json, 'utf8')) as { steps: { mode: string; clients: number; ok: boolean; xactPerSec: number; backendsPeak: number }[]; comparisonClients: number };
  assert.equal(raw.comparisonClients, 4);
  assert.deepEqual(raw.steps.map((s) => `${s.mode}-${s.clients}-${s.ok}`), ['direct-2-true', 'direct-4-true', 'pooled-2-true', 'pooled-4-true']);
  for (const s of raw.steps) assert.ok(s.xactPerSec > 0 && s.backendsPeak > 0, JSON.stringify(s));

  // cleaned up: its work dir (under TMPDIR) and the temporary pgtide
  const work = /work dir (\S+) /.exec(r.stderr)?.[1];
  assert.ok(work?.startsWith(tmp), r.stderr);
  assert.equal(existsSync(work!), false, `${work} still there`);
  assert.deepEqual(readdirSync(tmp), ['out.json']);
  const pid = Number(/temporary pgtide on 127\.0\.0\.1:\d+ \(pid (\d+)/.exec(r.stderr)?.[1]);
  assert.ok(pid > 0, r.stderr);
  assert.equal(isAlive(pid), false, `the temporary pgtide (pid ${pid}) is still running`);
});

test('--pooled-url measures a pooler that is already running (with --pooler-pid for its memory)', async (t) => {
  const pg = await benchDb();
  const tmp = tempDir(t);
  const bouncer = track(t, await pgtideWith(pg, { pool_mode: 'transaction', default_pool_size: 3 }, `${DB} = host=127.0.0.1 port=${pg.port} dbname=${DB}`));
  const pooledUrl = `postgres://app:apppass@127.0.0.1:${bouncer.port}/${DB}?sslmode=disable`;
  const r = await cli(['bench', '--before-after', '--clients', '3', '--seconds', '1', '--warmup', '0', '--pooled-url', pooledUrl,
    '--pooler-pid', String(bouncer.pid), pg.url('app', 'apppass', DB)], tmp);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`After: pgbench → the pooler at 127\\.0\\.0\\.1:${bouncer.port}`));
  assert.doesNotMatch(r.stdout + r.stderr, /apppass/, 'the password is never printed');
  assert.match(r.stdout, new RegExp(`^\\| \\*\\*Memory per connection\\*\\* \\| ${NUM} MB \\| ${NUM} MB \\|`, 'm'), r.stdout);
  // the pool has 3 servers for 3 clients: at most 1 connection per user
  const conn = /^\| \*\*Connections per user\*\* \| [^|]+ \| ([\d.]+) \|/m.exec(r.stdout);
  assert.ok(conn && Number(conn[1]) <= 1, r.stdout);
  assert.ok(isAlive(bouncer.pid), 'a pooler it did not start is left running');
});

test('bad URL, unreachable server, missing or wrong password: one clear line, exit code 1', async (t) => {
  const pg = await sharedPostgres();
  const tmp = tempDir(t);
  const closed = await freePort();
  const cases: [string[], RegExp, Record<string, string>?][] = [
    [['not-a-url'], /^pgtide bench: not a URL: "not-a-url"/m],
    [['mysql://app:x@127.0.0.1/app'], /^pgtide bench: not a PostgreSQL URL/m],
    [[`postgres://app:apppass@127.0.0.1:${closed}/app`], new RegExp(`^pgtide bench: cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${closed}: connection refused`, 'm')],
    [[`postgres://app@127.0.0.1:${pg.port}/app`], /^pgtide bench: the URL has no password for user "app"/m],
    [[`postgres://app:wrong@127.0.0.1:${pg.port}/app`], new RegExp(`^pgtide bench: cannot log in to PostgreSQL at 127\\.0\\.0\\.1:${pg.port}: password authentication failed for user "app"`, 'm')],
    [['--seconds', 'x', pg.url('app', 'apppass', 'app')], /^pgtide bench: option --seconds: expected an integer/m],
    [['--pgbench', '/nonexistent/pgbench', pg.url('app', 'apppass', 'app')], /^pgtide bench: --pgbench \/nonexistent\/pgbench: not an executable file/m],
  ];
  for (const [args, re] of cases) {
    const r = await cli(['bench', '--before-after', ...args], tmp, 20_000);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.equal(r.stdout, '', args.join(' '));
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
  }
  // PGPASSWORD stands in for a password missing from the URL (here a wrong one, to stop early)
  const viaEnv = await cli(['bench', '--before-after', `postgres://app@127.0.0.1:${pg.port}/app`], tmp, 20_000, { PGPASSWORD: 'wrong' });
  assert.equal(viaEnv.code, 1);
  assert.match(viaEnv.stderr, /password authentication failed/);
  assert.deepEqual(readdirSync(tmp), [], 'no work dir left behind');
});

test('pgtide bench without a mode prints its usage; --help; pgtide --help mentions bench', async (t) => {
  const tmp = tempDir(t);
  const none = await cli(['bench'], tmp, 10_000);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no mode given \(--before-after or --compare\)/);
  assert.match(none.stderr, /Usage:\n\s+pgtide bench --before-after \[OPTION\]\.\.\. POSTGRES_URL/);
  const help = await cli(['bench', '--help'], tmp, 10_000);
  assert.equal(help.code, 0);
  for (const opt of ['--clients', '--seconds', '--pooled-url', '--json', '--pool-size']) assert.ok(help.stdout.includes(opt), `bench --help lacks ${opt}`);
  const main = await cli(['--help'], tmp, 10_000);
  assert.equal(main.code, 0);
  assert.match(main.stdout, /pgtide bench --before-after/);
  // a config file called "bench" is still reachable as ./bench
  const file = await cli(['./bench'], tmp, 10_000);
  assert.equal(file.code, 1);
  assert.match(file.stderr, /cannot (load|read) config file/);
});

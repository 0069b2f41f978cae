// The seed's pgbouncer.ini (a Prisma deployment guide's config for database "tracking"), adapted only where the
// test needs it: PostgreSQL's host/port, the forced user's credentials, listen_addr/listen_port, logfile and pidfile
// in the temp dir, plus an auth_file. pgtide must start, warn about the two PostgreSQL-isms (`timeout`,
// `idle_in_transaction_session_timeout`) with file:line and the setting meant, keep min_pool_size=5, and serve
// pgbench -S in transaction mode.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { sharedPostgres, pgBin, pgEnv, run, type PgServer } from '../harness/postgres.js';
import { startPgtide, track } from '../harness/pgtide.js';
import { monitorClient, waitFor } from '../harness/util.js';
import { SEED_INI } from '../harness/seed.js';

const DB = 'tracking';

/** Replace one whole line of the ini, failing loudly if the seed text changed. */
function replaceLine(ini: string, from: string, to: string): string {
  const lines = ini.split('\n');
  const i = lines.indexOf(from);
  assert.ok(i >= 0, `seed ini has no line "${from}"`);
  lines[i] = to;
  return lines.join('\n');
}

let server: PgServer;
let monitor: pg.Client;

function backends(): Promise<number> {
  return monitor
    .query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND usename = 'app'`, [DB])
    .then((r) => Number(r.rows[0]!.n));
}

before(async () => {
  server = await sharedPostgres();
  await server.psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE);\nCREATE DATABASE ${DB} OWNER app;`);
  await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(server.port), '-U', 'app', DB], {
    env: pgEnv({ PGPASSWORD: 'apppass' }),
    timeoutMs: 60_000,
  });
  monitor = await monitorClient(server);
});

after(async () => {
  await monitor?.end().catch(() => {});
  await server?.psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
});

test('the seed pgbouncer.ini: starts with warnings for timeout / idle_in_transaction_session_timeout, keeps 5 servers, serves pgbench -S', async (t) => {
  let ini = '';
  const b = track(t, await startPgtide({
    pg: server,
    ini: (ctx) => {
      ini = SEED_INI;
      ini = replaceLine(ini, 'tracking = host=postgres port=5432 dbname=tracking user=postgres password=your_password',
        `tracking = host=127.0.0.1 port=${server.port} dbname=tracking user=app password=apppass`);
      ini = replaceLine(ini, 'listen_port = 6432', `listen_port = ${ctx.port}`);
      ini = replaceLine(ini, 'listen_addr = 0.0.0.0', 'listen_addr = 127.0.0.1');
      ini = replaceLine(ini, 'logfile = /var/log/pgbouncer/pgbouncer.log', `logfile = ${join(ctx.dir, 'pgbouncer.log')}`);
      ini = replaceLine(ini, 'pidfile = /var/run/pgbouncer/pgbouncer.pid', `pidfile = ${join(ctx.dir, 'pgbouncer.pid')}`);
      return `${ini}auth_file = userlist.txt\n`;
    },
  }));
  const file = join(b.dir, 'pgbouncer.ini');
  const lineOf = (key: string) => ini.split('\n').findIndex((l) => l.startsWith(`${key} =`)) + 1;
  assert.equal(lineOf('timeout'), 10);
  assert.equal(lineOf('idle_in_transaction_session_timeout'), 11);

  // The warnings name the file and line, and the setting that was probably meant.
  const w1 = await b.waitForLog(/WARNING .*"timeout".*/, 3000);
  assert.ok(w1.includes(`${file}:10:`), w1);
  assert.match(w1, /query_timeout/);
  const w2 = await b.waitForLog(/WARNING .*"idle_in_transaction_session_timeout".*/, 3000);
  assert.ok(w2.includes(`${file}:11:`), w2);
  assert.match(w2, /idle_transaction_timeout/);
  assert.equal(readFileSync(join(b.dir, 'pgbouncer.pid'), 'utf8').trim(), String(b.pid));

  // First client: min_pool_size=5 is honoured for db tracking.
  const c = new pg.Client({ connectionString: b.url('app', 'apppass', DB) });
  await c.connect();
  try {
    const { rows } = await c.query<{ n: string; db: string; u: string }>(
      'select count(*)::text as n, current_database() as db, current_user as u from pgbench_accounts',
    );
    assert.deepEqual(rows, [{ n: '100000', db: 'tracking', u: 'app' }]);
  } finally {
    await c.end();
  }
  await waitFor('at least 5 backends for db tracking', async () => (await backends()) >= 5, 5000);

  // pgbench -S through pgtide
  const out = await run(pgBin('pgbench'), ['-S', '-n', '-c', '8', '-j', '2', '-T', '2', '-h', '127.0.0.1', '-p', String(b.port), '-U', 'app', DB], {
    env: pgEnv({ PGPASSWORD: 'apppass' }),
    timeoutMs: 30_000,
  });
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1]);
  assert.ok(processed > 100, `only ${processed} transactions:\n${out}`);
  assert.match(out, /number of failed transactions: 0 \(/);
  assert.match(out, /number of clients: 8/);
  const n = await backends();
  assert.ok(n >= 5 && n <= 30, `${n} backends (min_pool_size 5, default_pool_size 25 + reserve 5)`);

  // the logfile got the pooler's lines
  const log = readFileSync(join(b.dir, 'pgbouncer.log'), 'utf8');
  assert.match(log, /LOG C-\d+: tracking\/app@127\.0\.0\.1:\d+ login attempt: db=tracking user=app tls=no/);
  assert.match(log, /WARNING .*idle_in_transaction_session_timeout/);
});

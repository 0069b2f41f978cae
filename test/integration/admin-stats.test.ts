/* SHOW STATS agrees with what pgbench reports for the same run (issue 3's acceptance check). */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { sharedPostgres, pgBin, pgEnv, run } from '../harness/postgres.js';
import { startPgtide, iniFor, track } from '../harness/pgtide.js';

const DB = 'adm_stats';

test('SHOW STATS transactions and queries match a pgbench run within a few percent', async (t) => {
  const server = await sharedPostgres();
  await server.psql(`DROP DATABASE IF EXISTS ${DB}`);
  await server.psql(`CREATE DATABASE ${DB} OWNER app`);
  t.after(() => server.psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`));
  const env = pgEnv({ PGPASSWORD: 'apppass' });
  await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(server.port), '-U', 'app', DB], { env });

  const b = track(
    t,
    await startPgtide({
      pg: server,
      ini: (ctx) =>
        iniFor(ctx, {
          databases: `${DB} = host=127.0.0.1 port=${server.port} dbname=${DB}`,
          settings: { pool_mode: 'transaction', default_pool_size: 5, admin_users: 'app', log_connections: 0, log_disconnections: 0 },
        }),
    }),
  );
  const out = await run(
    pgBin('pgbench'),
    ['-n', '-S', '-M', 'simple', '-c', '8', '-j', '2', '-T', '3', '-h', '127.0.0.1', '-p', String(b.port), '-U', 'app', DB],
    { env, timeoutMs: 30_000 },
  );
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1]);
  assert.ok(processed > 100, `pgbench processed ${processed} transactions`);
  assert.match(out, /number of failed transactions: 0 /);

  const admin = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'pgbouncer') }));
  await admin.connect();
  const rows = (await admin.query('SHOW STATS')).rows as Record<string, string>[];
  const row = rows.find((r) => r.database === DB);
  assert.ok(row, `SHOW STATS has a row for ${DB}`);
  const xacts = Number(row.total_xact_count);
  const queries = Number(row.total_query_count);
  // pgbench also runs a few statements of its own per connection (scale detection), so allow a small excess
  const within = (n: number) => n >= processed && n <= processed * 1.03 + 20;
  assert.ok(within(xacts), `total_xact_count ${xacts} vs pgbench ${processed}`);
  assert.ok(within(queries), `total_query_count ${queries} vs pgbench ${processed}`);
  assert.ok(Number(row.total_received) > 0 && Number(row.total_sent) > 0);
  assert.ok(Number(row.total_server_assignment_count) >= processed);
});

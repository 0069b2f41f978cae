/* The pooler runs in-process from the library entry point with a pgbouncer.ini text, on an ephemeral port, and stops
 * cleanly. (The options object, reload, close modes and stats: library-api.test.ts.) */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Pooler } from '../../src/index.js';
import { sharedPostgres } from '../harness/postgres.js';

test('Pooler.fromIniText serves queries in-process and closes', async (t) => {
  const server = await sharedPostgres();
  const dir = mkdtempSync(join(tmpdir(), 'pgtide-lib-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'userlist.txt'), '"app" "apppass"\n');
  const pooler = Pooler.fromIniText(
    `[databases]
app = host=127.0.0.1 port=${server.port} dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 0
unix_socket_dir =
auth_type = scram-sha-256
auth_file = userlist.txt
pool_mode = transaction
default_pool_size = 2
`,
    { cwd: dir },
  );
  assert.deepEqual(pooler.warnings, []);
  await pooler.listen();
  t.after(() => pooler.close());
  assert.ok(pooler.port > 0);

  const clients = Array.from({ length: 5 }, () => new pg.Client({ host: '127.0.0.1', port: pooler.port, user: 'app', password: 'apppass', database: 'app' }));
  await Promise.all(clients.map((c) => c.connect()));
  const rows = await Promise.all(clients.map((c, i) => c.query('select $1::int as i, pg_backend_pid() as pid', [i])));
  rows.forEach((r, i) => assert.equal(r.rows[0].i, i));
  assert.ok(new Set(rows.map((r) => r.rows[0].pid)).size <= 2, 'at most default_pool_size backends');
  await Promise.all(clients.map((c) => c.end()));
  const app = pooler.stats().databases.find((d) => d.database === 'app');
  assert.ok(app && app.total_query_count >= 5, `SHOW STATS counts the queries: ${JSON.stringify(app)}`);
});

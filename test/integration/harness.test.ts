// Proves the test harness: the shared PostgreSQL takes SCRAM, md5 and trust logins from pg, postgres.js, psql and pgbench.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import postgres from 'postgres';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sharedPostgres, startPostgres, pgBin, pgEnv, run, isAlive } from '../harness/postgres.js';
import { iniFor, DEFAULT_USERLIST, freePort } from '../harness/pgtide.js';

test('pg (node-postgres) logs in as app with SCRAM over 127.0.0.1', async (t) => {
  const server = await sharedPostgres();
  assert.match(await server.scramSecret('app'), /^SCRAM-SHA-256\$4096:/);
  const client = new pg.Client({ connectionString: server.url('app', 'apppass', 'app') });
  t.after(() => client.end().catch(() => {}));
  await client.connect();
  const { rows } = await client.query<{ user: string; db: string }>('SELECT current_user AS user, current_database() AS db');
  assert.deepEqual(rows, [{ user: 'app', db: 'app' }]);
  // app can create tables in schema public of db app
  await client.query('CREATE TEMP TABLE harness_t (x int)');
  await client.query('CREATE TABLE IF NOT EXISTS harness_app_t (x int)');
  await client.query('DROP TABLE harness_app_t');
});

test('a wrong password is refused (the md5/SCRAM hba rule applies)', async () => {
  const server = await sharedPostgres();
  const client = new pg.Client({ connectionString: server.url('app', 'wrong', 'app') });
  await assert.rejects(client.connect(), (err: Error & { code?: string }) => err.code === '28P01');
});

test('postgres.js logs in as md5user with md5', async (t) => {
  const server = await sharedPostgres();
  assert.match(await server.scramSecret('md5user'), /^md5[0-9a-f]{32}$/);
  const sql = postgres(server.url('md5user', 'md5pass', 'app'), { max: 1, onnotice: () => {} });
  t.after(() => sql.end({ timeout: 1 }));
  const [row] = await sql`SELECT current_user AS user, 1 + 1 AS two`;
  assert.equal(row!.user, 'md5user');
  assert.equal(row!.two, 2);
  await sql`CREATE TABLE IF NOT EXISTS harness_md5_t (x int)`;
  await sql`DROP TABLE harness_md5_t`;
});

test('psql logs in as trustuser without a password', async () => {
  const server = await sharedPostgres();
  const out = await run(pgBin('psql'), ['-XAtq', '-h', '127.0.0.1', '-p', String(server.port), '-U', 'trustuser', '-d', 'app', '-w', '-c', 'SELECT current_user']);
  assert.equal(out.trim(), 'trustuser');
});

test('pgbench -i then a 2 s select-only run directly against PostgreSQL', async () => {
  const server = await sharedPostgres();
  // Its own database, so concurrent test files using db app are not disturbed.
  await server.psql('DROP DATABASE IF EXISTS harness_bench;\nCREATE DATABASE harness_bench OWNER app;');
  const conn = ['-h', '127.0.0.1', '-p', String(server.port), '-U', 'app'];
  const env = pgEnv({ PGPASSWORD: 'apppass' });
  await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', ...conn, 'harness_bench'], { env, timeoutMs: 60_000 });
  assert.equal(await server.psql('SELECT count(*) FROM pgbench_accounts', 'harness_bench'), '100000');

  const out = await run(pgBin('pgbench'), ['-S', '-c', '4', '-j', '2', '-T', '2', '-n', ...conn, 'harness_bench'], { env, timeoutMs: 30_000 });
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1]);
  assert.ok(processed > 0, `no transactions processed:\n${out}`);
  assert.match(out, /number of failed transactions: 0 \(/);
  assert.match(out, /number of clients: 4/);
  await server.psql('DROP DATABASE harness_bench');
});

test('startPostgres gives a private server with options, and stop() leaves nothing behind', async (t) => {
  const server = await startPostgres({ maxConnections: 20, extraConf: "application_name = 'harness_private'" });
  t.after(() => server.stop());
  assert.equal(await server.psql('SHOW max_connections'), '20');
  assert.equal(await server.psql("SELECT rolname FROM pg_roles WHERE rolname IN ('app', 'md5user', 'trustuser') ORDER BY 1"), 'app\nmd5user\ntrustuser');
  const postmaster = Number(readFileSync(join(server.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const checkpointer = Number(await server.psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"));
  assert.ok(isAlive(postmaster) && isAlive(checkpointer));
  await server.stop();
  assert.equal(isAlive(postmaster), false, 'the postmaster survived stop()');
  assert.equal(isAlive(checkpointer), false, 'a postgres child survived stop()');
  assert.equal(existsSync(server.dir), false);
  await server.stop(); // idempotent
});

test('iniFor / DEFAULT_USERLIST / freePort', async () => {
  const port = await freePort();
  assert.ok(port >= 20_000 && port < 32_768);
  const server = await sharedPostgres();
  const ini = iniFor({ port, socketDir: '/tmp/x', dir: '/tmp/x', pg: server }, { settings: { pool_mode: 'transaction', auth_type: 'scram-sha-256' } });
  assert.equal(ini, `[databases]
app = host=127.0.0.1 port=${server.port} dbname=app

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir = /tmp/x
auth_type = scram-sha-256
auth_file = userlist.txt
logfile = 
pool_mode = transaction
`);
  assert.match(DEFAULT_USERLIST, /^"trustuser" ""$/m);
});

/* The library API (`import { Pooler } from 'pgtide'`) against the harness PostgreSQL: an options object, listen() on
 * port 0 and url(), queries through `pg`, stats() after the traffic, the events, reload() of default_pool_size while a
 * client waits, close({ graceful: true }) letting an open transaction commit, close() cutting one, the console's
 * SHUTDOWN, and a child process that must exit by itself after close(). Bad options: test/unit/library-options.test.ts. */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { once } from 'node:events';
import pg from 'pg';
import { ConfigError, Pooler, type LogRecord, type PoolerOptions, type SettingsOptions } from '../../src/index.js';
import { sharedPostgres, type PgServer } from '../harness/postgres.js';
import { REPO_ROOT, track } from '../harness/pgtide.js';
import { waitFor, type PgError } from '../harness/util.js';

function options(server: PgServer, settings: SettingsOptions = {}): PoolerOptions {
  return {
    databases: { app: { host: '127.0.0.1', port: server.port, dbname: 'app' } },
    settings: {
      listen_addr: '127.0.0.1',
      listen_port: 0,
      unix_socket_dir: '',
      auth_type: 'scram-sha-256',
      pool_mode: 'transaction',
      default_pool_size: 2,
      ...settings,
    },
    auth: { users: [{ name: 'app', password: 'apppass' }] },
  };
}

/** A table in database app for the close tests, owned by app. */
async function closeTable(server: PgServer): Promise<void> {
  await server.psql('CREATE TABLE IF NOT EXISTS lib_api_close (id text PRIMARY KEY);\nALTER TABLE lib_api_close OWNER TO app;', 'app');
}

/** Whether the row `id` (made by the test: no quoting needed) is in lib_api_close, as seen straight in PostgreSQL. */
async function committed(server: PgServer, id: string): Promise<boolean> {
  return (await server.psql(`SELECT count(*) FROM lib_api_close WHERE id = '${id}'`, 'app')) === '1';
}

test('an options object: listen on port 0, url(), queries through pg, stats and events', async (t) => {
  const server = await sharedPostgres();
  const pooler = track(t, new Pooler(options(server)));
  const logs: LogRecord[] = [];
  pooler.on('log', (r) => logs.push(r));
  const listening = once(pooler, 'listening');
  const info = await pooler.listen();
  assert.ok(pooler.port > 0, 'listen_port 0 gives a port');
  assert.equal(info.port, pooler.port);
  assert.deepEqual(info.addresses, [`127.0.0.1:${pooler.port}`]);
  assert.deepEqual((await listening)[0], info);
  const url = pooler.url('app', 'apppass', 'app');
  assert.equal(url, `postgresql://app:apppass@127.0.0.1:${pooler.port}/app?sslmode=disable`);

  const pool = new pg.Pool({ connectionString: url, max: 4 });
  try {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.query('SELECT $1::int AS i, pg_backend_pid() AS pid', [i])));
    results.forEach((r, i) => assert.equal(r.rows[0].i, i));
    assert.ok(new Set(results.map((r) => r.rows[0].pid)).size <= 2, 'at most default_pool_size server connections');

    const s = pooler.stats();
    const row = s.pools.find((p) => p.database === 'app' && p.user === 'app');
    assert.ok(row, `SHOW POOLS has app/app: ${JSON.stringify(s.pools)}`);
    assert.equal(row.pool_mode, 'transaction');
    assert.equal(row.cl_waiting, 0);
    assert.ok(row.cl_active >= 1 && row.cl_active <= 4, `cl_active counts pg.Pool's idle clients: ${row.cl_active}`);
    const servers = row.sv_active + row.sv_idle + row.sv_used + row.sv_tested + row.sv_login;
    assert.ok(servers >= 1 && servers <= 2, `1 or 2 server connections: ${JSON.stringify(row)}`);
    const db = s.databases.find((d) => d.database === 'app');
    assert.ok(db, 'SHOW STATS has app');
    assert.ok(db.total_query_count >= 20, `total_query_count ${db.total_query_count}`);
    assert.ok(db.total_xact_count >= 20, `total_xact_count ${db.total_xact_count}`);
    assert.ok(db.total_client_login_count >= 1, `total_client_login_count ${db.total_client_login_count}`);
    assert.ok(db.total_received > 0 && db.total_sent > 0, 'bytes counted both ways');
    assert.equal(typeof db.avg_query_count, 'number');
    assert.ok(s.totals.total_query_count >= 20, `SHOW TOTALS total_query_count ${s.totals.total_query_count}`);
  } finally {
    await pool.end();
  }
  assert.ok(
    logs.some((r) => r.level === 'LOG' && r.message === `listening on 127.0.0.1:${pooler.port}`),
    `a 'log' event for the listener: ${logs.map((r) => r.message).join(' | ')}`,
  );
  assert.ok(logs.some((r) => /login attempt: db=app user=app/.test(r.message)), 'login lines come as log events');
  assert.match(logs[0]!.line, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[\d+\] LOG /, "PgBouncer's line format");

  const closed = once(pooler, 'close');
  await pooler.close();
  await closed;
  assert.equal(pooler.listening, false);
  await assert.rejects(
    new pg.Client({ connectionString: url }).connect(),
    (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED',
    'nothing listens after close()',
  );
});

test('reload() raises default_pool_size for a client that waits; a setting that needs a restart is reported', async (t) => {
  const server = await sharedPostgres();
  const pooler = track(t, new Pooler(options(server, { default_pool_size: 1 })));
  await pooler.listen();
  const warnings: string[] = [];
  pooler.on('log', (r) => r.level === 'WARNING' && warnings.push(r.message));
  const a = track(t, new pg.Client({ connectionString: pooler.url('app', 'apppass', 'app') }));
  const b = track(t, new pg.Client({ connectionString: pooler.url('app', 'apppass', 'app') }));
  await a.connect();
  await b.connect();
  await a.query('BEGIN');
  await a.query('SELECT 1'); // a holds the only server connection
  let bDone = false;
  const bQuery = b.query('SELECT 2 AS two').then((r) => {
    bDone = true;
    return r;
  });
  await waitFor('b waiting for a server', () => pooler.stats().pools.find((p) => p.database === 'app')?.cl_waiting === 1);
  assert.equal(bDone, false);

  const reloaded = once(pooler, 'reload');
  const result = await pooler.reload(options(server, { default_pool_size: 2 }));
  assert.deepEqual(result.changed, ['default_pool_size']);
  assert.deepEqual(result.restartNeeded, []);
  assert.deepEqual((await reloaded)[0], result);
  assert.equal(pooler.settings.default_pool_size, 2);
  const r = await Promise.race([bQuery, new Promise<null>((res) => setTimeout(() => res(null), 5000))]);
  assert.ok(r, 'the waiting client got the second server connection within 5 s of the reload');
  assert.equal(r.rows[0].two, 2);
  await a.query('COMMIT');

  // listen_port cannot change without a restart: kept, reported and logged as RELOAD logs it
  const port = pooler.port;
  const r2 = await pooler.reload(options(server, { default_pool_size: 2, listen_port: port === 6543 ? 6544 : 6543 }));
  assert.deepEqual(r2.restartNeeded, ['listen_port']);
  assert.deepEqual(r2.changed, []);
  assert.equal(pooler.settings.listen_port, 0);
  assert.equal(pooler.port, port);
  assert.ok(warnings.some((w) => w === 'listen_port cannot be changed by a reload; restart pgtide to apply it'), warnings.join(' | '));

  // an invalid configuration is refused and the old one stays
  await assert.rejects(pooler.reload(options(server, { pool_mode: 'txn' as never })), ConfigError);
  assert.equal(pooler.settings.default_pool_size, 2);
  assert.equal(pooler.settings.pool_mode, 'transaction');
  assert.equal((await b.query('SELECT 3 AS three')).rows[0].three, 3);
});

test('close({ graceful: true }) stops accepting and lets an open transaction commit', async (t) => {
  const server = await sharedPostgres();
  await closeTable(server);
  const id = `graceful-${process.pid}-${Date.now()}`;
  const pooler = track(t, new Pooler(options(server)));
  await pooler.listen();
  const url = pooler.url('app', 'apppass', 'app');
  const a = new pg.Client({ connectionString: url });
  a.on('error', () => {});
  await a.connect();
  await a.query('BEGIN');
  await a.query('INSERT INTO lib_api_close VALUES ($1)', [id]);

  const t0 = Date.now();
  let closedAt = 0;
  const closing = pooler.close({ graceful: true, timeout: 15_000 }).then(() => (closedAt = Date.now()));
  await waitFor('listener closed', async () => {
    const c = new pg.Client({ connectionString: url });
    return c.connect().then(
      () => c.end().then(() => false),
      (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED',
    );
  });
  assert.equal(closedAt, 0, 'close() waits for the connected client');
  await a.query('COMMIT');
  await a.end();
  await closing;
  assert.ok(closedAt - t0 < 10_000, `closed once the client left, not at the timeout (${closedAt - t0} ms)`);
  assert.equal(await committed(server, id), true, 'the transaction committed');
});

test('close({ graceful: true, timeout }) closes at the timeout; close() cuts an open transaction', async (t) => {
  const server = await sharedPostgres();
  await closeTable(server);

  // a graceful close with a client that never leaves ends at its timeout
  const p1 = track(t, new Pooler(options(server)));
  await p1.listen();
  const idle = new pg.Client({ connectionString: p1.url('app', 'apppass', 'app') });
  idle.on('error', () => {});
  await idle.connect();
  const t0 = Date.now();
  await p1.close({ graceful: true, timeout: 300 });
  const took = Date.now() - t0;
  assert.ok(took >= 250 && took < 5000, `closed at the 300 ms timeout (${took} ms)`);
  await assert.rejects(idle.query('SELECT 1'));

  // close() (graceful: false) cuts a transaction in progress: it never commits
  const id = `cut-${process.pid}-${Date.now()}`;
  const p2 = track(t, new Pooler(options(server)));
  await p2.listen();
  const a = new pg.Client({ connectionString: p2.url('app', 'apppass', 'app') });
  a.on('error', () => {});
  await a.connect();
  await a.query('BEGIN');
  await a.query('INSERT INTO lib_api_close VALUES ($1)', [id]);
  await p2.close({ graceful: false });
  const err = await a.query('COMMIT').then(
    () => null,
    (e: PgError) => e,
  );
  assert.ok(err, 'COMMIT after close() fails');
  assert.equal(await committed(server, id), false, 'the cut transaction did not commit');
});

test("the admin console's SHUTDOWN closes an in-process pooler ('close' event)", async (t) => {
  const server = await sharedPostgres();
  const pooler = track(t, new Pooler(options(server, { admin_users: ['app'] })));
  await pooler.listen();
  const closed = once(pooler, 'close');
  const admin = new pg.Client({ connectionString: pooler.url('app', 'apppass', 'pgbouncer') });
  admin.on('error', () => {});
  await admin.connect();
  await admin.query('SHUTDOWN').catch(() => {}); // PgBouncer closes without an answer
  await Promise.race([closed, new Promise((_, rej) => setTimeout(() => rej(new Error('no close event within 5 s')), 5000))]);
  assert.equal(pooler.listening, false);
  await admin.end().catch(() => {});
});

test('after close() nothing is left: a child process that starts a pooler, queries and closes exits by itself', async () => {
  const server = await sharedPostgres();
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test', 'fixtures', 'library-exit.ts'), String(server.port)], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(killer);
  assert.equal(signal, null, `the child had to be killed: it did not exit by itself after close()\nstdout: ${out}\nstderr: ${err}`);
  assert.equal(code, 0, `stdout: ${out}\nstderr: ${err}`);
  assert.match(out, /^queried 3\nclosed\n/, out);
  const m = /exited (\d+) ms after close/.exec(out);
  assert.ok(m, `the exit hook ran: ${out}`);
  assert.ok(Number(m[1]) < 2000, `the process exited ${m[1]} ms after close() resolved`);
  assert.doesNotMatch(err, / (LOG|WARNING|ERROR) /, 'the library writes no log lines to stderr by default');
});

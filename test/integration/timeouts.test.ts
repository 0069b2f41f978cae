// Timeouts, each at 1 s in its own pgtide: query_wait_timeout, client_idle_timeout, idle_transaction_timeout,
// query_timeout, server_idle_timeout, server_lifetime, client_login_timeout. Each test checks what the client gets
// (message and SQLSTATE), what PostgreSQL is left with, and that the pooler keeps serving.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import { sharedPostgres, type PgServer } from '../harness/postgres.js';
import { pgtideWith, track, type Pgtide } from '../harness/pgtide.js';
import { createRowsDatabase, monitorClient, newClient, sleep, stillServes, waitFor, type Ctx, type PgError, type TestClient } from '../harness/util.js';

const DB = 'lct_timeouts';

let server: PgServer;
let monitor: pg.Client;

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await monitor.query<{ n: string }>(sql, params);
  return Number(rows[0]!.n);
}

/** Backends of the test database logged in as app. */
function backends(extra = ''): Promise<number> {
  return count(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND usename = 'app' ${extra}`, [DB]);
}

async function connected(t: Ctx, b: Pgtide): Promise<TestClient> {
  const c = newClient(t, b.url('app', 'apppass', DB));
  await c.connect();
  return c;
}

/** pgtide with the test database and these settings (transaction mode unless given). */
function bouncer(t: Ctx, settings: Record<string, string | number>): Promise<Pgtide> {
  return pgtideWith(server, { pool_mode: 'transaction', ...settings }, `${DB} = host=127.0.0.1 port=${server.port} dbname=${DB}`).then((b) => track(t, b));
}

before(async () => {
  server = await sharedPostgres();
  await createRowsDatabase(server, DB);
  monitor = await monitorClient(server);
});

after(async () => {
  await monitor?.end().catch(() => {});
  await server?.psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
});

test('query_wait_timeout: a client queued behind a held server gets query_wait_timeout after about 1 s', async (t) => {
  const b = await bouncer(t, { default_pool_size: 1, query_wait_timeout: 1 });
  const holder = await connected(t, b);
  await holder.query('BEGIN');
  await holder.query('select 1');

  const waiter = await connected(t, b);
  const t0 = Date.now();
  const err = await waiter.query('select 2').then(() => null, (e: PgError) => e);
  const took = Date.now() - t0;
  assert.ok(err, 'the queued query ran although the only server was held');
  assert.match(err.message, /query_wait_timeout/);
  assert.ok(err.code?.startsWith('08'), `SQLSTATE ${err.code}`);
  assert.ok(took >= 900 && took < 3000, `error after ${took} ms`);

  // the holder is unaffected
  assert.deepEqual((await holder.query('select 3 as x')).rows, [{ x: 3 }]);
  await holder.query('COMMIT');
  await stillServes(b, { db: DB });
});

test('client_idle_timeout: an idle client is closed with client_idle_timeout (57P05); a busy one is not', async (t) => {
  const b = await bouncer(t, { client_idle_timeout: 1 });
  const idle = await connected(t, b);
  const busy = await connected(t, b);
  await idle.query('select 1');
  const t0 = Date.now();
  // busy sends a query every 200 ms while idle waits for its FATAL
  let stop = false;
  const busyLoop = (async () => {
    while (!stop) {
      await busy.query('select 1');
      await sleep(200);
    }
  })();
  await waitFor('the idle client to be closed', () => idle.errors.length > 0, 4000);
  stop = true;
  await busyLoop;
  const took = Date.now() - t0;
  assert.ok(took >= 900 && took < 3000, `closed after ${took} ms`);
  assert.equal(idle.errors[0]!.code, '57P05');
  assert.match(idle.errors[0]!.message, /client_idle_timeout/);
  assert.deepEqual(busy.errors, [], 'the busy client was closed too');
  assert.deepEqual((await busy.query('select 2 as x')).rows, [{ x: 2 }]);
  await b.waitForLog(/closing because: client_idle_timeout \(age=\d+s\)/, 1000);
  await stillServes(b, { db: DB });
});

test('idle_transaction_timeout: the client is closed and its transaction rolled back in PostgreSQL', async (t) => {
  const b = await bouncer(t, { idle_transaction_timeout: 1 });
  const vBefore = Number(await server.psql('SELECT v FROM t WHERE id = 1', DB));
  const c = await connected(t, b);
  await c.query('BEGIN');
  await c.query('UPDATE t SET v = v + 100 WHERE id = 1');
  assert.equal(await backends(`AND state LIKE 'idle in transaction%'`), 1);
  const t0 = Date.now();
  await waitFor('the client to get the idle transaction timeout', () => c.errors.length > 0, 4000);
  const took = Date.now() - t0;
  assert.ok(took >= 900 && took < 3000, `closed after ${took} ms`);
  assert.match(c.errors[0]!.message, /idle transaction timeout/);
  assert.equal(c.errors[0]!.code, '25P03');

  await waitFor('no transaction left open in PostgreSQL', async () => (await backends(`AND state LIKE 'idle in transaction%'`)) === 0, 2000);
  // rolled back, and the row lock is gone: a direct UPDATE with lock_timeout goes through at once
  const direct = new pg.Client({ connectionString: server.url('app', 'apppass', DB) });
  await direct.connect();
  try {
    await direct.query(`SET lock_timeout = '1s'`);
    const { rows } = await direct.query<{ v: number }>('UPDATE t SET v = v + 1 WHERE id = 1 RETURNING v');
    assert.equal(rows[0]!.v, vBefore + 1);
  } finally {
    await direct.end();
  }
  await stillServes(b, { db: DB });
});

test('query_timeout: pg_sleep(5) fails with "query timeout" (57014) after about 1 s and the backend stops', async (t) => {
  const b = await bouncer(t, { query_timeout: 1 });
  const c = await connected(t, b);
  const t0 = Date.now();
  const err = await c.query('select pg_sleep(5)').then(() => null, (e: PgError) => e);
  const took = Date.now() - t0;
  assert.ok(err, 'pg_sleep(5) completed despite query_timeout=1');
  assert.ok(took >= 900 && took < 3000, `error after ${took} ms`);
  assert.match(err.message, /query timeout/);
  assert.equal(err.code, '57014');
  // The backend does not go on sleeping for the remaining ~4 s: it is gone or idle within 1.5 s.
  await waitFor('the backend to stop running pg_sleep', async () =>
    (await backends(`AND state = 'active' AND query = 'select pg_sleep(5)'`)) === 0, 1500);
  await stillServes(b, { db: DB });
});

test('server_idle_timeout: idle server connections are closed (pg_stat_activity count drops)', async (t) => {
  await waitFor('no backends left over from earlier tests', async () => (await backends()) === 0, 6000);
  const b = await bouncer(t, { default_pool_size: 3, server_idle_timeout: 1 });
  const clients = await Promise.all([0, 1, 2].map(() => connected(t, b)));
  // three overlapping transactions need three servers
  for (const c of clients) await c.query('BEGIN');
  for (const c of clients) await c.query('select 1');
  for (const c of clients) await c.query('COMMIT');
  assert.equal(await backends(), 3);
  const t0 = Date.now();
  await waitFor('the idle servers to be closed', async () => (await backends()) === 0, 4000);
  const took = Date.now() - t0;
  assert.ok(took >= 700, `closed after only ${took} ms`);
  await b.waitForLog(/closing because: server idle timeout \(age=\d+s\)/, 1000);
  // the clients are still connected and get new servers
  for (const c of clients) assert.deepEqual((await c.query('select 1 as one')).rows, [{ one: 1 }]);
  for (const c of clients) assert.deepEqual(c.errors, []);
});

test('server_lifetime: a server older than the lifetime is replaced (backend pid changes)', async (t) => {
  const b = await bouncer(t, { default_pool_size: 1, server_lifetime: 1 });
  const c = await connected(t, b);
  const pid = async () => (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  const first = await pid();
  const t0 = Date.now();
  const next = await waitFor('a new backend', async () => {
    const p = await pid();
    return p !== first ? p : 0;
  }, 4000, 100);
  const took = Date.now() - t0;
  assert.ok(took >= 500, `replaced after only ${took} ms`);
  assert.notEqual(next, first);
  assert.equal(await count('SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1', [first]), 0, 'the old backend is still there');
  assert.match(b.log(), /closing because: server lifetime over/);
  assert.deepEqual(c.errors, []);
});

test('client_login_timeout: a connection that never sends a startup packet is closed after about 1 s', async (t) => {
  const b = await bouncer(t, { client_login_timeout: 1 });
  const sock = net.connect({ host: '127.0.0.1', port: b.port });
  track(t, { close: () => sock.destroy() });
  sock.on('error', () => {});
  sock.resume();
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const t0 = Date.now();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('connection still open after 4 s')), 4000);
    sock.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  const took = Date.now() - t0;
  assert.ok(took >= 900 && took < 3000, `closed after ${took} ms`);
  await stillServes(b, { db: DB });
});

for (const checkDelay of [30, 0.2]) test(`server_lifetime with min_pool_size: idle servers at the minimum are recycled too (server_check_delay=${checkDelay})`, async (t) => {
  // PgBouncer gates server_idle_timeout on min_pool_size, not server_lifetime: old idle servers are replaced
  // and the pool refilled. With a short server_check_delay the idle servers sit in the "used" list.
  await waitFor('no backends left over from earlier tests', async () => (await backends()) === 0, 6000);
  const b = await bouncer(t, { default_pool_size: 5, min_pool_size: 2, server_lifetime: 1, server_check_delay: checkDelay });
  const c = await connected(t, b);
  await c.query('select 1');
  const pids = async () => (await monitor.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND usename = 'app'`, [DB])).rows.map((r) => r.pid);
  const first = await waitFor('2 backends', async () => { const p = await pids(); return p.length === 2 ? p : null; }, 3000);
  await waitFor('both original backends to be replaced', async () => {
    const now = await pids();
    return now.length >= 2 && !now.some((p) => first.includes(p));
  }, 5000, 100);
  assert.deepEqual(c.errors, []);
  assert.deepEqual((await c.query('select 2 as x')).rows, [{ x: 2 }]);
});

test('query_timeout also bounds the wait for a server: a queued client gets query_timeout', async (t) => {
  // PgBouncer: a client still waiting for a server after query_timeout is closed with "query_timeout".
  const b = await bouncer(t, { default_pool_size: 1, query_timeout: 1 });
  const holder = await connected(t, b);
  await holder.query('BEGIN');
  await holder.query('select 1');
  const waiter = await connected(t, b);
  const t0 = Date.now();
  const err = await waiter.query('select 2').then(() => null, (e: PgError) => e);
  const took = Date.now() - t0;
  assert.ok(err, 'the queued query ran although the only server was held');
  assert.match(err.message, /query_timeout/);
  assert.ok(took >= 900 && took < 3000, `error after ${took} ms`);
  assert.deepEqual((await holder.query('select 3 as x')).rows, [{ x: 3 }]);
  await holder.query('COMMIT');
  await stillServes(b, { db: DB });
});

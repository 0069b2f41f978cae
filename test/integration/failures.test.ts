// Failures around the pooler: clients dying mid-transaction or mid-query, backends terminated mid-query or while
// idle, PostgreSQL unreachable or not answering. Each test proves PostgreSQL is left clean (no open transaction, no
// held lock), the client gets a bounded error, and the pooler keeps serving.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import { sharedPostgres, type PgServer } from '../harness/postgres.js';
import { pgtideWith, track, freePort } from '../harness/pgtide.js';
import { createRowsDatabase, monitorClient, newClient, sleep, stillServes, waitFor, type PgError } from '../harness/util.js';

const DB = 'lcf_fail';

let server: PgServer;
let monitor: pg.Client;

/** Superuser query over the unix socket (sees every backend in pg_stat_activity). */
async function q<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<R[]> {
  return (await monitor.query<R>(sql, params)).rows;
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const rows = await q<{ n: string }>(sql, params);
  return Number(rows[0]!.n);
}

/** Backends of db DB as user app that are inside a transaction. */
function openTransactions(): Promise<number> {
  return count(
    `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND usename = 'app' AND state LIKE 'idle in transaction%'`,
    [DB],
  );
}

/** Kill the client's TCP connection without a Terminate message (a crashed application). */
function killSocket(c: pg.Client): void {
  (c as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
}

const dbLine = () => `${DB} = host=127.0.0.1 port=${server.port} dbname=${DB}`;

before(async () => {
  server = await sharedPostgres();
  await createRowsDatabase(server, DB);
  monitor = await monitorClient(server);
});

after(async () => {
  await monitor?.end().catch(() => {});
  await server?.psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
});

/** UPDATE row `id` directly on PostgreSQL with a 1 s lock_timeout: fails (55P03) instead of hanging if a lock is held. */
async function updateDirect(id: number): Promise<number> {
  const c = new pg.Client({ connectionString: server.url('app', 'apppass', DB) });
  await c.connect();
  try {
    await c.query(`SET lock_timeout = '1s'`);
    const t0 = Date.now();
    const { rows } = await c.query<{ v: number }>('UPDATE t SET v = v + 1 WHERE id = $1 RETURNING v', [id]);
    assert.ok(Date.now() - t0 < 1000, 'the row lock was held for a while');
    return rows[0]!.v;
  } finally {
    await c.end();
  }
}

test('client killed mid-transaction: its transaction is rolled back and the row lock released at once', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2 }, dbLine()));
  const vBefore = Number(await server.psql('SELECT v FROM t WHERE id = 1', DB));

  const a = newClient(t, b.url('app', 'apppass', DB));
  await a.connect();
  await a.query('BEGIN');
  const upd = await a.query<{ v: number }>('UPDATE t SET v = v + 100 WHERE id = 1 RETURNING v');
  assert.equal(upd.rows[0]!.v, vBefore + 100);
  const pid = (await a.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  assert.equal(await openTransactions(), 1);
  assert.equal(await count(`SELECT count(*) AS n FROM pg_locks WHERE pid = $1 AND locktype = 'transactionid'`, [pid]), 1);

  const mark = b.log().length;
  const t0 = Date.now();
  killSocket(a);
  await waitFor('no open transaction left for the pool', async () => (await openTransactions()) === 0, 3000);
  await waitFor('the killed client\'s backend to give up its locks', async () =>
    (await count(`SELECT count(*) AS n FROM pg_locks WHERE pid = $1 AND locktype = 'transactionid'`, [pid])) === 0, 3000);
  assert.ok(Date.now() - t0 < 3000);

  // Another client updates the same row without waiting for a lock, and sees the killed update rolled back.
  assert.equal(await updateDirect(1), vBefore + 1);
  await b.waitForLog(/closing because: client unexpected eof/, 3000, mark);
  await stillServes(b, { db: DB });
});

test('client killed while its query runs (transaction mode, pool_size=1): the next client gets its own results', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }, dbLine()));
  const a = newClient(t, b.url('app', 'apppass', DB));
  await a.connect();
  const running = a.query(`select pg_sleep(1.5) as slept, 'a'::text as who`).then(
    () => 'completed',
    (e: Error) => e.message,
  );
  await waitFor('pg_sleep to run on the backend', async () =>
    (await count(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND query LIKE 'select pg_sleep(1.5)%'`, [DB])) === 1, 3000);
  killSocket(a);
  assert.notEqual(await running, 'completed');

  // The only server is still busy with a's query: c must not get it (or its rows) until that is over.
  const c = newClient(t, b.url('app', 'apppass', DB));
  await c.connect();
  for (let i = 0; i < 5; i++) {
    const { rows } = await c.query<{ who: string; i: number }>(`select 'c'::text as who, $1::int as i`, [i]);
    assert.deepEqual(rows, [{ who: 'c', i }]);
  }
  const { rows } = await c.query<{ state: string }>(
    `select coalesce(txid_current_if_assigned()::text, 'none') as state`,
  );
  assert.deepEqual(rows, [{ state: 'none' }], 'the server handed over was inside a transaction');
  await c.end();
  await waitFor('no backend still sleeping', async () =>
    (await count(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'select pg_sleep(1.5)%' AND state = 'active'`, [DB])) === 0, 3000);
  assert.equal(await openTransactions(), 0);
  await stillServes(b, { db: DB });
});

test('client killed while its query runs inside a transaction: the server is not reused with the transaction open', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }, dbLine()));
  const vBefore = Number(await server.psql('SELECT v FROM t WHERE id = 2', DB));
  const a = newClient(t, b.url('app', 'apppass', DB));
  await a.connect();
  await a.query('BEGIN');
  await a.query('UPDATE t SET v = v + 100 WHERE id = 2');
  const running = a.query(`select pg_sleep(1) as slept`).then(() => 'completed', (e: Error) => e.message);
  await waitFor('pg_sleep to run on the backend', async () =>
    (await count(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND query LIKE 'select pg_sleep(1)%'`, [DB])) === 1, 3000);
  killSocket(a);
  assert.notEqual(await running, 'completed');

  const c = newClient(t, b.url('app', 'apppass', DB));
  await c.connect();
  const { rows } = await c.query<{ v: number; tx: string }>(
    `select v, coalesce(txid_current_if_assigned()::text, 'none') as tx from t where id = 2`,
  );
  assert.deepEqual(rows, [{ v: vBefore, tx: 'none' }], 'c saw the killed client\'s transaction');
  await waitFor('no open transaction left', async () => (await openTransactions()) === 0, 3000);
  assert.equal(await updateDirect(2), vBefore + 1);
  await c.end();
});

test('backend terminated mid-query: the client gets an error, the pooler replaces the server', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }, dbLine()));
  const a = newClient(t, b.url('app', 'apppass', DB));
  await a.connect();
  const running = a.query('select pg_sleep(5)').then(
    () => null,
    (e: PgError) => e,
  );
  const pid = await waitFor('pg_sleep to run', async () =>
    (await q<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND query = 'select pg_sleep(5)'`, [DB]))[0]?.pid, 3000);
  const mark = b.log().length;
  const t0 = Date.now();
  await q('SELECT pg_terminate_backend($1)', [pid]);
  const err = await running;
  assert.ok(err, 'the query succeeded although its backend was terminated');
  assert.ok(Date.now() - t0 < 2000, `error took ${Date.now() - t0} ms`);
  assert.ok(['57P01', '08006', '08003', '08P01'].includes(err.code ?? ''), `unexpected error ${err.code}: ${err.message}`);
  await b.waitForLog(/closing because: server conn crashed\?/, 3000, mark);
  assert.equal(b.proc.exitCode, null, 'the pooler died');

  // The pool (size 1) replaces the dead server for the next client.
  const c = newClient(t, b.url('app', 'apppass', DB));
  await c.connect();
  const { rows } = await c.query<{ pid: number; one: number }>('select pg_backend_pid() as pid, 1 as one');
  assert.equal(rows[0]!.one, 1);
  assert.notEqual(rows[0]!.pid, pid);
  await c.end();
});

test('backend terminated while idle in the pool: the next query gets a live server, no error', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }, dbLine()));
  const a = newClient(t, b.url('app', 'apppass', DB));
  await a.connect();
  const pid = (await a.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  // the server is back in the pool, idle
  await waitFor('the backend to be idle', async () =>
    (await count(`SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1 AND state = 'idle'`, [pid])) === 1, 3000);
  const mark = b.log().length;
  await q('SELECT pg_terminate_backend($1)', [pid]);
  await waitFor('the backend to exit', async () =>
    (await count(`SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1`, [pid])) === 0, 3000);

  // Same client, next transaction: served by a new backend, no error.
  const { rows } = await a.query<{ pid: number }>('select pg_backend_pid() as pid');
  assert.notEqual(rows[0]!.pid, pid);
  assert.deepEqual(a.errors, []);
  assert.match(b.log().slice(mark), /closing because: .*(terminating connection|server conn crashed)/);
  await stillServes(b, { db: DB });
});

test('PostgreSQL unreachable (nothing listens): the client gets 08006 quickly and other databases keep working', async (t) => {
  const deadPort = await freePort();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction' },
    `${dbLine()}\ndown = host=127.0.0.1 port=${deadPort} dbname=${DB}`));
  for (let attempt = 0; attempt < 2; attempt++) {
    const c = newClient(t, b.url('app', 'apppass', 'down'));
    const t0 = Date.now();
    const err = await c.connect().then(() => null, (e: PgError) => e);
    const took = Date.now() - t0;
    assert.ok(err, 'connected to a database whose server is down');
    assert.ok(took < 5000, `attempt ${attempt}: the error took ${took} ms`);
    assert.ok(['08006', '08001', '08000'].includes(err.code ?? ''), `unexpected error ${err.code}: ${err.message}`);
  }
  await stillServes(b, { db: DB });
});

test('server_connect_timeout: a server that accepts TCP and never answers fails the client after about 1 s', async (t) => {
  const sockets = new Set<net.Socket>();
  const blackhole = net.createServer((s) => {
    sockets.add(s);
    s.resume(); // read (and drop) the startup packet, so EOF is noticed
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
  track(t, { close: () => { for (const s of sockets) s.destroy(); blackhole.close(); } });
  const holePort = (blackhole.address() as net.AddressInfo).port;

  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', server_connect_timeout: 1 },
    `${dbLine()}\nhole = host=127.0.0.1 port=${holePort} dbname=${DB}`));
  const mark = b.log().length;
  const c = newClient(t, b.url('app', 'apppass', 'hole'));
  const t0 = Date.now();
  const err = await c.connect().then(() => null, (e: PgError) => e);
  const took = Date.now() - t0;
  assert.ok(err, 'connected through a server that never answered');
  assert.ok(took >= 900 && took < 4000, `error after ${took} ms, expected about 1 s`);
  assert.ok(['08006', '08001', '08000'].includes(err.code ?? ''), `unexpected error ${err.code}: ${err.message}`);
  await waitFor('pgtide to drop the hung server connection', () => sockets.size === 0, 2000);
  await b.waitForLog(/closing because: connect timeout/, 2000, mark);
  await stillServes(b, { db: DB });
});

test('client killed during a long query: its server does not keep the pool slot until the query ends', async (t) => {
  // PgBouncer closes the server of a client that leaves while its query runs ("client disconnect while server
  // was not ready"), so the pool slot is free at once. Holding it until the query ends lets a few abandoned slow
  // queries (HTTP handlers timing out, killed workers) starve the pool, and query_timeout does not cover them.
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }, dbLine()));
  track(t, { close: () => q(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query = 'select pg_sleep(20)'`, [DB]) });
  const a = newClient(t, b.url('app', 'apppass', DB));
  await a.connect();
  const running = a.query('select pg_sleep(20)').then(() => 'completed', (e: Error) => e.message);
  await waitFor('pg_sleep to run', async () =>
    (await count(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND query = 'select pg_sleep(20)'`, [DB])) === 1, 3000);
  killSocket(a);
  assert.notEqual(await running, 'completed');

  const c = newClient(t, b.url('app', 'apppass', DB));
  await c.connect();
  const t0 = Date.now();
  const r = await Promise.race([
    c.query<{ who: string }>(`select 'c'::text as who`).then((res) => res.rows),
    sleep(3000).then(() => 'still waiting' as const),
  ]);
  assert.deepEqual(r, [{ who: 'c' }], `the next client waited ${Date.now() - t0} ms for the abandoned query's server`);
});

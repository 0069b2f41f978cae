// Pool limits: default_pool_size caps the backends of a pool, min_pool_size keeps servers open, the reserve pool
// opens after reserve_pool_timeout, max_db_connections and max_user_connections cap backends across pools. Backend
// counts are sampled from pg_stat_activity while the load runs; every client must be served.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { sharedPostgres, type PgServer } from '../harness/postgres.js';
import { pgtideWith, track, type Pgtide } from '../harness/pgtide.js';
import { monitorClient, newClient, sleep, waitFor, type Ctx, type TestClient } from '../harness/util.js';

const DBS = { size: 'lcl_size', min: 'lcl_min', reserve: 'lcl_reserve', maxdb: 'lcl_maxdb', u1: 'lcl_user1', u2: 'lcl_user2' };

let server: PgServer;
let monitor: pg.Client;

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await monitor.query<{ n: string }>(sql, params);
  return Number(rows[0]!.n);
}

/** Client backends connected to any of these databases (optionally as one user). */
function backends(dbs: string[], user?: string): Promise<number> {
  return user
    ? count(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = ANY($1) AND usename = $2`, [dbs, user])
    : count(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = ANY($1)`, [dbs]);
}

/** Run `work` while sampling backends(dbs, user) every 10 ms; resolves to the work's result and the highest count seen. */
async function sampled<T>(dbs: string[], user: string | undefined, work: () => Promise<T>): Promise<{ result: T; max: number }> {
  let max = 0;
  let done = false;
  const sampler = (async () => {
    while (!done) {
      max = Math.max(max, await backends(dbs, user));
      await sleep(10);
    }
  })();
  try {
    const result = await work();
    return { result, max };
  } finally {
    done = true;
    await sampler;
  }
}

async function connected(t: Ctx, b: Pgtide, db: string, user = 'app', password = 'apppass'): Promise<TestClient> {
  const c = newClient(t, b.url(user, password, db));
  await c.connect();
  return c;
}

/** One short transaction that holds its server for `ms`; resolves to the backend pid. */
async function transaction(c: pg.Client, ms: number): Promise<number> {
  await c.query('BEGIN');
  const { rows } = await c.query<{ pid: number }>(`select pg_backend_pid() as pid, pg_sleep(${ms / 1000})`);
  await c.query('COMMIT');
  return rows[0]!.pid;
}

const entry = (db: string, extra = '') => `${db} = host=127.0.0.1 port=${server.port} dbname=${db}${extra ? ' ' + extra : ''}`;

before(async () => {
  server = await sharedPostgres();
  for (const db of Object.values(DBS)) await server.psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE);\nCREATE DATABASE ${db} OWNER app;`);
  monitor = await monitorClient(server);
});

after(async () => {
  await monitor?.end().catch(() => {});
  for (const db of Object.values(DBS)) await server?.psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
});

test('default_pool_size=2: 10 concurrent clients in transaction mode use at most 2 backends and are all served', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2 }, entry(DBS.size)));
  const clients = await Promise.all(Array.from({ length: 10 }, () => connected(t, b, DBS.size)));
  const { result: pids, max } = await sampled([DBS.size], undefined, () =>
    Promise.all(clients.map(async (c) => [await transaction(c, 100), await transaction(c, 50)])));
  assert.equal(pids.length, 10);
  assert.ok(max <= 2, `saw ${max} backends with default_pool_size=2`);
  assert.ok(max >= 1);
  const distinct = new Set(pids.flat());
  assert.ok(distinct.size <= 2, `transactions ran on ${distinct.size} different backends`);
  for (const c of clients) assert.deepEqual(c.errors, []);
});

test('min_pool_size=3: the pool fills to 3 servers once a client has logged in', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 10, min_pool_size: 3 }, entry(DBS.min)));
  assert.equal(await backends([DBS.min]), 0, 'servers opened before any client');
  const c = await connected(t, b, DBS.min);
  await c.query('select 1');
  await waitFor('3 backends', async () => (await backends([DBS.min])) === 3, 3000);
  // and it stays at 3: min_pool_size is a floor, not a target to overshoot
  await sleep(700);
  assert.equal(await backends([DBS.min]), 3);
  assert.deepEqual((await c.query('select 2 as x')).rows, [{ x: 2 }]);
});

test('reserve_pool: with the only server held, a second client is served from the reserve after reserve_pool_timeout', async (t) => {
  const b = track(t, await pgtideWith(server, {
    pool_mode: 'transaction', default_pool_size: 1, reserve_pool_size: 1, reserve_pool_timeout: 0.5,
  }, entry(DBS.reserve)));
  const holder = await connected(t, b, DBS.reserve);
  await holder.query('BEGIN');
  await holder.query('select 1');
  const second = await connected(t, b, DBS.reserve);
  const mark = b.log().length;
  const t0 = Date.now();
  const { rows } = await second.query<{ x: number }>('select 2 as x');
  const took = Date.now() - t0;
  assert.deepEqual(rows, [{ x: 2 }]);
  assert.ok(took >= 400 && took < 3000, `served after ${took} ms, expected about 0.5 s`);
  await b.waitForLog(/WARNING C-\d+: lcl_reserve\/app@127\.0\.0\.1:\d+ taking connection from reserve_pool/, 1000, mark);
  assert.equal(await backends([DBS.reserve]), 2);
  // never more than pool_size + reserve_pool_size
  const third = await connected(t, b, DBS.reserve);
  await second.query('BEGIN');
  await second.query('select 1');
  const t1 = Date.now();
  const pending = third.query('select 3 as x');
  await sleep(1200);
  assert.equal(await backends([DBS.reserve]), 2, 'opened more than pool_size + reserve_pool_size servers');
  await holder.query('COMMIT');
  assert.deepEqual((await pending).rows, [{ x: 3 }]);
  assert.ok(Date.now() - t1 >= 1100);
  await second.query('COMMIT');
});

test('max_db_connections=2: two users\' pools on the same database never have more than 2 backends together', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 5, max_db_connections: 2 }, entry(DBS.maxdb)));
  const apps = await Promise.all(Array.from({ length: 4 }, () => connected(t, b, DBS.maxdb)));
  const md5s = await Promise.all(Array.from({ length: 4 }, () => connected(t, b, DBS.maxdb, 'md5user', 'md5pass')));
  const { result, max } = await sampled([DBS.maxdb], undefined, () =>
    Promise.all([...apps, ...md5s].map(async (c) => [await transaction(c, 80), await transaction(c, 40)])));
  assert.equal(result.length, 8);
  assert.ok(max <= 2, `saw ${max} backends with max_db_connections=2`);
  // both users were served by their own backends
  const users = (await Promise.all([apps[0]!, md5s[0]!].map(async (c) => (await c.query<{ u: string }>('select current_user as u')).rows[0]!.u)));
  assert.deepEqual(users, ['app', 'md5user']);
  assert.ok((await backends([DBS.maxdb])) <= 2);
  for (const c of [...apps, ...md5s]) assert.deepEqual(c.errors, []);
});

test('max_user_connections=2: one user\'s pools on two databases never have more than 2 backends together', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 5, max_user_connections: 2 },
    `${entry(DBS.u1)}\n${entry(DBS.u2)}`));
  const c1 = await Promise.all(Array.from({ length: 4 }, () => connected(t, b, DBS.u1)));
  const c2 = await Promise.all(Array.from({ length: 4 }, () => connected(t, b, DBS.u2)));
  const { result, max } = await sampled([DBS.u1, DBS.u2], 'app', () =>
    Promise.all([...c1, ...c2].map(async (c) => [await transaction(c, 80), await transaction(c, 40)])));
  assert.equal(result.length, 8);
  assert.ok(max <= 2, `saw ${max} backends for user app with max_user_connections=2`);
  const dbs = await Promise.all([c1[0]!, c2[0]!].map(async (c) => (await c.query<{ d: string }>('select current_database() as d')).rows[0]!.d));
  assert.deepEqual(dbs, [DBS.u1, DBS.u2]);
  for (const c of [...c1, ...c2]) assert.deepEqual(c.errors, []);
});

test('min_pool_size under max_db_connections: topping up never evicts another pool\'s servers (no churn)', async (t) => {
  // Two pools of one database, each wanting min_pool_size=2, with max_db_connections=2. PgBouncer's min_pool_size
  // top-up does not evict; evicting would make the pools take servers from each other forever.
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 5, min_pool_size: 2, max_db_connections: 2 }, entry(DBS.maxdb)));
  const app = await connected(t, b, DBS.maxdb);
  await app.query('select 1');
  const md5 = await connected(t, b, DBS.maxdb, 'md5user', 'md5pass');
  await md5.query('select 1');
  const mark = b.log().length;
  const { max } = await sampled([DBS.maxdb], undefined, () => sleep(2000));
  const churn = b.log().slice(mark).match(/closing because: evicted/g) ?? [];
  assert.equal(churn.length, 0, `${churn.length} evictions in 2 s with no client activity`);
  assert.ok(max <= 2, `saw ${max} backends with max_db_connections=2`);
  // both pools still get served (a query may evict an idle server of the other pool)
  assert.deepEqual((await md5.query<{ u: string }>('select current_user as u')).rows, [{ u: 'md5user' }]);
  assert.deepEqual((await app.query<{ u: string }>('select current_user as u')).rows, [{ u: 'app' }]);
  assert.deepEqual([...app.errors, ...md5.errors], []);
});

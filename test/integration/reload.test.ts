// Signals: SIGHUP reloads the ini (new databases, new pool sizes, changed targets; a broken file keeps the old
// config), SIGINT lets open transactions finish then exits 0 and refuses new connections, SIGTERM exits at once.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { sharedPostgres, type PgServer } from '../harness/postgres.js';
import { startPgtide, iniFor, track, type Pgtide, type PgtideContext } from '../harness/pgtide.js';
import { monitorClient, newClient, sleep, waitFor, type Ctx, type PgError, type TestClient } from '../harness/util.js';

const DB_A = 'lcr_a';
const DB_B = 'lcr_b';

let server: PgServer;
let monitor: pg.Client;

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await monitor.query<{ n: string }>(sql, params);
  return Number(rows[0]!.n);
}

async function connected(t: Ctx, b: Pgtide, db: string): Promise<TestClient> {
  const c = newClient(t, b.url('app', 'apppass', db));
  await c.connect();
  return c;
}

async function selectOne(t: Ctx, b: Pgtide, db: string): Promise<void> {
  const c = await connected(t, b, db);
  assert.deepEqual((await c.query('select 1 as one')).rows, [{ one: 1 }]);
  await c.end();
}

const entry = (db: string, host = '127.0.0.1') => `${db} = host=${host} port=${server.port} dbname=${db}`;

/** A pgtide whose ini can be rewritten: rewrite(settings, databases) writes a new pgbouncer.ini (not yet reloaded). */
async function reloadable(t: Ctx, settings: Record<string, string | number>, databases: string) {
  let ctx: PgtideContext | undefined;
  const b = track(t, await startPgtide({
    pg: server,
    ini: (c) => {
      ctx = c;
      return iniFor(c, { settings, databases });
    },
  }));
  // signal handlers are installed right after "process up" (a signal before that would kill pgtide)
  await b.waitForLog(/LOG process up/, 5000);
  const iniPath = join(b.dir, 'pgbouncer.ini');
  const rewrite = (s: Record<string, string | number>, dbs: string) => writeFileSync(iniPath, iniFor(ctx!, { settings: s, databases: dbs }));
  /** SIGHUP and wait for the reload to have been handled (the handler is synchronous). */
  const hup = async () => {
    const mark = b.log().length;
    b.signal('SIGHUP');
    await b.waitForLog(/got SIGHUP/, 3000, mark);
    await sleep(50);
  };
  return { b, rewrite, hup, iniPath };
}

before(async () => {
  server = await sharedPostgres();
  for (const db of [DB_A, DB_B]) await server.psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE);\nCREATE DATABASE ${db} OWNER app;`);
  await server.psql(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);\nINSERT INTO t VALUES (1, 0);\nALTER TABLE t OWNER TO app;`, DB_A);
  monitor = await monitorClient(server);
});

after(async () => {
  await monitor?.end().catch(() => {});
  for (const db of [DB_A, DB_B]) await server?.psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
});

test('SIGHUP: a new database and a bigger default_pool_size apply at once; existing clients stay connected', async (t) => {
  const { b, rewrite, hup } = await reloadable(t, { pool_mode: 'transaction', default_pool_size: 1 }, entry(DB_A));
  const holder = await connected(t, b, DB_A);
  await holder.query('BEGIN');
  const pid = (await holder.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;

  // pool size 1 and the server held: a second client's query waits
  const waiter = await connected(t, b, DB_A);
  let done = false;
  const pending = waiter.query<{ x: number }>('select 2 as x').then((r) => ((done = true), r));
  await sleep(400);
  assert.equal(done, false, 'the query ran although the only server was held');
  await assert.rejects(connected(t, b, DB_B), (e: PgError) => e.code === '3D000');

  rewrite({ pool_mode: 'transaction', default_pool_size: 2 }, `${entry(DB_A)}\n${entry(DB_B)}`);
  await hup();
  const t0 = Date.now();
  assert.deepEqual((await pending).rows, [{ x: 2 }]);
  assert.ok(Date.now() - t0 < 2000, 'the new pool size did not apply to the waiting client');
  assert.equal(await count(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1`, [DB_A]), 2);
  await selectOne(t, b, DB_B);

  // the holder kept its server and transaction
  assert.equal((await holder.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid, pid);
  await holder.query('COMMIT');
  assert.deepEqual([...holder.errors, ...waiter.errors], []);
});

test('SIGHUP with a broken ini: RELOAD failed is logged, the old configuration is kept, still serving', async (t) => {
  const { b, rewrite, hup, iniPath } = await reloadable(t, { pool_mode: 'transaction', default_pool_size: 1 }, entry(DB_A));
  const c = await connected(t, b, DB_A);
  await c.query('select 1');
  rewrite({ pool_mode: 'transaction', default_pool_size: 'lots' }, `${entry(DB_A)}\n${entry(DB_B)}`);
  const mark = b.log().length;
  await hup();
  await b.waitForLog(/RELOAD failed/, 2000, mark);
  assert.match(b.log().slice(mark), new RegExp(`ERROR ${iniPath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+: .*default_pool_size`));
  // old config: DB_B unknown, pool size still 1, existing client fine, new clients fine
  await assert.rejects(connected(t, b, DB_B), (e: PgError) => e.code === '3D000');
  assert.deepEqual((await c.query('select 2 as x')).rows, [{ x: 2 }]);
  await c.query('BEGIN');
  await c.query('select 1');
  const other = await connected(t, b, DB_A);
  let done = false;
  const pending = other.query('select 3 as x').then((r) => ((done = true), r));
  await sleep(400);
  assert.equal(done, false, 'the pool grew although the reload failed');
  await c.query('COMMIT');
  assert.deepEqual((await pending).rows, [{ x: 3 }]);
  assert.equal(b.proc.exitCode, null);
  assert.deepEqual(c.errors, []);
});

test('SIGHUP with a changed host: servers close when released, new ones go to the new target', async (t) => {
  const { b, rewrite, hup } = await reloadable(t, { pool_mode: 'transaction', default_pool_size: 2 }, entry(DB_A));
  const c = await connected(t, b, DB_A);
  const where = async () => (await c.query<{ pid: number; addr: string | null }>('select pg_backend_pid() as pid, inet_client_addr()::text as addr')).rows[0]!;
  // one idle server plus one held in a transaction
  const idler = await connected(t, b, DB_A);
  await c.query('BEGIN');
  const held = await where();
  const idlePid = (await idler.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  assert.notEqual(idlePid, held.pid);
  assert.equal(held.addr, '127.0.0.1/32');

  const mark = b.log().length;
  rewrite({ pool_mode: 'transaction', default_pool_size: 2 }, entry(DB_A, server.socketDir));
  await hup();
  // the idle server goes now; the held one survives its transaction
  await waitFor('the idle server to be closed', async () => (await count('SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1', [idlePid])) === 0, 3000);
  assert.deepEqual(await where(), held, 'the transaction lost its server on reload');
  await c.query('COMMIT');
  await waitFor('the released server to be closed', async () => (await count('SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1', [held.pid])) === 0, 3000);
  const now = await where();
  assert.notEqual(now.pid, held.pid);
  assert.equal(now.addr, null, 'the new server did not use the new host (unix socket)');
  assert.match(b.log().slice(mark), /closing because: database configuration changed/);
  assert.deepEqual([...c.errors, ...idler.errors], []);
  assert.deepEqual((await idler.query<{ addr: string | null }>('select inet_client_addr()::text as addr')).rows, [{ addr: null }]);
});

test('SIGINT: an open transaction can still COMMIT, then the client is disconnected and pgtide exits 0; new connections are refused', async (t) => {
  const { b } = await reloadable(t, { pool_mode: 'transaction', default_pool_size: 2 }, entry(DB_A));
  const vBefore = Number(await server.psql('SELECT v FROM t WHERE id = 1', DB_A));
  const inTx = await connected(t, b, DB_A);
  const idle = await connected(t, b, DB_A);
  await idle.query('select 1');
  await inTx.query('BEGIN');
  await inTx.query('UPDATE t SET v = v + 1 WHERE id = 1');

  const mark = b.log().length;
  b.signal('SIGINT');
  await b.waitForLog(/got SIGINT/, 3000, mark);
  // new connections are refused while the transaction finishes
  // (a connection racing the listener's close may complete the TCP handshake and be reset: that is refused too)
  const late = new pg.Client({ connectionString: b.url('app', 'apppass', DB_A) });
  late.on('error', () => {});
  const refused = await late.connect().then(() => false, () => true);
  if (!refused) await late.end();
  assert.ok(refused, 'a new client logged in during the safe shutdown');
  const tcp = await new Promise<string>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: b.port });
    s.once('error', (e: PgError) => resolve(e.code ?? e.message));
    s.once('connect', () => resolve('connected'));
  });
  assert.equal(tcp, 'ECONNREFUSED', 'the listening socket is still open');
  await waitFor('the idle client to be disconnected', () => idle.ended || idle.errors.length > 0, 3000);
  assert.equal(b.proc.exitCode, null, 'exited with a transaction still open');

  // the transaction completes normally
  assert.deepEqual((await inTx.query<{ v: number }>('select v from t where id = 1')).rows, [{ v: vBefore + 1 }]);
  await inTx.query('COMMIT');
  const t0 = Date.now();
  const code = await Promise.race([b.exited, sleep(5000).then(() => 'still running' as const)]);
  assert.equal(code, 0, `pgtide after COMMIT: ${code}\n${b.log().slice(mark)}`);
  assert.ok(Date.now() - t0 < 3000);
  await waitFor('the committed client to be disconnected', () => inTx.ended || inTx.errors.length > 0, 2000);
  assert.equal(await server.psql('SELECT v FROM t WHERE id = 1', DB_A), String(vBefore + 1));
});

test('SIGTERM: exits promptly with code 0 even with clients in transactions', async (t) => {
  const { b } = await reloadable(t, { pool_mode: 'transaction', default_pool_size: 2 }, entry(DB_A));
  const c = await connected(t, b, DB_A);
  await c.query('BEGIN');
  await c.query('select 1');
  const t0 = Date.now();
  b.signal('SIGTERM');
  const code = await Promise.race([b.exited, sleep(3000).then(() => 'still running' as const)]);
  assert.equal(code, 0);
  assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  await waitFor('the client to be disconnected', () => c.ended || c.errors.length > 0, 2000);
  await waitFor('no backend left for the pool', async () => (await count('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1', [DB_A])) === 0, 3000);
});

test('SIGHUP removing a database: its clients get an error on their next query, without a reconnect storm', async (t) => {
  const both = `${entry(DB_A)}\nlcr_gone = host=127.0.0.1 port=${server.port} dbname=${DB_B}`;
  const { b, rewrite, hup } = await reloadable(t, { pool_mode: 'transaction', default_pool_size: 2, query_wait_timeout: 5 }, both);
  const c = await connected(t, b, 'lcr_gone');
  await c.query('select 1');
  const keep = await connected(t, b, DB_A);
  rewrite({ pool_mode: 'transaction', default_pool_size: 2, query_wait_timeout: 5 }, entry(DB_A));
  const mark = b.log().length;
  await hup();
  const t0 = Date.now();
  const err = await c.query('select 2').then(() => null, (e: PgError) => e);
  const took = Date.now() - t0;
  assert.ok(err, 'a removed database still served a query');
  assert.ok(took < 2000, `the error took ${took} ms`);
  assert.match(err.message, /database removed/);
  assert.equal(err.code, '3D000');
  // no server connections were opened for the removed database meanwhile
  const launched = b.log().slice(mark).match(/S-\d+: lcr_gone\/app@\S+ new connection to server/g) ?? [];
  assert.equal(launched.length, 0, `${launched.length} server connections opened for a removed database`);
  await assert.rejects(connected(t, b, 'lcr_gone'), (e: PgError) => e.code === '3D000');
  assert.deepEqual((await keep.query('select 3 as x')).rows, [{ x: 3 }]);
});

test('SIGHUP lowering default_pool_size: idle servers above the new size are closed and concurrency follows the new size', async (t) => {
  const { b, rewrite, hup } = await reloadable(t, { pool_mode: 'transaction', default_pool_size: 4 }, entry(DB_A));
  const clients = await Promise.all([0, 1, 2, 3].map(() => connected(t, b, DB_A)));
  const backends = () => count('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1', [DB_A]);
  const concurrent = async () => {
    let max = 0;
    let done = false;
    const sampler = (async () => { while (!done) { max = Math.max(max, await backends()); await sleep(10); } })();
    await Promise.all(clients.map(async (c) => { await c.query('BEGIN'); await c.query('select pg_sleep(0.2)'); await c.query('COMMIT'); }));
    done = true;
    await sampler;
    return max;
  };
  assert.equal(await concurrent(), 4);
  assert.equal(await backends(), 4);
  rewrite({ pool_mode: 'transaction', default_pool_size: 2 }, entry(DB_A));
  await hup();
  await waitFor('the servers above the new pool size to be closed', async () => (await backends()) <= 2, 3000);
  assert.ok((await concurrent()) <= 2, 'more servers than the new default_pool_size were in use');
  for (const c of clients) assert.deepEqual(c.errors, []);
});

// Session pooling with real drivers: session state stays with the session, server_reset_query cleans a server before
// the next client gets it (and '' turns that off), and notices / LISTEN-NOTIFY reach the client.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import postgres from 'postgres';
import { sharedPostgres } from '../harness/postgres.js';
import { pgtideWith, track } from '../harness/pgtide.js';
import { appClient, stillServes, superuser, waitFor } from '../harness/util.js';

const pidOf = async (c: pg.Client) => (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;

/** What one session leaves behind: a temp table, a SET, an SQL-level and a protocol-level prepared statement. */
async function dirtySession(c: pg.Client): Promise<void> {
  await c.query('CREATE TEMP TABLE sess_tmp (x int)');
  await c.query('INSERT INTO sess_tmp VALUES (1), (2)');
  await c.query("SET work_mem = '7MB'");
  await c.query('PREPARE sess_q AS SELECT $1::int * 2 AS d');
  await c.query({ name: 'sess_proto', text: 'SELECT $1::int + 1 AS p', values: [1] });
  await c.query('LISTEN sess_dirty_chan');
}

/** The session state as seen from inside a session. */
async function sessionState(c: pg.Client): Promise<{ tmp: boolean; workMem: string; prepared: number; listening: number }> {
  const { rows } = await c.query<{ tmp: boolean; work_mem: string; prepared: number; listening: number }>(
    `SELECT to_regclass('pg_temp.sess_tmp') IS NOT NULL AS tmp, current_setting('work_mem') AS work_mem,
            (SELECT count(*)::int FROM pg_prepared_statements) AS prepared, (SELECT count(*)::int FROM pg_listening_channels()) AS listening`);
  const r = rows[0]!;
  return { tmp: r.tmp, workMem: r.work_mem, prepared: r.prepared, listening: r.listening };
}

test('session mode: temp table, SET and prepared statements stay with the session; concurrent sessions have their own servers', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'session', default_pool_size: 3, query_wait_timeout: 5 }));
  const a = await appClient(t, b);
  const other = await appClient(t, b);
  const pid = await pidOf(a);
  await dirtySession(a);
  // other work in between
  for (let i = 0; i < 5; i++) await other.query('select pg_sleep(0.001)');
  assert.notEqual(await pidOf(other), pid, 'two live sessions share a server');
  for (let i = 0; i < 3; i++) {
    assert.equal(await pidOf(a), pid);
    assert.deepEqual(await sessionState(a), { tmp: true, workMem: '7MB', prepared: 2, listening: 1 });
    assert.deepEqual((await a.query('SELECT sum(x)::int AS s FROM sess_tmp')).rows, [{ s: 3 }]);
    assert.deepEqual((await a.query('EXECUTE sess_q(21)')).rows, [{ d: 42 }]);
    assert.deepEqual((await a.query({ name: 'sess_proto', text: 'SELECT $1::int + 1 AS p', values: [41] })).rows, [{ p: 42 }]);
  }
  assert.deepEqual(await sessionState(other), { tmp: false, workMem: '4MB', prepared: 0, listening: 0 });
  await stillServes(b);
});

test('session mode: after a client leaves, DISCARD ALL cleans the server and the next client reuses it clean', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'session', default_pool_size: 1, query_wait_timeout: 5 }));
  const su = await superuser(t, server);

  const first = new pg.Client({ connectionString: b.url('app', 'apppass', 'app') });
  await first.connect();
  const pid = await pidOf(first);
  await dirtySession(first);
  assert.deepEqual(await sessionState(first), { tmp: true, workMem: '7MB', prepared: 2, listening: 1 });
  await first.end();

  // the reset query is what ran last on that backend
  await waitFor('DISCARD ALL on the released server', async () => {
    const { rows } = await su.query<{ query: string; state: string }>('SELECT query, state FROM pg_stat_activity WHERE pid = $1', [pid]);
    return rows[0]?.state === 'idle' && rows[0].query === 'DISCARD ALL';
  }, 3000, 20);

  const second = await appClient(t, b);
  assert.equal(await pidOf(second), pid, 'the pool did not reuse the server');
  assert.deepEqual(await sessionState(second), { tmp: false, workMem: '4MB', prepared: 0, listening: 0 });
  await assert.rejects(second.query('EXECUTE sess_q(1)'), (e: Error & { code?: string }) => e.code === '26000');
  await second.query('CREATE TEMP TABLE sess_tmp (x int)'); // the name is free again
  await second.end();

  // a third client, with the second one's temp table gone as well
  const third = await appClient(t, b);
  assert.equal(await pidOf(third), pid);
  assert.equal((await sessionState(third)).tmp, false);
  await third.end();
  await stillServes(b);
});

test("server_reset_query = '' turns the reset off: the next client inherits the previous session's SET", async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'session', default_pool_size: 1, server_reset_query: '', query_wait_timeout: 5 }));
  const su = await superuser(t, server);
  const first = new pg.Client({ connectionString: b.url('app', 'apppass', 'app') });
  await first.connect();
  const pid = await pidOf(first);
  await first.query("SET work_mem = '7MB'");
  await first.query('CREATE TEMP TABLE sess_tmp (x int)');
  await first.end();
  const second = await appClient(t, b);
  assert.equal(await pidOf(second), pid);
  const state = await sessionState(second);
  assert.equal(state.workMem, '7MB', 'no reset query: the SET should leak to the next client');
  assert.equal(state.tmp, true);
  const { rows } = await su.query<{ query: string }>('SELECT query FROM pg_stat_activity WHERE pid = $1', [pid]);
  assert.notEqual(rows[0]?.query, 'DISCARD ALL');
  await second.end();
  await stillServes(b);
});

test('session mode: a client that leaves inside a transaction does not hand its open transaction to the next client', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'session', default_pool_size: 1, query_wait_timeout: 5 }));
  const first = new pg.Client({ connectionString: b.url('app', 'apppass', 'app') });
  await first.connect();
  const pid = await pidOf(first);
  await first.query('BEGIN');
  await first.query('CREATE TEMP TABLE sess_tx (x int)');
  await first.end();
  const second = await appClient(t, b);
  const { rows } = await second.query<{ xid: string | null; fresh: boolean; tmp: boolean }>(
    "SELECT pg_current_xact_id_if_assigned()::text AS xid, now() = statement_timestamp() AS fresh, to_regclass('pg_temp.sess_tx') IS NOT NULL AS tmp");
  assert.deepEqual(rows, [{ xid: null, fresh: true, tmp: false }]);
  assert.notEqual(await pidOf(second), pid, 'a server left in a transaction must be closed, not reused');
  await second.end();
  await stillServes(b);
});

for (const mode of ['session', 'transaction'] as const) {
  test(`${mode} mode: NOTICEs from a DO block reach pg and postgres.js clients, in order, with the query result`, async (t) => {
    const server = await sharedPostgres();
    const b = track(t, await pgtideWith(server, { pool_mode: mode, default_pool_size: 3, query_wait_timeout: 5 }));
    const c = await appClient(t, b);
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(String(n.message)));
    await c.query("DO $$ BEGIN RAISE NOTICE 'hello %', 1; RAISE NOTICE 'hello %', 2; RAISE WARNING 'careful'; END $$");
    assert.deepEqual(notices, ['hello 1', 'hello 2', 'careful']);
    const { rows } = await c.query('SELECT 7 AS seven');
    assert.deepEqual(rows, [{ seven: 7 }]);
    assert.equal(notices.length, 3);

    const seen: string[] = [];
    const sql = track(t, postgres(b.url('app', 'apppass', 'app'), { max: 1, onnotice: (n) => seen.push(String(n.message)) }));
    await sql.unsafe("DO $$ BEGIN FOR i IN 1..50 LOOP RAISE NOTICE 'n%', i; END LOOP; END $$");
    assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => `n${i + 1}`));
    await stillServes(b);
  });
}

test('session mode: LISTEN/NOTIFY notifications reach the listening client, also while it is idle', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'session', default_pool_size: 6, query_wait_timeout: 5 }));
  const listener = await appClient(t, b);
  const sender = await appClient(t, b);
  const got: { channel: string; payload?: string; processId: number }[] = [];
  listener.on('notification', (n) => got.push({ channel: n.channel, payload: n.payload, processId: n.processId }));
  await listener.query('LISTEN sess_chan');
  const senderPid = await pidOf(sender);

  // delivered to an idle listener: nothing in flight on its connection
  await sender.query("NOTIFY sess_chan, 'one'");
  await sender.query("SELECT pg_notify('sess_chan', 'two')");
  await waitFor('two notifications', () => got.length >= 2, 3000, 20);
  assert.deepEqual(got.map((g) => [g.channel, g.payload, g.processId]), [['sess_chan', 'one', senderPid], ['sess_chan', 'two', senderPid]]);

  // a notification committed with a transaction arrives after the commit only
  await sender.query('BEGIN');
  await sender.query("NOTIFY sess_chan, 'three'");
  await listener.query('SELECT 1');
  assert.equal(got.length, 2);
  await sender.query('COMMIT');
  await waitFor('the third notification', () => got.length >= 3, 3000, 20);
  assert.equal(got[2]!.payload, 'three');

  // its own notification arrives with its query's reply; the listener keeps working normally
  await listener.query("NOTIFY sess_chan, 'self'");
  await waitFor('the self notification', () => got.length >= 4, 3000, 20);
  assert.equal(got[3]!.payload, 'self');
  assert.deepEqual((await listener.query('SELECT 2 AS two')).rows, [{ two: 2 }]);

  // postgres.js listen() (a dedicated session) receives too
  const sql = track(t, postgres(b.url('app', 'apppass', 'app'), { max: 2, onnotice: () => {} }));
  const pjs: string[] = [];
  await sql.listen('sess_chan2', (payload) => pjs.push(payload));
  await sender.query("NOTIFY sess_chan2, 'pjs'");
  await waitFor('postgres.js notification', () => pjs.length >= 1, 3000, 20);
  assert.deepEqual(pjs, ['pjs']);
  await stillServes(b);
});

// Session state in transaction pooling: tracked SETs follow their client and never reach another one (10,000
// randomized steps over 8 clients sharing 3 servers), advisory locks and SQL PREPARE pin the client to its server
// until released, a client leaving with state takes its server with it, and session_state_policy = refuse answers
// such statements with an error instead.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { sharedPostgres } from '../harness/postgres.js';
import postgres from 'postgres';
import { DEFAULT_USERLIST, iniFor, pgtideWith, startPgtide, track } from '../harness/pgtide.js';
import { appClient, rng, stillServes, waitFor, type PgError, consoleRows } from '../harness/util.js';
import { bind, errorFields, execute, parse, rawLogin, sync } from '../harness/raw.js';


test('SET statement_timeout / search_path / application_name follow their client and are never seen by another (10,000 random steps)', { timeout: 120_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 3, max_client_conn: 50, admin_users: 'app' }));
  const CLIENTS = 8;
  const STEPS = 10_000;
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => appClient(t, b)));
  const defaults = (await clients[0]!.query("select current_setting('statement_timeout') as st, current_setting('search_path') as sp, current_setting('application_name') as an")).rows[0] as Record<string, string>;
  const servers = new Set<number>();
  let checked = 0;

  async function run(i: number, steps: number): Promise<void> {
    const c = clients[i]!;
    const rand = rng(1000 + i);
    // what this client's session must show; values are unique to the client so a leak is recognisable
    const want = { st: defaults.st!, sp: defaults.sp!, an: defaults.an! };
    for (let step = 0; step < steps; step++) {
      const r = rand();
      const v = `${i}_${step}`;
      if (r < 0.15) {
        const ms = 1001 + i * 100 + (step % 50); // never a whole number of seconds (shown as "1s")
        await c.query(`SET statement_timeout = ${ms}`);
        want.st = `${ms}ms`;
      } else if (r < 0.3) {
        await c.query(`SET search_path = s${v}, public`);
        want.sp = `s${v}, public`;
      } else if (r < 0.4) {
        await c.query(`SET application_name = 'a${v}'`);
        want.an = `a${v}`;
      } else if (r < 0.45) {
        await c.query('RESET statement_timeout');
        want.st = defaults.st!;
      } else if (r < 0.5) {
        // rolled back: no change
        await c.query('BEGIN');
        await c.query(`SET search_path = rolled${v}`);
        await c.query('ROLLBACK');
      } else if (r < 0.55) {
        // SET LOCAL: no change after the transaction
        await c.query('BEGIN');
        await c.query('SET LOCAL statement_timeout = 98765'); // long enough never to fire under load
        await c.query('COMMIT');
      } else {
        const row = (await c.query("select current_setting('statement_timeout') as st, current_setting('search_path') as sp, current_setting('application_name') as an, pg_backend_pid() as pid")).rows[0] as Record<string, string>;
        servers.add(Number(row.pid));
        assert.deepEqual({ st: row.st, sp: row.sp, an: row.an }, want, `client ${i} step ${step}: saw another session's settings`);
        checked++;
      }
    }
  }
  await Promise.all(clients.map((_, i) => run(i, STEPS / CLIENTS)));
  assert.ok(checked > 3000, `${checked} checks`);
  assert.equal(servers.size, 3, 'the clients shared 3 servers');
  // no client ended up pinned: everything they did is tracked
  const rows = (await consoleRows(b, 'SHOW CLIENTS')).filter((r) => r.database === 'app');
  assert.deepEqual(rows.map((r) => r.pinned), Array(CLIENTS).fill(''));
  await stillServes(b);
});

test('an advisory lock pins its client to the server until unlocked; a client leaving with one takes the server with it', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, admin_users: 'app', query_wait_timeout: 10 }));
  const holder = await appClient(t, b);
  const others = await Promise.all([appClient(t, b), appClient(t, b), appClient(t, b)]);
  const holderPid = Number((await holder.query('select pg_backend_pid() as pid, pg_advisory_lock(4242)')).rows[0].pid);
  // the check runs right after the transaction's ReadyForQuery went out
  const pinned = await waitFor('the holder to be pinned', async () => {
    const rows = (await consoleRows(b, 'SHOW CLIENTS')).filter((r) => r.pinned !== '' && r.database === 'app');
    return rows.length === 1 ? rows : null;
  });
  assert.match(String(pinned[0]!.pinned), /advisory locks: 1/);
  assert.match(b.log(), /pinned to its server connection: session state left by the transaction \(advisory locks: 1\)/);

  // the others share the one remaining server; none of them is ever in the holder's session
  for (let round = 0; round < 30; round++) {
    const got = await Promise.all(others.map((c) => c.query('select pg_backend_pid() as pid, pg_try_advisory_xact_lock(4242) as ok')));
    for (const g of got) {
      assert.notEqual(Number(g.rows[0].pid), holderPid);
      assert.equal(g.rows[0].ok, false, 'the lock is held by the holder, in another session');
    }
    // the holder keeps its server across transactions
    assert.equal(Number((await holder.query('select pg_backend_pid() as pid')).rows[0].pid), holderPid);
  }
  await holder.query('select pg_advisory_unlock(4242)');
  await waitFor('the holder to be unpinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).every((r) => r.pinned === '') || null);
  assert.equal((await others[0]!.query('select pg_try_advisory_xact_lock(4242) as ok')).rows[0].ok, true);

  // leaving while holding one: that server is closed, never handed to anyone
  await holder.query('select pg_advisory_lock(4343)');
  const pid2 = Number((await holder.query('select pg_backend_pid() as pid')).rows[0].pid);
  await holder.end();
  await waitFor('the server to be closed', async () => (await consoleRows(b, 'SHOW SERVERS')).every((r) => Number(r.remote_pid) !== pid2) || null);
  for (const c of others) assert.equal((await c.query('select pg_try_advisory_xact_lock(4343) as ok')).rows[0].ok, true);
  const ss = (await consoleRows(b, 'SHOW SESSION_STATE')).find((r) => r.database === 'app')!;
  assert.equal(Number(ss.pins), 2);
  await stillServes(b);
});

test('SQL PREPARE pins until DEALLOCATE; a temporary table until dropped; session_state_policy = refuse answers with an error instead', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, admin_users: 'app' }));
  const c = await appClient(t, b);
  await c.query('PREPARE two AS select 2 as n');
  for (let i = 0; i < 5; i++) assert.equal((await c.query('EXECUTE two')).rows[0].n, 2);
  const pin = await waitFor('pinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).find((r) => r.pinned !== '')?.pinned);
  assert.match(String(pin), /prepared statements \(SQL PREPARE\): 1/);
  await c.query('DEALLOCATE two');
  await waitFor('unpinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).every((r) => r.pinned === '') || null);
  await c.query('CREATE TEMP TABLE tmp_pin (a int)');
  await c.query('insert into tmp_pin values (1)');
  assert.equal((await c.query('select count(*)::int as n from tmp_pin')).rows[0].n, 1);
  await c.query('DROP TABLE tmp_pin');
  await waitFor('unpinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).every((r) => r.pinned === '') || null);
  // ON COMMIT DROP leaves nothing
  await c.query('BEGIN; CREATE TEMP TABLE tmp_x (a int) ON COMMIT DROP; COMMIT');
  assert.ok((await consoleRows(b, 'SHOW CLIENTS')).every((r) => r.pinned === ''));

  const r = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, session_state_policy: 'refuse', admin_users: 'app' }));
  const d = await appClient(t, r);
  await assert.rejects(d.query('SET enable_seqscan = off'), (e: PgError) => {
    assert.equal(e.code, '0A000');
    assert.match(e.message, /SET enable_seqscan is not allowed in transaction pooling: it would stay on the server connection/);
    return true;
  });
  await assert.rejects(d.query('PREPARE p AS select 1'), (e: PgError) => e.code === '0A000');
  await assert.rejects(d.query('select pg_advisory_lock(1)'), (e: PgError) => e.code === '0A000');
  await d.query('SET statement_timeout = 1234'); // tracked: allowed
  assert.equal((await d.query("select current_setting('statement_timeout') as v")).rows[0].v, '1234ms');
  assert.equal((await d.query("select current_setting('enable_seqscan') as v")).rows[0].v, 'on');
  const e = await appClient(t, r);
  assert.equal((await e.query("select current_setting('statement_timeout') as v")).rows[0].v, '0');
  const ss = (await consoleRows(r, 'SHOW SESSION_STATE')).find((x) => x.database === 'app')!;
  assert.equal(Number(ss.refusals), 3);
  assert.match(r.log(), /refused: SET enable_seqscan is not allowed/);
  await stillServes(r);
  await stillServes(b);
});

test('a pinned client whose server dies gets an error; the others keep working', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, admin_users: 'app' }));
  const c = await appClient(t, b, { ignoreErrors: true });
  const pid = Number((await c.query('select pg_backend_pid() as pid, pg_advisory_lock(99)')).rows[0].pid);
  await waitFor('pinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).find((r) => r.pinned !== '') || null);
  const su = track(t, new pg.Client({ host: server.socketDir, port: server.port, user: 'postgres', database: 'postgres' }));
  await su.connect();
  await su.query('select pg_terminate_backend($1)', [pid]);
  await assert.rejects(c.query('select 1'), (e: PgError) => /terminat|server conn crashed|Connection terminated|not queryable/i.test(e.message)); // the death may be seen before the query is sent
  const other = await appClient(t, b);
  assert.equal((await other.query('select pg_try_advisory_xact_lock(99) as ok')).rows[0].ok, true, 'the lock died with its session');
  await stillServes(b);
});

test('a statement after the first in a query string is looked at too; one too large to look at (over 1 MB) is streamed and its transaction checked all the same', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, admin_users: 'app' }));
  const c = await appClient(t, b);
  await c.query('select 1; SET enable_seqscan = off');
  assert.match(String(await waitFor('pinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).find((x) => x.pinned !== '')?.pinned)), /SET enable_seqscan/);
  await c.query('RESET enable_seqscan');
  await waitFor('unpinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).every((x) => x.pinned === '') || null);
  const big = 'x'.repeat(2 << 20);
  // the leading statement is harmless; the SETs come after it, in a query too large to be looked at
  const r = await c.query(`select length('${big}') as n; SET search_path = big_one, public; SET enable_seqscan = off`);
  assert.equal((r as unknown as pg.QueryResult[])[0]!.rows[0].n, big.length);
  // the SETs inside it were found by the check: search_path follows the client, enable_seqscan pins it
  const pin = await waitFor('pinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).find((x) => x.pinned !== '')?.pinned);
  assert.match(String(pin), /SET enable_seqscan/);
  assert.equal((await c.query("select current_setting('search_path') as v")).rows[0].v, 'big_one, public');
  await c.query('RESET enable_seqscan');
  await waitFor('unpinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).every((x) => x.pinned === '') || null);
  const other = await appClient(t, b);
  assert.equal((await other.query("select current_setting('search_path') as v, current_setting('enable_seqscan') as s")).rows[0].v, '"$user", public');
});

test('LOAD pins its client for the rest of its session (simple and extended protocol), and the server goes with it; a failed LOAD does not pin; refuse answers 0A000', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  // LOAD of a library outside $libdir/plugins needs a superuser
  await server.psql("DROP ROLE IF EXISTS load_su; CREATE ROLE load_su LOGIN SUPERUSER PASSWORD 'loadpass';");
  t.after(() => server.psql('DROP ROLE IF EXISTS load_su'));
  const b = track(t, await startPgtide({
    pg: server,
    files: { 'userlist.txt': `${DEFAULT_USERLIST}"load_su" "loadpass"\n` },
    ini: (ctx) => iniFor(ctx, { settings: { pool_mode: 'transaction', default_pool_size: 2, admin_users: 'app' } }),
  }));
  const su = track(t, new pg.Client({ connectionString: b.url('load_su', 'loadpass', 'app') }));
  await su.connect();
  const other = await appClient(t, b);
  await su.query("LOAD 'auto_explain'");
  const pid = Number((await su.query('select pg_backend_pid() as pid')).rows[0].pid);
  const pin = await waitFor('pinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).find((r) => r.user === 'load_su')?.pinned || null);
  assert.equal(pin, 'LOAD');
  // nothing in PostgreSQL shows the library: the client stays pinned all the same
  for (let i = 0; i < 5; i++) {
    assert.equal(Number((await su.query('select pg_backend_pid() as pid')).rows[0].pid), pid);
    assert.notEqual(Number((await other.query('select pg_backend_pid() as pid')).rows[0].pid), pid);
  }
  await su.end();
  await waitFor('its server to be closed', async () => (await consoleRows(b, 'SHOW SERVERS')).every((r) => Number(r.remote_pid) !== pid) || null);

  // the extended protocol (postgres.js sends everything so): the same
  const sql = postgres(b.url('load_su', 'loadpass', 'app'), { max: 1, onnotice: () => {} });
  t.after(() => sql.end());
  await sql`LOAD 'auto_explain'`;
  await waitFor('pinned (extended)', async () => (await consoleRows(b, 'SHOW CLIENTS')).find((r) => r.user === 'load_su')?.pinned === 'LOAD' || null);

  // a LOAD that fails loaded nothing: no pin (the next query waits for the check at the end of the first)
  const failed = await other.query("LOAD 'pgtide_no_such_library'").then(() => null, (e: PgError) => e);
  assert.ok(failed instanceof Error, 'LOAD of a missing library fails');
  await other.query('select 1');
  assert.deepEqual((await consoleRows(b, 'SHOW CLIENTS')).filter((r) => r.user === 'app' && r.database === 'app').map((r) => r.pinned), ['']);

  const admin = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'pgbouncer') }));
  await admin.connect();
  await admin.query("SET session_state_policy = 'refuse'");
  const err = await other.query("LOAD 'auto_explain'").then(() => null, (e: PgError) => e);
  assert.equal(err?.code, '0A000');
  assert.match(err!.message, /^LOAD is not allowed in transaction pooling/);
  const reasons = (await admin.query('SHOW SESSION_STATE_REASONS')).rows.filter((r) => r.reason === 'load').map((r) => `${r.user} ${r.action} ${r.count}`).sort();
  assert.deepEqual(reasons, ['app refuse 1', 'load_su pin 2']);
  await stillServes(b);
});

test('currval()/lastval() never return another client\'s sequence value: the server forgets them first (55000), and work within the transaction', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  await server.psql('DROP TABLE IF EXISTS seq_items; CREATE TABLE seq_items (id serial PRIMARY KEY, v int); ALTER TABLE seq_items OWNER TO app;', 'app');
  // one server for everybody: whatever a client leaves there, the next one finds
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, admin_users: 'app' }));
  const a = await appClient(t, b);
  const other = await appClient(t, b);
  const idA = (await a.query('INSERT INTO seq_items (v) VALUES (1) RETURNING id')).rows[0].id as number;
  const idB = (await other.query('INSERT INTO seq_items (v) VALUES (2) RETURNING id')).rows[0].id as number;
  assert.equal(idB, idA + 1);
  // a later transaction of `a`, on the server `other` used last: PostgreSQL would answer idB (other's); pgtide makes
  // the server forget it, so `a` learns that the value is not in its session instead of getting a wrong id
  for (const sql of ['SELECT lastval() AS v', "SELECT currval('seq_items_id_seq') AS v"]) {
    const err = await a.query(sql).then((r) => r.rows[0].v as unknown, (e: PgError) => e);
    assert.ok(err instanceof Error, `${sql} returned ${String(err)}`);
    assert.equal((err as PgError).code, '55000');
  }
  // extended protocol, a named statement: the second time only its Bind is sent
  for (let i = 0; i < 2; i++) {
    await other.query('INSERT INTO seq_items (v) VALUES (3)');
    const err = await a.query({ name: 'last_id', text: 'SELECT lastval() AS v' }).then((r) => r.rows[0].v as unknown, (e: PgError) => e);
    assert.equal((err as PgError).code, '55000', `round ${i}: ${String(err)}`);
  }
  // the uses that are right keep working: in the same query string, in the same transaction
  const both = await a.query('INSERT INTO seq_items (v) VALUES (4); SELECT lastval() AS v') as unknown as pg.QueryResult[];
  const mine = Number(both[1]!.rows[0].v);
  assert.equal((await a.query('SELECT v FROM seq_items WHERE id = $1', [mine])).rows[0].v, 4);
  await a.query('BEGIN');
  const inserted = (await a.query('INSERT INTO seq_items (v) VALUES (5) RETURNING id')).rows[0].id as number;
  assert.equal(Number((await a.query('SELECT lastval() AS v')).rows[0].v), inserted);
  assert.equal(Number((await a.query("SELECT currval('seq_items_id_seq') AS v")).rows[0].v), inserted);
  await a.query('COMMIT');
  const nv = await a.query("SELECT nextval('seq_items_id_seq') AS n, currval('seq_items_id_seq') AS c");
  assert.equal(nv.rows[0].n, nv.rows[0].c);
  const ss = (await consoleRows(b, 'SHOW SESSION_STATE')).find((r) => r.database === 'app')!;
  assert.equal(Number(ss.sequence_resets), 6); // 2 simple, 2 named, the query string, the nextval/currval pair

  // BEGIN sent alone (node-postgres, Prisma, postgres.js): the transaction's first statement is looked at instead
  const no55000 = async (what: string, run: () => Promise<unknown>) => {
    await other.query('INSERT INTO seq_items (v) VALUES (6)'); // the only server now has other's value
    const got = await run().then((v) => v, (e: PgError) => e);
    assert.equal((got as PgError).code, '55000', `${what}: ${String(got)}`);
  };
  const inTx = (begin: string, q: () => Promise<unknown>) => async () => {
    await a.query(begin);
    try {
      return await q();
    } finally {
      await a.query('ROLLBACK');
    }
  };
  await no55000('BEGIN, simple currval', inTx('BEGIN', () => a.query("SELECT currval('seq_items_id_seq') AS v")));
  await no55000('START TRANSACTION, simple lastval', inTx('START TRANSACTION ISOLATION LEVEL REPEATABLE READ', () => a.query('SELECT lastval()')));
  await no55000('BEGIN, unnamed Parse', inTx('begin;', () => a.query('SELECT currval($1::regclass) AS v', ['seq_items_id_seq'])));
  await no55000('BEGIN, Bind of a named statement', inTx('BEGIN', () => a.query({ name: 'last_id', text: 'SELECT lastval() AS v' })));
  const sql = postgres(b.url('app', 'apppass', 'app'), { max: 1, onnotice: () => {} });
  t.after(() => sql.end());
  for (let i = 0; i < 2; i++) {
    // postgres.js: `begin` by the extended protocol, then a named statement (its Parse, then only its Bind)
    await no55000(`postgres.js begin, round ${i}`, () => sql.begin((tx) => tx`SELECT lastval() AS v`));
  }
  // after BEGIN the look is the first statement's only: later ones see the transaction's own values
  await a.query('BEGIN');
  const own = (await a.query('INSERT INTO seq_items (v) VALUES (7) RETURNING id')).rows[0].id as number;
  assert.equal(Number((await a.query('SELECT lastval() AS v')).rows[0].v), own);
  await a.query('COMMIT');
  // and a transaction that starts with BEGIN and another statement in one string is looked at as before
  await no55000('BEGIN; currval in one string', () => a.query("BEGIN; SELECT currval('seq_items_id_seq'); COMMIT").finally(() => a.query('ROLLBACK')));
  // the unnamed statement parsed in one transaction and bound again in a later one without its Parse (asyncpg,
  // PQprepare with ""): the text kept for it is looked at
  const raw = await rawLogin(b);
  t.after(() => raw.destroy());
  raw.send(Buffer.concat([parse('', 'SELECT lastval()'), sync()]));
  assert.equal((await raw.until('Z'))?.type, 'Z');
  await other.query('INSERT INTO seq_items (v) VALUES (8)');
  raw.send(Buffer.concat([bind(''), execute(), sync()]));
  const e = await raw.until('E');
  assert.equal(e && errorFields(e.body).C, '55000', 'lastval() of the re-bound unnamed statement');
  assert.equal((await raw.until('Z'))?.type, 'Z');
  const after = (await consoleRows(b, 'SHOW SESSION_STATE')).find((r) => r.database === 'app')!;
  assert.equal(Number(after.sequence_resets), 6 + 7 + 2); // + the Parse's transaction and the Bind's
  await stillServes(b);
  await server.psql('DROP TABLE seq_items', 'app');
});

test('SELECT … INTO TEMP pins its client like CREATE TEMP: no other client sees the table', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, admin_users: 'app' }));
  const a = await appClient(t, b);
  const others = await Promise.all([appClient(t, b), appClient(t, b)]);
  await a.query('SELECT 42 AS x INTO TEMP sel_into_tmp');
  const pin = await waitFor('pinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).find((r) => r.pinned !== '')?.pinned);
  assert.match(String(pin), /temporary tables: 1/);
  for (let i = 0; i < 5; i++) {
    for (const o of others) {
      const err = await o.query('SELECT x FROM sel_into_tmp').then(() => null, (e: PgError) => e);
      assert.equal(err?.code, '42P01', 'another client saw the temporary table');
    }
    assert.equal((await a.query('SELECT x FROM sel_into_tmp')).rows[0].x, 42);
  }
  await a.query('DROP TABLE sel_into_tmp');
  await waitFor('unpinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).every((r) => r.pinned === '') || null);
  // refused, with session_state_policy = refuse
  const admin = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'pgbouncer') }));
  await admin.connect();
  await admin.query("SET session_state_policy = 'refuse'");
  const err = await a.query('SELECT 1 AS x INTO TEMPORARY sel_into_tmp2').then(() => null, (e: PgError) => e);
  assert.equal(err?.code, '0A000');
  assert.match(err!.message, /^SELECT … INTO TEMP is not allowed in transaction pooling/);
  assert.equal((await others[0]!.query("SELECT to_regclass('sel_into_tmp2') AS r")).rows[0].r, null);
});

test('DO blocks and CALLed procedures are asked about afterwards: the state they leave pins (or is tracked) like any other', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  await server.psql("CREATE OR REPLACE PROCEDURE set_seqscan_off() LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('enable_seqscan', 'off', false); END $$; GRANT EXECUTE ON PROCEDURE set_seqscan_off() TO app;", 'app');
  t.after(() => server.psql('DROP PROCEDURE IF EXISTS set_seqscan_off()', 'app'));
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, admin_users: 'app' }));
  const a = await appClient(t, b);
  const others = await Promise.all([appClient(t, b), appClient(t, b)]);
  const pinned = async () => (await consoleRows(b, 'SHOW CLIENTS')).find((r) => r.pinned !== '')?.pinned;

  await a.query("DO $$ BEGIN EXECUTE 'CREATE TEMP TABLE do_tmp (x int)'; END $$");
  assert.match(String(await waitFor('pinned by DO', pinned)), /temporary tables: 1/);
  for (const o of others) assert.equal((await o.query("SELECT to_regclass('do_tmp') AS r")).rows[0].r, null);
  await a.query('DROP TABLE do_tmp');
  await waitFor('unpinned', async () => (await pinned()) === undefined || null);

  await a.query('CALL set_seqscan_off()');
  assert.match(String(await waitFor('pinned by CALL', pinned)), /SET enable_seqscan/);
  for (const o of others) assert.equal((await o.query("SELECT current_setting('enable_seqscan') AS v")).rows[0].v, 'on');
  await a.query('RESET enable_seqscan');
  await waitFor('unpinned', async () => (await pinned()) === undefined || null);

  // a function in pg_temp: also asked about (CREATE … pg_temp), and counted
  await a.query('CREATE FUNCTION pg_temp.tmp_fn() RETURNS int LANGUAGE sql AS $$ SELECT 7 $$');
  assert.match(String(await waitFor('pinned by a temporary function', pinned)), /temporary functions: 1/);
  for (const o of others) {
    const err = await o.query('SELECT pg_temp.tmp_fn()').then(() => null, (e: PgError) => e);
    // 3F000 where the session has no temporary schema, 42883 where it has one without the function
    assert.ok(err?.code === '3F000' || err?.code === '42883', `another client could call the temporary function (${String(err?.code)})`);
  }
  await a.query('DROP FUNCTION pg_temp.tmp_fn()');
  await waitFor('unpinned', async () => (await pinned()) === undefined || null);

  // a tracked setting made by a DO block follows its client, as a SET would
  await a.query("DO $$ BEGIN EXECUTE 'SET statement_timeout = 4321'; END $$");
  for (let i = 0; i < 4; i++) {
    assert.equal((await a.query("SELECT current_setting('statement_timeout') AS v")).rows[0].v, '4321ms');
    for (const o of others) assert.equal((await o.query("SELECT current_setting('statement_timeout') AS v")).rows[0].v, '0');
  }
  assert.equal(await pinned(), undefined);
});

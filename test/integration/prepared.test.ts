// Protocol-level prepared statements in transaction pooling, byte by byte with a raw client: a statement follows
// its client to any server (re-prepared, the re-prepare hidden), pooler-made ParseCompletes arrive in order, a
// batch that fails undoes what it would have created, Close is answered without touching the server, the LRU
// evicts, DEALLOCATE ALL clears, a name prepared twice is PostgreSQL's 42P05, and the counters show it all. The
// unnamed statement follows its client too, a Parse in a failed transaction is PostgreSQL's to answer, and a
// pipelined batch never relies on an earlier one that failed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { sharedPostgres } from '../harness/postgres.js';
import { pgtideWith, track, type Pgtide } from '../harness/pgtide.js';
import { stillServes, superuser, waitFor, consoleRows } from '../harness/util.js';
import { bind, closeMsg, describe, execute, expectErrorAndClose, parse, query, rawLogin, replies, sync, typed, type Raw } from '../harness/raw.js';

const STMT = 'select $1::int + 1 as x, pg_backend_pid() as pid';

async function open(t: { after(fn: () => unknown): unknown }, b: Pgtide): Promise<Raw> {
  const r = await rawLogin(b);
  t.after(() => r.close());
  return r;
}

/** The backend pid a reply list's DataRow `D:<x>,<pid>` came from. */
function pidOf(rs: string[]): number {
  const d = rs.find((x) => x.startsWith('D:'));
  assert.ok(d, `no DataRow in ${rs.join(' ')}`);
  return Number(d.split(',')[1]);
}


test('a named statement follows its client to a new server: re-prepared there, the extra ParseComplete hidden', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, admin_users: 'app' }));
  const su = await superuser(t, server);
  const a = await open(t, b);

  a.send(Buffer.concat([parse('s1', STMT), sync()]));
  assert.deepEqual(await replies(a), ['1', 'Z']);
  a.send(Buffer.concat([bind('s1', ['41']), execute(), sync()]));
  const first = await replies(a);
  assert.deepEqual(first.map((x) => x.replace(/,\d+$/, '')), ['2', 'D:42', 'C:SELECT 1', 'Z']);

  // the only server goes away: the next one has never seen s1
  const oldPid = pidOf(first);
  await su.query('select pg_terminate_backend($1)', [oldPid]);
  await waitFor('the pooler to notice the dead server', async () => {
    const rows = await consoleRows(b, 'SHOW SERVERS');
    return rows.every((r) => Number(r.remote_pid) !== oldPid) || null;
  });

  // standalone Describe (JDBC does this): no ParseComplete may reach the client
  a.send(Buffer.concat([describe('S', 's1'), sync()]));
  assert.deepEqual(await replies(a), ['t', 'T', 'Z']);
  a.send(Buffer.concat([bind('s1', ['1']), execute(), sync()]));
  const second = await replies(a);
  assert.deepEqual(second.map((x) => x.replace(/,\d+$/, '')), ['2', 'D:2', 'C:SELECT 1', 'Z']);
  assert.notEqual(pidOf(second), oldPid, 'the statement ran on a new server');

  // a second client parsing the same text under its own name shares the server-side statement:
  // its ParseComplete is the pooler's, in order among the server's replies
  const c = await open(t, b);
  c.send(Buffer.concat([parse('', 'select 1'), bind(''), execute(), parse('mine', STMT), bind('mine', ['9']), execute(), sync()]));
  const rs = await replies(c);
  assert.deepEqual(rs.map((x) => x.replace(/,\d+$/, '')), ['1', '2', 'D:1', 'C:SELECT 1', '1', '2', 'D:10', 'C:SELECT 1', 'Z']);

  const stats = (await consoleRows(b, 'SHOW STATS')).find((r) => r.database === 'app')!;
  assert.equal(Number(stats.total_client_parse_count), 2);
  assert.equal(Number(stats.total_server_parse_count), 2, 'prepared once on each server');
  assert.equal(Number(stats.total_bind_count), 3);
  const clients = (await consoleRows(b, 'SHOW CLIENTS')).filter((r) => r.database === 'app');
  assert.deepEqual(clients.map((r) => Number(r.prepared_statements)).sort(), [1, 1]);
  await stillServes(b);
});

test('a batch that fails takes back the statements it would have created; Close is answered by the pooler', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }));
  const a = await open(t, b);

  // a syntax error: the name is not kept, so preparing it again is fine
  a.send(Buffer.concat([parse('e1', 'selec 1'), bind('e1'), execute(), sync()]));
  const bad = await replies(a);
  assert.equal(bad.length, 2);
  assert.match(bad[0]!, /^E:42601:/);
  a.send(Buffer.concat([parse('e1', 'select 5'), bind('e1'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['1', '2', 'D:5', 'C:SELECT 1', 'Z']);

  // an error earlier in the batch: PostgreSQL ignores the later Parse, and so does the pooler
  a.send(Buffer.concat([parse('', 'select 1/0'), bind(''), execute(), parse('late', 'select 8'), sync()]));
  const err = await replies(a);
  assert.deepEqual(err.map((x) => x.replace(/^(E:\w+):.*/, '$1')), ['1', 'E:22012', 'Z']); // the constant is folded at Bind
  a.send(Buffer.concat([bind('late'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['E:26000:prepared statement "late" does not exist', 'Z']);
  a.send(Buffer.concat([parse('late', 'select 8'), bind('late'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['1', '2', 'D:8', 'C:SELECT 1', 'Z']);

  // Close: answered in order, the name is gone for this client
  a.send(Buffer.concat([closeMsg('S', 'late'), sync()]));
  assert.deepEqual(await replies(a), ['3', 'Z']);
  a.send(Buffer.concat([bind('late'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['E:26000:prepared statement "late" does not exist', 'Z']);
  a.send(Buffer.concat([closeMsg('S', 'never-prepared'), closeMsg('P', ''), sync()]));
  assert.deepEqual(await replies(a), ['3', '3', 'Z']);
  await stillServes(b);
});

test('each server keeps at most max_prepared_statements, evicting the least recently used', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, max_prepared_statements: 2, admin_users: 'app' }));
  const a = await open(t, b);
  for (const n of [1, 2, 3, 4]) {
    a.send(Buffer.concat([parse(`q${n}`, `select ${n} as n`), bind(`q${n}`), execute(), sync()]));
    assert.deepEqual(await replies(a), ['1', '2', `D:${n}`, 'C:SELECT 1', 'Z']);
  }
  const srv = (await consoleRows(b, 'SHOW SERVERS')).filter((r) => r.database === 'app');
  assert.deepEqual(srv.map((r) => Number(r.prepared_statements)), [2]);
  const onServer = async () => {
    const r2 = await open(t, b);
    r2.send(query(`select string_agg(statement, ' | ' order by statement) from pg_prepared_statements`));
    const rs = await replies(r2);
    r2.close();
    return rs.find((x) => x.startsWith('D:'))!;
  };
  assert.equal(await onServer(), 'D:select 3 as n | select 4 as n');
  // q1 was evicted: using it again prepares it again, transparently
  a.send(Buffer.concat([bind('q1'), execute(), bind('q4'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['2', 'D:1', 'C:SELECT 1', '2', 'D:4', 'C:SELECT 1', 'Z']);
  assert.equal(await onServer(), 'D:select 1 as n | select 4 as n');
  await stillServes(b);
});

test('DEALLOCATE ALL clears the tracked statements; a name prepared twice is 42P05', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }));
  const a = await open(t, b);
  a.send(Buffer.concat([parse('d1', 'select 11'), sync()]));
  assert.deepEqual(await replies(a), ['1', 'Z']);
  a.send(query('DEALLOCATE ALL'));
  assert.deepEqual(await replies(a), ['C:DEALLOCATE ALL', 'Z']);
  a.send(Buffer.concat([bind('d1'), sync()]));
  assert.deepEqual(await replies(a), ['E:26000:prepared statement "d1" does not exist', 'Z']);
  a.send(Buffer.concat([parse('d1', 'select 11'), bind('d1'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['1', '2', 'D:11', 'C:SELECT 1', 'Z']);

  a.send(Buffer.concat([parse('d1', 'select 12'), sync()]));
  const dup = await replies(a);
  assert.match(dup[0]!, /^E:42P05:prepared statement "d1" already exists/);
  await stillServes(b);
});

test('the statement bound last is remembered, but never past its Close, DEALLOCATE ALL, or for another name with the same characters', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }));
  const a = await open(t, b);
  const run = async (name: string) => {
    a.send(Buffer.concat([bind(name), execute(), sync()]));
    return (await replies(a)).join(' ');
  };
  a.send(Buffer.concat([parse('m', 'select 1'), sync()]));
  assert.deepEqual(await replies(a), ['1', 'Z']);
  assert.equal(await run('m'), '2 D:1 C:SELECT 1 Z');
  assert.equal(await run('m'), '2 D:1 C:SELECT 1 Z');

  // closed and prepared again as another query: the new one runs
  a.send(Buffer.concat([closeMsg('S', 'm'), parse('m', 'select 2'), sync()]));
  assert.deepEqual(await replies(a), ['3', '1', 'Z']);
  assert.equal(await run('m'), '2 D:2 C:SELECT 1 Z');

  // DEALLOCATE ALL: gone, then prepared again as a third query
  a.send(query('DEALLOCATE ALL'));
  assert.deepEqual(await replies(a), ['C:DEALLOCATE ALL', 'Z']);
  assert.equal(await run('m'), 'E:26000:prepared statement "m" does not exist Z');
  a.send(Buffer.concat([parse('m', 'select 3'), sync()]));
  assert.deepEqual(await replies(a), ['1', 'Z']);
  assert.equal(await run('m'), '2 D:3 C:SELECT 1 Z');

  // names beyond ASCII, one of them the other's UTF-8 bytes read as Latin-1: each finds its own statement
  a.send(Buffer.concat([parse('é', 'select 4'), parse('Ã©', 'select 5'), parse('e', 'select 6'), sync()]));
  assert.deepEqual(await replies(a), ['1', '1', '1', 'Z']);
  for (const [name, want] of [['é', 4], ['Ã©', 5], ['é', 4], ['e', 6], ['é', 4], ['e', 6], ['Ã©', 5]] as const) {
    assert.equal(await run(name), `2 D:${want} C:SELECT 1 Z`, name);
  }
  await stillServes(b);
});

test('rewritten Binds in batches larger than the pooler gathers at once: a 200 kB parameter, and 2,000 Binds sent in one piece', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }));
  const a = await open(t, b);
  a.send(Buffer.concat([parse('len', 'select length($1::text)'), sync()]));
  assert.deepEqual(await replies(a), ['1', 'Z']);
  // one Bind larger than the 64 kB gather buffer, between two small ones
  a.send(Buffer.concat([bind('len', ['ab']), execute(), bind('len', ['x'.repeat(200_000)]), execute(), bind('len', ['abc']), execute(), sync()]));
  assert.deepEqual(await replies(a), ['2', 'D:2', 'C:SELECT 1', '2', 'D:200000', 'C:SELECT 1', '2', 'D:3', 'C:SELECT 1', 'Z']);
  // 2,000 Binds of a named statement in one send (about 90 kB, longer still once renamed): every answer, in order
  const n = 2000;
  const batch: Buffer[] = [];
  for (let i = 0; i < n; i++) batch.push(bind('len', ['y'.repeat(i % 17)]), execute());
  batch.push(sync());
  a.send(Buffer.concat(batch));
  const rs = await replies(a, 15_000);
  assert.equal(rs.length, 3 * n + 1);
  for (let i = 0; i < n; i++) assert.deepEqual(rs.slice(3 * i, 3 * i + 3), ['2', `D:${i % 17}`, 'C:SELECT 1'], `Bind ${i}`);
  assert.equal(rs[3 * n], 'Z');
  await stillServes(b);
});

test('a gathered write the server cannot take at once is left to it: another client gathering meanwhile corrupts nothing', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2 }));
  const a = await open(t, b);
  a.send(Buffer.concat([parse('w', 'select $1::int as n'), sync()]));
  assert.deepEqual(await replies(a), ['1', 'Z']);
  // the backend sleeps 1 s without reading while about 7 MB of small rewritten Binds come: pgtide's writes to it
  // fill the socket buffers and go asynchronous, holding the gather buffer they were made from
  const n = 150_000;
  const batch: Buffer[] = [parse('', 'select pg_sleep(1)'), bind(''), execute()];
  for (let i = 0; i < n; i++) batch.push(bind('w', [String(i)]), execute());
  batch.push(sync());
  a.send(Buffer.concat(batch));
  // meanwhile another client runs named statements through the other server: its Binds are gathered too
  const c = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app') }));
  await c.connect();
  for (let i = 0; i < 100; i++) {
    const { rows } = await c.query<{ s: string }>({ name: 'other', text: 'select $1::text as s', values: [`other-${i}`] });
    assert.equal(rows[0]!.s, `other-${i}`);
  }
  // every one of the 150,000 answers, in order
  assert.equal((await a.msg(10_000))?.type, '1');
  assert.equal((await a.msg())?.type, '2');
  assert.equal((await a.msg())?.type, 'D');
  assert.equal((await a.msg())?.type, 'C');
  for (let i = 0; i < n; i++) {
    const bc = await a.msg(10_000);
    const d = await a.msg();
    const cc = await a.msg();
    if (bc?.type !== '2' || d?.type !== 'D' || cc?.type !== 'C' || d.body.toString('latin1', 6) !== String(i)) {
      assert.fail(`answer ${i}: ${bc?.type} ${d?.type} ${d?.body.toString('latin1', 6)} ${cc?.type}`);
    }
  }
  assert.equal((await a.msg())?.type, 'Z');
  await stillServes(b);
});

test('a shared statement made stale by DDL is prepared again and the batch retried, except inside a transaction', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const su = track(t, new pg.Client({ host: server.socketDir, port: server.port, user: 'postgres', database: 'app' }));
  await su.connect();
  await su.query('drop table if exists app_public_stale; create table app_public_stale (a int); insert into app_public_stale values (1); alter table app_public_stale owner to app');
  t.after(() => server.psql('drop table if exists app_public_stale', 'app'));
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, admin_users: 'app' }));
  const SQL = 'select * from app_public_stale';
  const a = await open(t, b);
  a.send(Buffer.concat([parse('s', SQL), bind('s'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['1', '2', 'D:1', 'C:SELECT 1', 'Z']);

  await su.query('alter table app_public_stale add column b int default 2');
  // another client, same text: PostgreSQL would plan it afresh, and so it must look through the pooler
  const c = await open(t, b);
  c.send(Buffer.concat([parse('mine', SQL), bind('mine'), execute(), sync()]));
  assert.deepEqual(await replies(c), ['1', '2', 'D:1,2', 'C:SELECT 1', 'Z']);
  const ps = await consoleRows(b, 'SHOW PREPARED_STATEMENTS');
  assert.deepEqual(ps.map((r) => [r.query, Number(r.clients), Number(r.servers), Number(r.retries)]), [[SQL, 2, 1, 1]]);
  assert.match(b.log(), /prepared statement PGTIDE_\d+ prepared again and the batch retried after: cached plan must not change result type/);

  // inside a transaction block a retry is not safe: the client gets PostgreSQL's error, as it would without a pooler
  await su.query('alter table app_public_stale add column c int default 3');
  a.send(query('begin'));
  assert.deepEqual(await replies(a), ['C:BEGIN', 'Z']);
  a.send(Buffer.concat([bind('s'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['E:0A000:cached plan must not change result type', 'Z']);
  a.send(query('rollback'));
  assert.deepEqual(await replies(a), ['C:ROLLBACK', 'Z']);
  // outside one, the same client's next use is retried
  a.send(Buffer.concat([bind('s'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['2', 'D:1,2,3', 'C:SELECT 1', 'Z']);
  // a BEGIN pipelined before the Bind, not answered yet when the Bind is sent: no retry either
  await su.query('alter table app_public_stale add column d int default 4');
  a.send(Buffer.concat([query('begin'), bind('s'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['C:BEGIN', 'Z']);
  assert.deepEqual(await replies(a), ['E:0A000:cached plan must not change result type', 'Z']);
  a.send(query('rollback'));
  assert.deepEqual(await replies(a), ['C:ROLLBACK', 'Z']);
  a.send(Buffer.concat([bind('s'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['2', 'D:1,2,3,4', 'C:SELECT 1', 'Z']);
  await stillServes(b);
});

test('a named statement that takes an advisory lock pins its client when run, however it was prepared', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, admin_users: 'app' }));
  const a = await open(t, b);
  // Parse + Sync between transactions: answered by the pooler, no server involved yet
  a.send(Buffer.concat([parse('lk', 'select pg_advisory_lock($1::int)'), sync()]));
  assert.deepEqual(await replies(a), ['1', 'Z']);
  assert.ok((await consoleRows(b, 'SHOW CLIENTS')).every((r) => r.pinned === ''), 'preparing takes no lock');
  a.send(Buffer.concat([bind('lk', ['77']), execute(), sync()]));
  assert.deepEqual(await replies(a), ['2', 'D:', 'C:SELECT 1', 'Z']);
  const pin = await waitFor('pinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).find((r) => r.pinned !== '')?.pinned);
  assert.match(String(pin), /advisory locks: 1/);
  a.send(query('select pg_advisory_unlock(77)'));
  assert.deepEqual(await replies(a), ['T', 'D:t', 'C:SELECT 1', 'Z']);
  await waitFor('unpinned', async () => (await consoleRows(b, 'SHOW CLIENTS')).every((r) => r.pinned === '') || null);
  await stillServes(b);
});

test('a malformed Parse, Bind, Describe or Close is a protocol violation (08P01) for that client only', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }));
  const bad = [
    typed('B', Buffer.from('portal-without-nul')), // the portal name never ends
    typed('B', Buffer.from('\0stmt-without-nul')), // nor the statement name
    typed('D', Buffer.from('S')), // no name at all
    typed('C', Buffer.from('Sname')),
    typed('P', Buffer.from('name-without-nul')),
  ];
  for (const msg of bad) {
    const a = await open(t, b);
    a.send(query('select 1'));
    assert.deepEqual(await replies(a), ['T', 'D:1', 'C:SELECT 1', 'Z']);
    a.send(Buffer.concat([msg, sync()]));
    await expectErrorAndClose(a, '08P01', /invalid message format/);
    await stillServes(b);
  }
});

test('the unnamed statement follows its client across transactions; another client never runs it, one without one gets 26000', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, admin_users: 'app' }));
  const a = await open(t, b);
  const c = await open(t, b);
  const d = await open(t, b);
  // asyncpg / PQprepare(conn, "", …): the Parse in one round trip, the Bind in the next (another transaction)
  a.send(Buffer.concat([parse('', 'select $1::int * 10 as a'), sync()]));
  assert.deepEqual(await replies(a), ['1', 'Z']);
  // meanwhile another client parses its own unnamed statement on the same (only) server
  c.send(Buffer.concat([parse('', "select 'c' as c"), bind(''), execute(), sync()]));
  assert.deepEqual(await replies(c), ['1', '2', 'D:c', 'C:SELECT 1', 'Z']);
  a.send(Buffer.concat([bind('', ['4']), execute(), sync()]));
  assert.deepEqual(await replies(a), ['2', 'D:40', 'C:SELECT 1', 'Z'], "a ran its own statement, not c's");
  a.send(Buffer.concat([describe('S', ''), sync()]));
  assert.deepEqual(await replies(a), ['t', 'T', 'Z']);
  // a client that never parsed one finds none, as in its own session (the server holds a's)
  d.send(Buffer.concat([bind(''), execute(), sync()]));
  assert.deepEqual(await replies(d), ['E:26000:unnamed prepared statement does not exist', 'Z']);
  // a simple query drops the client's unnamed statement, as PostgreSQL does
  a.send(query('select 1'));
  assert.deepEqual(await replies(a), ['T', 'D:1', 'C:SELECT 1', 'Z']);
  a.send(Buffer.concat([bind('', ['5']), execute(), sync()]));
  assert.deepEqual(await replies(a), ['E:26000:unnamed prepared statement does not exist', 'Z']);
  const ss = (await consoleRows(b, 'SHOW SESSION_STATE')).find((r) => r.user === 'app')!;
  assert.ok(Number(ss.unnamed_reprepares) >= 1, `unnamed_reprepares ${ss.unnamed_reprepares}`);
  await stillServes(b);
});

test('a Parse in a failed transaction block gets 25P02 from PostgreSQL even when the server has the statement; the name stays free', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }));
  const a = await open(t, b);
  const c = await open(t, b);
  c.send(Buffer.concat([parse('s', 'select 21 as x'), bind('s'), execute(), sync()]));
  assert.deepEqual(await replies(c), ['1', '2', 'D:21', 'C:SELECT 1', 'Z']);
  a.send(query('BEGIN'));
  assert.deepEqual(await replies(a), ['C:BEGIN', 'Z']);
  a.send(query('select 1/0'));
  assert.match((await replies(a))[0]!, /^E:22012:/);
  // the server has the statement (c prepared it there): pgtide must not answer ParseComplete itself
  a.send(Buffer.concat([parse('mine', 'select 21 as x'), sync()]));
  assert.deepEqual(await replies(a), ['E:25P02:current transaction is aborted, commands ignored until end of transaction block', 'Z']);
  a.send(query('ROLLBACK'));
  assert.deepEqual(await replies(a), ['C:ROLLBACK', 'Z']);
  // PostgreSQL did not create it, so the name is free (no 42P05, no disconnect)
  a.send(Buffer.concat([parse('mine', 'select 21 as x'), bind('mine'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['1', '2', 'D:21', 'C:SELECT 1', 'Z']);
  await stillServes(b);
});

test('a pipelined batch that relies on a statement an earlier failed batch would have made fails as it would directly', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1 }));
  const a = await open(t, b);
  // batch 1 fails before its Parse; batch 2, sent with it, binds the statement batch 1 would have made
  a.send(Buffer.concat([
    execute('nope'), parse('p1', 'select 31'), sync(),
    bind('p1'), execute(), sync(),
    parse('p1', 'select 32'), bind('p1'), execute(), sync(),
  ]));
  assert.deepEqual(await replies(a), ['E:34000:portal "nope" does not exist', 'Z']);
  assert.deepEqual(await replies(a), ['E:26000:prepared statement "p1" does not exist', 'Z']);
  assert.deepEqual(await replies(a), ['1', '2', 'D:32', 'C:SELECT 1', 'Z']);
  await stillServes(b);
});

test('a client that leaves while its pipelined batch waits for an earlier one: its server is not handed on mid-batch, others are served', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, admin_users: 'app' }));
  const a = await open(t, b);
  // batch 1 runs for 300 ms and makes a statement; batch 2 binds it, so it waits for batch 1's answer
  a.send(Buffer.concat([
    parse('', 'select pg_sleep(0.3)'), bind(''), execute(), parse('w1', 'select 41'), sync(),
    bind('w1'), execute(), sync(),
  ]));
  await new Promise((r) => setTimeout(r, 50));
  a.close();
  const c = await open(t, b);
  c.send(Buffer.concat([parse('w1', 'select 42'), bind('w1'), execute(), sync()]));
  assert.deepEqual(await replies(c), ['1', '2', 'D:42', 'C:SELECT 1', 'Z']);
  await waitFor('no server left active', async () => (await consoleRows(b, 'SHOW POOLS')).every((p) => Number(p.sv_active) === 0) || null);
  await stillServes(b);
});

test('pipelined batches that each parse their own unnamed statement go on at once; a Bind that relies on an earlier batch waits for it', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, admin_users: 'app' }));
  const a = await open(t, b);
  const waits = async (): Promise<number> => Number((await consoleRows(b, 'SHOW SESSION_STATE')).find((r) => r.user === 'app')!.pipeline_waits);
  // postgres.js with prepare: false, libpq's pipeline mode: Parse, Bind, Execute, Sync of the unnamed statement, many in one write
  a.send(Buffer.concat([1, 2, 3].flatMap((k) => [parse('', `select $1::int * ${k + 1} as a`), bind('', [String(k)]), execute(), sync()])));
  assert.deepEqual(await replies(a), ['1', '2', 'D:2', 'C:SELECT 1', 'Z']);
  assert.deepEqual(await replies(a), ['1', '2', 'D:6', 'C:SELECT 1', 'Z']);
  assert.deepEqual(await replies(a), ['1', '2', 'D:12', 'C:SELECT 1', 'Z']);
  assert.equal(await waits(), 0, 'a batch that parses its own unnamed statement does not wait');
  // an earlier batch's unnamed statement is not a named one's concern either
  a.send(Buffer.concat([parse('', 'select 1 as u'), bind(''), execute(), sync(), parse('n2', 'select 8 as n'), bind('n2'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['1', '2', 'D:1', 'C:SELECT 1', 'Z']);
  assert.deepEqual(await replies(a), ['1', '2', 'D:8', 'C:SELECT 1', 'Z']);
  assert.equal(await waits(), 0);
  // a Bind of the unnamed statement an earlier batch parsed (PQsendPrepare, then PQsendQueryPrepared) waits for it
  a.send(Buffer.concat([parse('', 'select $1::int * 5 as a'), sync(), bind('', ['2']), execute(), sync()]));
  assert.deepEqual(await replies(a), ['1', 'Z']);
  assert.deepEqual(await replies(a), ['2', 'D:10', 'C:SELECT 1', 'Z']);
  assert.equal(await waits(), 1);
  // and so does a Bind of a named statement an earlier batch parsed
  a.send(Buffer.concat([parse('n1', 'select 7 as n'), bind('n1'), execute(), sync(), bind('n1'), execute(), sync()]));
  assert.deepEqual(await replies(a), ['1', '2', 'D:7', 'C:SELECT 1', 'Z']);
  assert.deepEqual(await replies(a), ['2', 'D:7', 'C:SELECT 1', 'Z']);
  assert.equal(await waits(), 2);
  await stillServes(b);
});

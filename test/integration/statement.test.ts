// Statement pooling with real drivers: single statements (simple, extended, pipelined) are pooled per statement;
// a transaction block is refused with PgBouncer's error, and the pooler keeps serving.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import postgres from 'postgres';
import { sharedPostgres, pgBin, pgEnv, run } from '../harness/postgres.js';
import { pgtideWith, track } from '../harness/pgtide.js';
import { appClient, stillServes, superuser, waitFor, type PgError } from '../harness/util.js';

const TX_MSG = 'transaction blocks not allowed in statement pooling mode';

test('statement mode: single statements from many clients share two servers (simple, extended, pipelined)', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'statement', default_pool_size: 2, query_wait_timeout: 5 }));
  const clients = await Promise.all(Array.from({ length: 10 }, () => appClient(t, b, { ignoreErrors: true })));
  const pids = new Set<number>();
  await Promise.all(clients.map(async (c, i) => {
    for (let k = 0; k < 10; k++) {
      const id = i * 100 + k;
      const r = k % 2
        ? await c.query<{ id: number; pid: number }>('SELECT $1::int AS id, pg_backend_pid() AS pid', [id])
        : await c.query<{ id: number; pid: number }>(`SELECT ${id} AS id, pg_backend_pid() AS pid`);
      assert.equal(r.rows[0]!.id, id);
      pids.add(r.rows[0]!.pid);
    }
  }));
  assert.ok(pids.size >= 1 && pids.size <= 2, `${pids.size} backends for a pool of 2`);

  // a multi-statement simple query is one statement for the pooler when it ends outside a transaction
  const c = clients[0]!;
  const multi = await c.query('BEGIN; SELECT 1 AS a; COMMIT') as unknown as pg.QueryResult[];
  assert.equal(multi.length, 3);
  assert.deepEqual(multi[1]!.rows, [{ a: 1 }]);

  // postgres.js pipelines parameterised queries on one connection
  const sql = track(t, postgres(b.url('app', 'apppass', 'app'), { max: 1, onnotice: () => {} }));
  const res = await Promise.all(Array.from({ length: 30 }, (_, i) => sql`SELECT ${i}::int AS i`));
  assert.deepEqual(res.map((r) => r[0]!.i), Array.from({ length: 30 }, (_, i) => i));
  await stillServes(b);
});

test(`statement mode: BEGIN fails with "${TX_MSG}", the server is dropped, the pooler keeps serving`, async (t) => {
  const server = await sharedPostgres();
  await server.psql('DROP TABLE IF EXISTS stmt_t; CREATE TABLE stmt_t (x int); GRANT ALL ON stmt_t TO app;', 'app');
  t.after(() => server.psql('DROP TABLE IF EXISTS stmt_t', 'app'));
  const b = track(t, await pgtideWith(server, { pool_mode: 'statement', default_pool_size: 1, query_wait_timeout: 5 }));
  const su = await superuser(t, server);
  const bystander = await appClient(t, b, { ignoreErrors: true });
  const pid0 = (await bystander.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

  const mark = b.log().length;
  const c = await appClient(t, b, { ignoreErrors: true });
  const ended = new Promise<void>((r) => c.once('end', () => r()));
  await assert.rejects(c.query('BEGIN'), (e: PgError) => {
    assert.equal(e.message, TX_MSG);
    assert.equal(e.code, '0A000');
    assert.equal(e.severity, 'FATAL');
    return true;
  });
  await ended; // the client is disconnected
  await b.waitForLog(new RegExp(`closing because: ${TX_MSG}`), 3000, mark);
  // the server that ran the BEGIN is gone, so its open transaction cannot reach anyone else
  await waitFor('the backend to go away', async () =>
    (await su.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid0])).rowCount === 0, 3000, 20);

  // an INSERT inside an explicit transaction is never committed
  const c2 = await appClient(t, b, { ignoreErrors: true });
  await assert.rejects(c2.query("BEGIN; INSERT INTO stmt_t VALUES (1)"), (e: PgError) => e.message === TX_MSG && e.code === '0A000');
  assert.equal(await server.psql('SELECT count(*) FROM stmt_t', 'app'), '0');

  // the extended protocol gets the same treatment
  const c3 = await appClient(t, b, { ignoreErrors: true });
  await assert.rejects(c3.query({ text: 'BEGIN', queryMode: 'extended' } as pg.QueryConfig), (e: PgError) => e.message === TX_MSG && e.code === '0A000');

  // the bystander's next statement runs on a fresh server, outside any transaction
  const { rows } = await bystander.query<{ pid: number; fresh: boolean; xid: string | null }>(
    'SELECT pg_backend_pid() AS pid, now() = statement_timestamp() AS fresh, pg_current_xact_id_if_assigned()::text AS xid');
  assert.notEqual(rows[0]!.pid, pid0);
  assert.equal(rows[0]!.fresh, true);
  assert.equal(rows[0]!.xid, null);
  await bystander.query('INSERT INTO stmt_t VALUES (2)');
  assert.equal(await server.psql('SELECT count(*) FROM stmt_t', 'app'), '1');
  await stillServes(b);
});

test('statement mode: psql BEGIN shows the error and exits non-zero', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'statement', default_pool_size: 1, query_wait_timeout: 5 }));
  const args = ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(b.port), '-U', 'app', '-d', 'app'];
  const env = pgEnv({ PGPASSWORD: 'apppass' });
  assert.equal((await run(pgBin('psql'), [...args, '-c', 'SELECT 40 + 2'], { env })).trim(), '42');
  await assert.rejects(run(pgBin('psql'), [...args, '-v', 'ON_ERROR_STOP=1', '-c', 'BEGIN'], { env, timeoutMs: 10_000 }),
    (e: Error) => e.message.includes(TX_MSG));
  assert.equal((await run(pgBin('psql'), [...args, '-c', 'SELECT 43'], { env })).trim(), '43');
  await stillServes(b);
});

// Transaction pooling with real drivers: pgbench (simple, extended, TPC-B), 1000 clients over 25 servers,
// and transactions that stay whole (isolation, rollback, never split across servers).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { sharedPostgres, pgBin, pgEnv, run, type PgServer } from '../harness/postgres.js';
import { pgtideWith, track, type Pgtide } from '../harness/pgtide.js';
import { appClient, stillServes, superuser, type PgError } from '../harness/util.js';

async function recreateDb(server: PgServer, name: string): Promise<void> {
  await server.psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE);\nCREATE DATABASE ${name} OWNER app;`);
}

function pgbench(b: Pgtide, db: string, args: string[], timeoutMs = 40_000): Promise<string> {
  return run(pgBin('pgbench'), [...args, '-h', '127.0.0.1', '-p', String(b.port), '-U', 'app', db], {
    env: pgEnv({ PGPASSWORD: 'apppass' }),
    timeoutMs,
  });
}

function processed(out: string): number {
  const m = /number of transactions actually processed: (\d+)/.exec(out);
  assert.ok(m, `pgbench printed no transaction count:\n${out}`);
  return Number(m[1]);
}

test('pgbench through pgtide in transaction mode: -S simple and extended with 100 clients, TPC-B with consistent sums', async (t) => {
  const server = await sharedPostgres();
  await recreateDb(server, 'bench_tx');
  t.after(() => server.psql('DROP DATABASE IF EXISTS bench_tx WITH (FORCE)'));
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', max_client_conn: 200, default_pool_size: 20 },
    `bench_tx = host=127.0.0.1 port=${server.port} dbname=bench_tx`));

  // initialisation (DDL, COPY, VACUUM) goes through the pooler too
  await pgbench(b, 'bench_tx', ['-i', '-s', '1', '-q']);
  assert.equal(await server.psql('SELECT count(*) FROM pgbench_accounts', 'bench_tx'), '100000');

  for (const mode of ['simple', 'extended']) {
    const out = await pgbench(b, 'bench_tx', ['-n', '-S', '-M', mode, '-c', '100', '-j', '2', '-T', '3']);
    assert.match(out, /number of clients: 100\b/);
    assert.match(out, new RegExp(`query mode: ${mode}`));
    assert.match(out, /number of failed transactions: 0 \(/, out);
    assert.ok(processed(out) > 0, out);
  }

  const out = await pgbench(b, 'bench_tx', ['-n', '-c', '20', '-j', '2', '-T', '3']);
  assert.match(out, /TPC-B/);
  assert.match(out, /number of failed transactions: 0 \(/, out);
  const n = processed(out);
  assert.ok(n > 0, out);
  // every transaction's updates landed together: all balance sums equal the history sum, one history row per transaction
  const sums = await server.psql(
    `SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' ||
            (SELECT sum(bbalance) FROM pgbench_branches) || ' ' || (SELECT coalesce(sum(delta), 0) FROM pgbench_history) || ' ' ||
            (SELECT count(*) FROM pgbench_history)`,
    'bench_tx');
  const [a, tl, br, h, rows] = sums.split(' ').map(Number);
  assert.equal(a, h, `sum(abalance) != sum(delta): ${sums}`);
  assert.equal(tl, h, `sum(tbalance) != sum(delta): ${sums}`);
  assert.equal(br, h, `sum(bbalance) != sum(delta): ${sums}`);
  assert.equal(rows, n, `history rows (${rows}) != processed transactions (${n})`);
  await stillServes(b, { db: 'bench_tx' });
});

test('1000 concurrent clients over 25 server connections: each gets its own answers, PostgreSQL never sees more than 25 backends', async (t) => {
  const server = await sharedPostgres();
  await recreateDb(server, 'tx_many');
  t.after(() => server.psql('DROP DATABASE IF EXISTS tx_many WITH (FORCE)'));
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', max_client_conn: 1100, default_pool_size: 25 },
    `tx_many = host=127.0.0.1 port=${server.port} dbname=tx_many`));
  const su = await superuser(t, server);

  // watch the backends of this pool (the only connections to tx_many) while the clients run
  let maxBackends = 0;
  let watching = true;
  let samples = 0;
  const watcher = (async () => {
    while (watching) {
      const { rows } = await su.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'tx_many' AND usename = 'app'");
      maxBackends = Math.max(maxBackends, rows[0]!.n);
      samples++;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();

  const N = 1000;
  const clients: pg.Client[] = [];
  t.after(() => Promise.all(clients.map((c) => c.end().catch(() => {}))));
  const pids = new Set<number>();
  const results = await Promise.allSettled(Array.from({ length: N }, async (_, i) => {
    const c = new pg.Client({ connectionString: b.url('app', 'apppass', 'tx_many') });
    clients.push(c);
    await c.connect();
    for (let k = 0; k < 3; k++) {
      const id = i * 10 + k;
      // alternate the extended protocol (parameter) and the simple protocol (literal)
      const r = k % 2 === 0
        ? await c.query<{ id: number; pid: number; app: string }>("select $1::int as id, pg_backend_pid() as pid, current_setting('application_name') as app", [id])
        : await c.query<{ id: number; pid: number; app: string }>(`select ${id}::int as id, pg_backend_pid() as pid, current_setting('application_name') as app`);
      assert.equal(r.rows.length, 1);
      assert.equal(r.rows[0]!.id, id, `client ${i} query ${k} got another client's row`);
      pids.add(r.rows[0]!.pid);
    }
    await c.end();
  }));
  watching = false;
  await watcher;
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(failed.length, 0, `${failed.length} clients failed, first: ${failed[0]?.reason?.stack ?? failed[0]?.reason}`);
  assert.ok(samples > 0);
  assert.ok(maxBackends <= 25, `PostgreSQL saw ${maxBackends} backends for the pool (pool size 25)`);
  assert.ok(pids.size <= 25, `clients saw ${pids.size} distinct backend pids (pool size 25)`);
  assert.ok(pids.size >= 2, `only ${pids.size} backend served 1000 clients: no pooling concurrency`);
  const { rows } = await su.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'tx_many'");
  assert.ok(rows[0]!.n <= 25);
  await stillServes(b, { db: 'tx_many' });
});

test('transaction mode keeps transactions whole: isolation until COMMIT, ROLLBACK, aborted transactions', async (t) => {
  const server = await sharedPostgres();
  await server.psql('DROP TABLE IF EXISTS tx_iso; CREATE TABLE tx_iso (id int primary key, v text); GRANT ALL ON tx_iso TO app;', 'app');
  t.after(() => server.psql('DROP TABLE IF EXISTS tx_iso', 'app'));
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2 }));
  const a = await appClient(t, b);
  const o = await appClient(t, b);
  const count = async (c: pg.Client) => (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM tx_iso')).rows[0]!.n;

  // COMMIT: invisible to the other client until committed
  await a.query('BEGIN');
  await a.query("INSERT INTO tx_iso VALUES (1, 'one')");
  assert.equal(await count(a), 1);
  assert.equal(await count(o), 0);
  await a.query('COMMIT');
  assert.equal(await count(o), 1);

  // ROLLBACK: never visible
  await a.query('BEGIN');
  await a.query("INSERT INTO tx_iso VALUES (2, 'two')");
  assert.equal(await count(o), 1);
  await a.query('ROLLBACK');
  assert.equal(await count(a), 1);
  assert.equal(await count(o), 1);

  // an error aborts the transaction, which stays aborted on the same server until ROLLBACK
  await a.query('BEGIN');
  await a.query("INSERT INTO tx_iso VALUES (3, 'three')");
  await assert.rejects(a.query("INSERT INTO tx_iso VALUES (1, 'dup')"), (e: PgError) => e.code === '23505');
  await assert.rejects(a.query('SELECT 1'), (e: PgError) => e.code === '25P02');
  assert.equal(await count(o), 1); // the other client is not stuck behind the aborted transaction
  await a.query('ROLLBACK');
  assert.equal(await count(a), 1);

  // a lock held by an open transaction stays held (the server is not given to another client meanwhile)
  await a.query('BEGIN');
  await a.query("UPDATE tx_iso SET v = 'locked' WHERE id = 1");
  const { rows: locks } = await o.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'tx_iso' AND l.mode = 'RowExclusiveLock' AND l.granted");
  assert.equal(locks[0]!.n, 1);
  assert.equal((await o.query<{ v: string }>('SELECT v FROM tx_iso WHERE id = 1')).rows[0]!.v, 'one');
  await a.query('COMMIT');
  assert.equal((await o.query<{ v: string }>('SELECT v FROM tx_iso WHERE id = 1')).rows[0]!.v, 'locked');
  await stillServes(b);
});

test('a transaction is never split across servers, with several transactions and autocommit clients interleaved', async (t) => {
  const server = await sharedPostgres();
  await server.psql('DROP TABLE IF EXISTS tx_split; CREATE TABLE tx_split (who int, n int); GRANT ALL ON tx_split TO app;', 'app');
  t.after(() => server.psql('DROP TABLE IF EXISTS tx_split', 'app'));
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 4 }));
  const TX = 3;
  const AUTO = 5;
  const txClients = await Promise.all(Array.from({ length: TX }, () => appClient(t, b)));
  const autoClients = await Promise.all(Array.from({ length: AUTO }, () => appClient(t, b)));
  const tick = () => new Promise((r) => setImmediate(r));

  let running = true;
  let autoQueries = 0;
  const auto = autoClients.map(async (c) => {
    while (running) {
      // a statement run inside someone else's open transaction would see an older now() and an assigned xid
      const { rows } = await c.query<{ fresh: boolean; xid: string | null }>(
        'SELECT now() = statement_timestamp() AS fresh, pg_current_xact_id_if_assigned()::text AS xid');
      assert.equal(rows[0]!.fresh, true, 'an autocommit statement ran inside another transaction');
      assert.equal(rows[0]!.xid, null, 'an autocommit statement saw an assigned transaction id');
      autoQueries++;
      await tick();
    }
  });

  const txs = txClients.map(async (c, who) => {
    for (let round = 0; round < 3; round++) {
      await c.query('BEGIN');
      const pid0 = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const xid0 = (await c.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
      for (let n = 0; n < 15; n++) {
        await c.query('INSERT INTO tx_split VALUES ($1, $2)', [who, n]);
        const { rows } = await c.query<{ pid: number; x: string; mine: number }>(
          'SELECT pg_backend_pid() AS pid, pg_current_xact_id()::text AS x, (SELECT count(*)::int FROM tx_split WHERE who = $1) AS mine', [who]);
        assert.equal(rows[0]!.pid, pid0, `client ${who}: backend changed inside a transaction`);
        assert.equal(rows[0]!.x, xid0, `client ${who}: transaction id changed inside a transaction`);
        assert.equal(rows[0]!.mine, n + 1, `client ${who}: does not see its own uncommitted rows`);
        await tick();
      }
      await c.query('ROLLBACK');
    }
  });
  try {
    await Promise.all(txs);
  } finally {
    running = false;
  }
  await Promise.all(auto);
  assert.ok(autoQueries > 0);
  assert.equal(await server.psql('SELECT count(*) FROM tx_split', 'app'), '0');
  await stillServes(b);
});

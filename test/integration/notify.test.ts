// LISTEN/NOTIFY in transaction pooling: listeners get every notification exactly once although they have no server of
// their own between transactions; UNLISTEN and disconnecting end it; LISTEN inside a transaction pins instead.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { sharedPostgres } from '../harness/postgres.js';
import { pgtideWith, track } from '../harness/pgtide.js';
import { appClient, stillServes, waitFor } from '../harness/util.js';

test('100 listeners in transaction mode receive every notification exactly once', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 5, max_client_conn: 150, admin_users: 'app' }));
  const LISTENERS = 100;
  const N = 40;
  const listeners = await Promise.all(Array.from({ length: LISTENERS }, () => appClient(t, b)));
  const got: string[][] = listeners.map(() => []);
  const other: string[][] = listeners.map(() => []);
  listeners.forEach((c, i) =>
    c.on('notification', (m) => (m.channel === 'jobs' ? got[i]! : other[i]!).push(`${m.channel}:${m.payload}`)),
  );
  await Promise.all(listeners.map((c) => c.query('LISTEN jobs')));
  await Promise.all(listeners.slice(0, 10).map((c) => c.query('LISTEN "Other Channel"')));

  const notifier = await appClient(t, b);
  for (let i = 0; i < N; i++) {
    await notifier.query(`NOTIFY jobs, 'n${i}'`);
    if (i % 10 === 0) await notifier.query(`select pg_notify('Other Channel', 'o${i}')`);
    // the listeners keep working, on whatever server they get, while notifications arrive
    if (i % 8 === 0) await Promise.all(listeners.map((c, k) => c.query('select $1::int as k', [k])));
  }
  const want = Array.from({ length: N }, (_, i) => `jobs:n${i}`);
  await waitFor('every listener to get every notification', () => got.every((g) => g.length >= N) || null, 15_000);
  got.forEach((g, i) => assert.deepEqual(g, want, `listener ${i}`));
  const wantOther = [0, 10, 20, 30].map((i) => `Other Channel:o${i}`);
  await waitFor('the other channel', () => other.slice(0, 10).every((g) => g.length >= 4) || null);
  other.forEach((g, i) => assert.deepEqual(g, i < 10 ? wantOther : [], `listener ${i}, other channel`));
  // nobody was pinned for it: the listening is the pooler's
  const admin = new pg.Client({ connectionString: b.url('app', 'apppass', 'pgbouncer') });
  await admin.connect();
  const clients = (await admin.query('SHOW CLIENTS')).rows.filter((r) => r.database === 'app');
  assert.ok(clients.every((r) => r.pinned === ''));
  const servers = (await admin.query('SHOW SERVERS')).rows.filter((r) => r.database === 'app');
  assert.ok(servers.length <= 5, `${servers.length} servers: one listening connection within the pool`);
  await admin.end();

  // UNLISTEN: half stop; then everyone disconnects except one, which still gets them
  await Promise.all(listeners.slice(0, 50).map((c) => c.query('UNLISTEN jobs')));
  await notifier.query(`NOTIFY jobs, 'after-unlisten'`);
  await waitFor('the remaining listeners', () => got.slice(50).every((g) => g.length === N + 1) || null);
  await new Promise((r) => setTimeout(r, 200));
  got.slice(0, 50).forEach((g, i) => assert.equal(g.length, N, `listener ${i} unlistened`));
  await Promise.all(listeners.slice(0, 99).map((c) => c.end()));
  await notifier.query(`NOTIFY jobs, 'last'`);
  await waitFor('the last listener', () => got[99]!.at(-1) === 'jobs:last' || null);
  await listeners[99]!.query('UNLISTEN *');
  await stillServes(b);
});

test('LISTEN inside a transaction block pins the client to its server instead', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, admin_users: 'app' }));
  const c = await appClient(t, b);
  const got: string[] = [];
  c.on('notification', (m) => got.push(m.payload ?? ''));
  await c.query('BEGIN');
  await c.query('LISTEN inside');
  await c.query('COMMIT');
  const admin = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'pgbouncer') }));
  await admin.connect();
  await waitFor('pinned', async () => (await admin.query('SHOW CLIENTS')).rows.find((r) => /LISTEN: 1/.test(r.pinned)) || null);
  const n = await appClient(t, b);
  await n.query(`NOTIFY inside, 'x'`);
  await c.query('select 1'); // PostgreSQL delivers between transactions
  await waitFor('the notification', () => got.length === 1 || null);
  await c.query('UNLISTEN *');
  await waitFor('unpinned', async () => (await admin.query('SHOW CLIENTS')).rows.every((r) => r.pinned === '') || null);
  await stillServes(b);
});

test('the listening connection lost: pgtide opens another and subscribes again; later notifications arrive', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 3 }));
  const l = await appClient(t, b);
  const got: string[] = [];
  l.on('notification', (m) => got.push(m.payload ?? ''));
  await l.query('LISTEN lost_conn');
  const su = track(t, new pg.Client({ host: server.socketDir, port: server.port, user: 'postgres', database: 'app' }));
  await su.connect();
  const pids = async () => (await su.query("select pid from pg_stat_activity where datname = 'app' and query ilike 'LISTEN%lost_conn%'")).rows.map((r) => Number(r.pid));
  const [pid] = await waitFor('the listening connection', async () => ((await pids()).length === 1 ? await pids() : null));
  await su.query('select pg_terminate_backend($1)', [pid]);
  await b.waitForLog(/listening connection for database app lost .*; reconnecting/);
  await waitFor('a new listening connection', async () => ((await pids()).some((p) => p !== pid) ? true : null));
  const n = await appClient(t, b);
  await n.query(`NOTIFY lost_conn, 'after'`);
  await waitFor('the notification', () => (got.includes('after') ? true : null));
  await stillServes(b);
});

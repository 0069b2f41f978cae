// Admin console commands that change things: PAUSE/RESUME (and SIGUSR1/SIGUSR2), RELOAD, SET, KILL, KILL_CLIENT,
// DISABLE/ENABLE, RECONNECT/WAIT_CLOSE, SHUTDOWN [WAIT_FOR_CLIENTS], SUSPEND, and the refusal of stats users.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { sharedPostgres, pgBin, pgEnv, run, type PgServer } from '../harness/postgres.js';
import { startPgtide, iniFor, track, DEFAULT_USERLIST, type Pgtide } from '../harness/pgtide.js';
import { newClient, sleep, stillServes, waitFor, type Ctx, type PgError } from '../harness/util.js';

type Row = Record<string, unknown>;

const USERLIST = `${DEFAULT_USERLIST}"pgbouncer" "adminpass"\n"statuser" "statpass"\n`;

let server: PgServer;

before(async () => {
  server = await sharedPostgres();
});

async function bouncerWith(t: Ctx, settings: Record<string, string | number> = {}): Promise<Pgtide> {
  return track(
    t,
    await startPgtide({
      pg: server,
      files: { 'userlist.txt': USERLIST },
      ini: (ctx) =>
        iniFor(ctx, {
          settings: { admin_users: 'pgbouncer', stats_users: 'statuser', pool_mode: 'transaction', default_pool_size: 2, ...settings },
        }),
    }),
  );
}

async function adminOf(t: Ctx, b: Pgtide, user = 'pgbouncer', password = 'adminpass'): Promise<pg.Client> {
  const c = track(t, new pg.Client({ host: '127.0.0.1', port: b.port, user, password, database: 'pgbouncer' }));
  c.on('error', () => {});
  await c.connect();
  return c;
}

async function app(t: Ctx, b: Pgtide) {
  const c = newClient(t, b.url('app', 'apppass', 'app'));
  await c.connect();
  return c;
}

async function show(c: pg.Client, what: string): Promise<Row[]> {
  return (await c.query<Row>(`SHOW ${what}`)).rows;
}

async function dbRow(c: pg.Client, name = 'app'): Promise<Row> {
  return (await show(c, 'DATABASES')).find((r) => r.name === name)!;
}

async function configValue(c: pg.Client, key: string): Promise<unknown> {
  return (await show(c, 'CONFIG')).find((r) => r.key === key)?.value;
}

async function pool(c: pg.Client): Promise<Row> {
  return (await show(c, 'POOLS')).find((r) => r.database === 'app')!;
}

/** A promise with a flag telling whether it has settled yet. */
function watch<T>(p: Promise<T>): { p: Promise<T>; done: () => boolean } {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  return { p, done: () => settled };
}

const state = async (c: pg.Client) => Object.fromEntries((await show(c, 'STATE')).map((r) => [r.key, r.value]));

test('PAUSE makes a new query wait, RESUME releases it with the right result', async (t) => {
  const b = await bouncerWith(t);
  const admin = await adminOf(t, b);
  const c = await app(t, b);
  assert.deepEqual((await c.query('select 1 as one')).rows, [{ one: 1 }]);
  const paused = await admin.query('PAUSE');
  assert.equal(paused.command, 'PAUSE');
  assert.deepEqual(await state(admin), { active: 'no', paused: 'yes', suspended: 'no' });
  assert.equal((await dbRow(admin)).paused, 1);
  // the idle server was closed by the pause
  assert.equal((await show(admin, 'SERVERS')).length, 0);
  const q = watch(c.query<{ v: number }>('select 41 + 1 as v'));
  await waitFor('the query to wait', async () => (await pool(admin)).cl_waiting === 1);
  await sleep(300);
  assert.equal(q.done(), false, 'a query ran while paused');
  assert.equal((await show(admin, 'SERVERS')).length, 0, 'a server was launched while paused');
  // a second PAUSE is refused as PgBouncer refuses it
  await assert.rejects(admin.query('PAUSE'), (e: PgError) => e.message === 'already suspended/paused' && e.severity === 'ERROR');
  assert.equal((await admin.query('RESUME')).command, 'RESUME');
  assert.deepEqual((await q.p).rows, [{ v: 42 }]);
  assert.deepEqual(await state(admin), { active: 'yes', paused: 'no', suspended: 'no' });
  assert.equal((await dbRow(admin)).paused, 0);
  await assert.rejects(admin.query('RESUME'), (e: PgError) => e.message === 'pooler is not paused/suspended');
  await assert.rejects(admin.query('PAUSE nosuch'), (e: PgError) => e.message === 'no such database: nosuch');
  assert.deepEqual(c.errors, []);
});

test('PAUSE db waits for a running transaction to finish, then closes its server', async (t) => {
  const b = await bouncerWith(t);
  const admin = await adminOf(t, b);
  const c = await app(t, b);
  await c.query('BEGIN');
  await c.query('select 1');
  const pause = watch(admin.query('PAUSE app'));
  await sleep(400);
  assert.equal(pause.done(), false, 'PAUSE returned while a transaction was open');
  assert.equal((await dbRow(await adminOf(t, b))).paused, 1);
  await c.query('COMMIT');
  assert.equal((await pause.p).command, 'PAUSE');
  // commands queued behind the pending PAUSE on the same connection are answered after it, in order
  assert.equal((await show(admin, 'SERVERS')).length, 0);
  const q = watch(c.query('select 2 as two'));
  await sleep(200);
  assert.equal(q.done(), false);
  await admin.query('RESUME app');
  assert.deepEqual((await q.p).rows, [{ two: 2 }]);
  assert.deepEqual(c.errors, []);
});

test('RELOAD after editing the ini changes default_pool_size live; a broken ini errors and keeps the old config', async (t) => {
  const b = await bouncerWith(t, { default_pool_size: 1 });
  const admin = await adminOf(t, b);
  const iniPath = join(b.dir, 'pgbouncer.ini');
  const ini = readFileSync(iniPath, 'utf8');
  writeFileSync(iniPath, ini.replace(/^default_pool_size = 1$/m, 'default_pool_size = 3'));
  assert.equal((await admin.query('RELOAD')).command, 'RELOAD');
  assert.equal(await configValue(admin, 'default_pool_size'), '3');
  assert.equal((await dbRow(admin)).pool_size, 3);
  // three transactions at once get three backends
  const clients = [await app(t, b), await app(t, b), await app(t, b)];
  const pids = new Set<number>();
  for (const c of clients) {
    await c.query('BEGIN');
    pids.add((await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid);
  }
  assert.equal(pids.size, 3);
  for (const c of clients) await c.query('COMMIT');

  writeFileSync(iniPath, ini.replace(/^default_pool_size = 1$/m, 'default_pool_size = lots'));
  const mark = b.log().length;
  await assert.rejects(
    admin.query('RELOAD'),
    (e: PgError) => e.message === 'RELOAD failed, see logs for additional details' && e.severity === 'ERROR',
  );
  await b.waitForLog(/default_pool_size/, 2000, mark);
  assert.equal(await configValue(admin, 'default_pool_size'), '3');
  await stillServes(b);
});

test('SET default_pool_size changes it live; non-reloadable settings and bad values are refused', async (t) => {
  const b = await bouncerWith(t, { default_pool_size: 1 });
  const admin = await adminOf(t, b);
  const holder = await app(t, b);
  await holder.query('BEGIN');
  await holder.query('select 1');
  const other = await app(t, b);
  const q = watch(other.query('select 5 as five'));
  await sleep(300);
  assert.equal(q.done(), false, 'pool_size 1 should make the second client wait');
  assert.equal((await admin.query('SET default_pool_size = 2')).command, 'SET');
  assert.deepEqual((await q.p).rows, [{ five: 5 }]);
  assert.equal(await configValue(admin, 'default_pool_size'), '2');
  assert.equal((await dbRow(admin)).pool_size, 2);
  await admin.query("SET default_pool_size TO '4'");
  assert.equal(await configValue(admin, 'default_pool_size'), '4');
  await assert.rejects(admin.query('SET listen_port = 7777'), (e: PgError & { detail?: string }) =>
    e.message === 'SET failed' && /listen_port/.test(e.detail ?? ''));
  await assert.rejects(admin.query('SET default_pool_size = lots'), (e: PgError & { detail?: string }) =>
    e.message === 'SET failed' && /default_pool_size/.test(e.detail ?? ''));
  await assert.rejects(admin.query('SET no_such_setting = 1'), (e: PgError) => e.message === 'SET failed');
  assert.equal(await configValue(admin, 'default_pool_size'), '4');
  await holder.query('COMMIT');
});

test('KILL drops every client of the database with "database removed"; it stays paused until RESUME', async (t) => {
  const b = await bouncerWith(t);
  const admin = await adminOf(t, b);
  const idle = await app(t, b);
  await idle.query('select 1');
  const busy = await app(t, b);
  await busy.query('BEGIN');
  await busy.query('select 1');
  assert.equal((await admin.query('KILL app')).command, 'KILL');
  await waitFor('both clients to be dropped', () => idle.ended && busy.ended);
  assert.ok(idle.errors.some((e) => e.message === 'database removed'), JSON.stringify(idle.errors.map((e) => e.message)));
  assert.ok(busy.errors.some((e) => e.message === 'database removed'), JSON.stringify(busy.errors.map((e) => e.message)));
  assert.equal((await show(admin, 'SERVERS')).length, 0);
  assert.equal((await dbRow(admin)).paused, 1);
  const later = await app(t, b);
  const q = watch(later.query('select 7 as seven'));
  await sleep(300);
  assert.equal(q.done(), false, 'a killed database must stay paused');
  await admin.query('RESUME app');
  assert.deepEqual((await q.p).rows, [{ seven: 7 }]);
  await assert.rejects(admin.query('KILL'), (e: PgError) => e.message === 'a database is required');
  await assert.rejects(admin.query('KILL nosuch'), (e: PgError) => e.message === 'no such database: nosuch');
});

test('KILL_CLIENT closes one client by its id', async (t) => {
  const b = await bouncerWith(t);
  const admin = await adminOf(t, b);
  const victim = await app(t, b);
  const bystander = await app(t, b);
  await victim.query('select 1');
  const clients = (await show(admin, 'CLIENTS')).filter((r) => r.database === 'app');
  assert.equal(clients.length, 2);
  const ids = clients.map((r) => String(r.id)).sort((x, y) => Number(x) - Number(y));
  // pg's `command` is the tag's first word; psql shows the whole tag (last test)
  assert.equal((await admin.query(`KILL_CLIENT ${ids[0]}`)).command, 'KILL');
  await waitFor('the victim to be dropped', () => victim.ended);
  assert.deepEqual((await bystander.query('select 1 as one')).rows, [{ one: 1 }]);
  await assert.rejects(admin.query(`KILL_CLIENT ${ids[0]}`), (e: PgError) => e.message === 'client not found');
});

test('DISABLE refuses new logins, existing clients keep working; ENABLE lets them in again', async (t) => {
  const b = await bouncerWith(t);
  const admin = await adminOf(t, b);
  const c = await app(t, b);
  assert.equal((await admin.query('DISABLE app')).command, 'DISABLE');
  assert.equal((await dbRow(admin)).disabled, 1);
  await assert.rejects(stillServes(b), (e: PgError) => e.message === 'database "app" is disabled');
  assert.deepEqual((await c.query('select 3 as three')).rows, [{ three: 3 }]);
  assert.equal((await admin.query('ENABLE app')).command, 'ENABLE');
  assert.equal((await dbRow(admin)).disabled, 0);
  await stillServes(b);
  await assert.rejects(admin.query('DISABLE'), (e: PgError) => e.message === 'a database is required');
  await assert.rejects(admin.query('DISABLE nosuch'), (e: PgError) => e.message === 'no such database: nosuch');
  assert.deepEqual(c.errors, []);
});

test('RECONNECT closes servers when released (new backend pid); WAIT_CLOSE returns once they are gone', async (t) => {
  const b = await bouncerWith(t);
  const admin = await adminOf(t, b);
  const c = await app(t, b);
  await c.query('BEGIN');
  const before = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  assert.equal((await admin.query('RECONNECT app')).command, 'RECONNECT');
  const servers = await show(admin, 'SERVERS');
  assert.deepEqual(servers.map((s) => s.close_needed), [1]);
  const wait = watch(admin.query('WAIT_CLOSE app'));
  await sleep(300);
  assert.equal(wait.done(), false, 'WAIT_CLOSE returned while a close_needed server was in use');
  // still the same backend inside the transaction
  assert.equal((await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid, before);
  await c.query('COMMIT');
  assert.equal((await wait.p).command, 'WAIT'); // pg's `command`: the tag's first word

  const after = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  assert.notEqual(after, before);
  assert.equal((await admin.query('RECONNECT')).command, 'RECONNECT');
  assert.deepEqual(c.errors, []);
});

test('SHUTDOWN WAIT_FOR_CLIENTS lets a running transaction commit, then exits once the client leaves', async (t) => {
  const b = await bouncerWith(t);
  const admin = await adminOf(t, b);
  const c = await app(t, b);
  await c.query('BEGIN');
  const xid = (await c.query<{ x: string }>('select txid_current()::text as x')).rows[0]!.x;
  assert.equal((await admin.query('SHUTDOWN WAIT_FOR_CLIENTS')).command, 'SHUTDOWN');
  await assert.rejects(stillServes(b, { connectionTimeoutMillis: 2000 }));
  await sleep(200);
  assert.equal(b.proc.exitCode, null, 'exited while a client was still connected');
  assert.equal((await c.query('COMMIT')).command, 'COMMIT');
  const su = new pg.Client({ host: server.socketDir, port: server.port, user: 'postgres', database: 'postgres' });
  await su.connect();
  try {
    assert.equal((await su.query<{ s: string }>('select txid_status($1::bigint) as s', [xid])).rows[0]!.s, 'committed');
  } finally {
    await su.end();
  }
  await c.end();
  assert.equal(await b.exited, 0);
});

test('SHUTDOWN exits at once; SUSPEND is not supported', async (t) => {
  const b = await bouncerWith(t);
  const admin = await adminOf(t, b);
  await assert.rejects(admin.query('SUSPEND'), (e: PgError) => e.message === 'SUSPEND is not supported by pgtide');
  void admin.query('SHUTDOWN').catch(() => {});
  assert.equal(await b.exited, 0);
});

test('SIGUSR1 pauses, SIGUSR2 resumes', async (t) => {
  const b = await bouncerWith(t);
  const admin = await adminOf(t, b);
  const c = await app(t, b);
  await c.query('select 1');
  b.signal('SIGUSR1');
  await waitFor('SHOW STATE paused', async () => (await state(admin)).paused === 'yes');
  const q = watch(c.query('select 8 as eight'));
  await sleep(300);
  assert.equal(q.done(), false);
  b.signal('SIGUSR2');
  assert.deepEqual((await q.p).rows, [{ eight: 8 }]);
  assert.equal((await state(admin)).paused, 'no');
  assert.equal(b.proc.exitCode, null);
});

test('stats users are refused every command with "admin access needed"; psql drives PAUSE/RESUME', async (t) => {
  const b = await bouncerWith(t);
  const stats = await adminOf(t, b, 'statuser', 'statpass');
  for (const cmd of ['PAUSE', 'RESUME', 'RELOAD', 'KILL app', 'KILL_CLIENT 1', 'DISABLE app', 'RECONNECT', 'WAIT_CLOSE', 'SHUTDOWN', 'SET default_pool_size = 5'])
    await assert.rejects(stats.query(cmd), (e: PgError) => e.message === 'admin access needed', cmd);
  assert.equal((await stats.query('SHOW VERSION')).rows.length, 1);
  const psql = (cmd: string) =>
    run(pgBin('psql'), ['-h', '127.0.0.1', '-p', String(b.port), '-U', 'pgbouncer', '-d', 'pgbouncer', '-c', cmd], {
      env: pgEnv({ PGPASSWORD: 'adminpass' }),
    });
  assert.match(await psql('PAUSE app;'), /PAUSE/);
  assert.match(await psql('SHOW DATABASES;'), /\bapp\b.*\|\s*1\s*\|\s*0\s*$/m);
  assert.match(await psql('RESUME app;'), /RESUME/);
  assert.match(await psql('WAIT_CLOSE app;'), /^WAIT_CLOSE$/m);
  assert.match(await psql('KILL_CLIENT 99999;').catch((e: Error) => e.message), /client not found/);
  await stillServes(b);
});

test('session pooling: PAUSE waits until the client leaves, then closes its server', async (t) => {
  const b = await bouncerWith(t, { pool_mode: 'session' });
  const admin = await adminOf(t, b);
  const c = await app(t, b);
  await c.query('select 1');
  const pause = watch(admin.query('PAUSE app'));
  await sleep(400);
  assert.equal(pause.done(), false, 'PAUSE returned while a session client held its server');
  assert.deepEqual((await c.query('select 4 as four')).rows, [{ four: 4 }], 'the session client keeps working');
  await c.end();
  assert.equal((await pause.p).command, 'PAUSE');
  assert.equal((await show(admin, 'SERVERS')).length, 0);
  await admin.query('RESUME app');
  await stillServes(b);
});

test('SHUTDOWN WAIT_FOR_SERVERS exits once the running transaction is done', async (t) => {
  const b = await bouncerWith(t);
  const admin = await adminOf(t, b);
  const c = await app(t, b);
  await c.query('BEGIN');
  await c.query('select 1');
  assert.equal((await admin.query('SHUTDOWN WAIT_FOR_SERVERS')).command, 'SHUTDOWN');
  await assert.rejects(admin.query('SHUTDOWN WAIT_FOR_CLIENTS'), (e: PgError) => e.message === 'pooler is shutting down');
  await sleep(200);
  assert.equal(b.proc.exitCode, null, 'exited under a running transaction');
  assert.equal((await c.query('COMMIT')).command, 'COMMIT');
  assert.equal(await b.exited, 0);
});

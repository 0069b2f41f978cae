// pgtide logging in to PostgreSQL: SCRAM and md5 with userlist passwords, forced users, SCRAM passthrough (keys recovered
// from the client's SCRAM login, no plaintext in the config), and prompt errors when the server refuses or is down.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import pg from 'pg';
import postgres from 'postgres';
import { sharedPostgres, type PgServer } from '../harness/postgres.js';
import { startPgtide, iniFor, track, freePort, type Pgtide } from '../harness/pgtide.js';
import { stillServes, type Ctx, type PgError } from '../harness/util.js';

/** stillServes() with the 5 s login bound this file's other logins use. */
const LOGIN_5S = { connectionTimeoutMillis: 5000 };

async function bouncer(t: Ctx, pgs: PgServer, settings: Record<string, string | number>, userlist: string, databases?: string): Promise<Pgtide> {
  return track(t, await startPgtide({ pg: pgs, files: { 'userlist.txt': userlist }, ini: (ctx) => iniFor(ctx, { settings, databases }) }));
}

/** Through pgtide: who am I on the server, which backend, and (via a direct superuser look-up) that backend's user and db. */
async function whoAmI(b: Pgtide, pgs: PgServer, user: string, password: string, db: string): Promise<{ user: string; db: string }> {
  const c = new pg.Client({ connectionString: b.url(user, password, db), connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    const { rows } = await c.query<{ user: string; db: string; pid: number; app: string }>(
      'SELECT current_user AS user, current_database() AS db, pg_backend_pid() AS pid');
    const r = rows[0]!;
    // the backend really exists as that user, seen from PostgreSQL itself
    assert.equal(await pgs.psql(`SELECT usename || '/' || datname FROM pg_stat_activity WHERE pid = ${r.pid}`), `${r.user}/${r.db}`);
    return { user: r.user, db: r.db };
  } finally {
    await c.end();
  }
}

async function loginFails(b: Pgtide, user: string, password: string, db: string): Promise<{ err: PgError; ms: number }> {
  const t0 = Date.now();
  const c = new pg.Client({ connectionString: b.url(user, password, db), connectionTimeoutMillis: 8000 });
  let err: PgError | undefined;
  try {
    await c.connect();
    await c.query('SELECT 1');
  } catch (e) {
    err = e as PgError;
  } finally {
    await c.end().catch(() => {});
  }
  assert.ok(err, `login of ${user} to ${db} was expected to fail`);
  // a timeout of the client library itself would be a hang, not the pooler's answer
  assert.doesNotMatch(err.message, /timeout expired|Connection terminated due to connection timeout/);
  return { err, ms: Date.now() - t0 };
}

test('SCRAM server login (role app) with the userlist plain password, and md5 server login (md5user)', async (t) => {
  const pgs = await sharedPostgres();
  // PostgreSQL holds a SCRAM secret for app (so it runs SCRAM even under an md5 hba rule) and an md5 one for md5user
  assert.match(await pgs.scramSecret('app'), /^SCRAM-SHA-256\$/);
  assert.match(await pgs.scramSecret('md5user'), /^md5/);
  const b = await bouncer(t, pgs, { auth_type: 'md5' }, `"app" "apppass"\n"md5user" "md5pass"\n`);
  const mark = b.log().length;
  assert.deepEqual(await whoAmI(b, pgs, 'app', 'apppass', 'app'), { user: 'app', db: 'app' });
  await b.waitForLog(/S-\d+: app\/app@127\.0\.0\.1:\d+ new connection to server/, 5000, mark);
  assert.deepEqual(await whoAmI(b, pgs, 'md5user', 'md5pass', 'app'), { user: 'md5user', db: 'app' });
  await b.waitForLog(/S-\d+: app\/md5user@127\.0\.0\.1:\d+ new connection to server/, 5000, mark);
  // md5 hash in the userlist also works for an md5 server (it is what PostgreSQL stores)
  const md5hash = 'md5' + createHash('md5').update('md5passmd5user').digest('hex');
  const b2 = await bouncer(t, pgs, { auth_type: 'md5' }, `"md5user" "${md5hash}"\n`);
  assert.deepEqual(await whoAmI(b2, pgs, 'md5user', 'md5pass', 'app'), { user: 'md5user', db: 'app' });
});

test('forced user from the connstring (user=app password=apppass): any client user is logged in to PostgreSQL as app', async (t) => {
  const pgs = await sharedPostgres();
  const databases = `forced = host=127.0.0.1 port=${pgs.port} dbname=app user=app password=apppass`;
  // app is not in the userlist: the server password can only come from the connstring
  const b = await bouncer(t, pgs, { auth_type: 'md5' }, `"md5user" "md5pass"\n"trustuser" "tp"\n`, databases);
  assert.deepEqual(await whoAmI(b, pgs, 'md5user', 'md5pass', 'forced'), { user: 'app', db: 'app' });
  assert.deepEqual(await whoAmI(b, pgs, 'trustuser', 'tp', 'forced'), { user: 'app', db: 'app' });
  const sql = track(t, postgres(b.url('md5user', 'md5pass', 'forced'), { max: 1, onnotice: () => {}, fetch_types: false }));
  const [row] = await sql<{ u: string }[]>`SELECT current_user AS u`;
  assert.equal(row!.u, 'app');
  // one pool for all clients: one server connection as app serves both users
  await b.waitForLog(/forced\/app@127\.0\.0\.1:\d+ new connection to server/);
  assert.equal(b.log().match(/new connection to server/g)?.length, 1);
});

test('SCRAM passthrough: the userlist holds app\'s SCRAM secret from pg_authid; the client logs in with SCRAM and pgtide logs in to PostgreSQL with the recovered keys', async (t) => {
  const pgs = await sharedPostgres();
  const secret = await pgs.scramSecret('app');
  assert.match(secret, /^SCRAM-SHA-256\$4096:/);
  for (const authType of ['scram-sha-256', 'md5']) {
    const b = await bouncer(t, pgs, { auth_type: authType }, `"app" "${secret}"\n`);
    // no plaintext password anywhere in pgtide's configuration
    for (const f of readdirSync(b.dir).filter((n) => n.endsWith('.ini') || n.endsWith('.txt')))
      assert.doesNotMatch(readFileSync(join(b.dir, f), 'utf8'), /apppass/, `${f} holds the password`);
    assert.deepEqual(await whoAmI(b, pgs, 'app', 'apppass', 'app'), { user: 'app', db: 'app' }, authType);
    // a second server connection (the first one is busy) also logs in with the cached keys
    const c1 = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app') }));
    const c2 = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app') }));
    await c1.connect();
    await c2.connect();
    const [p1, p2] = await Promise.all([c1.query('SELECT pg_backend_pid() AS p'), c2.query('SELECT pg_backend_pid() AS p')]);
    assert.notEqual(p1.rows[0].p, p2.rows[0].p);
    await c1.end();
    await c2.end();
    // postgres.js too
    const sql = postgres(b.url('app', 'apppass', 'app'), { max: 1, onnotice: () => {}, fetch_types: false });
    try {
      const [row] = await sql<{ u: string }[]>`SELECT current_user AS u`;
      assert.equal(row!.u, 'app');
    } finally {
      await sql.end({ timeout: 1 });
    }
    // a wrong password still fails (and does not disturb the cached keys)
    const { err } = await loginFails(b, 'app', 'wrong', 'app');
    assert.equal(err.code, '28P01');
    await stillServes(b, LOGIN_5S);
  }
});

test('wrong server password in the connstring: the client gets the server\'s 28P01 promptly (server_login_retry), no hang; other dbs keep working', async (t) => {
  const pgs = await sharedPostgres();
  const databases = `bad = host=127.0.0.1 port=${pgs.port} dbname=app user=app password=not-the-password
app = host=127.0.0.1 port=${pgs.port} dbname=app`;
  const b = await bouncer(t, pgs, { auth_type: 'md5', query_wait_timeout: 20, server_login_retry: 15 }, `"app" "apppass"\n"md5user" "md5pass"\n`, databases);
  const { err, ms } = await loginFails(b, 'md5user', 'md5pass', 'bad');
  assert.equal(err.code, '28P01', err.message);
  assert.match(err.message, /password authentication failed for user "app"/);
  assert.match(err.message, /server_login_retry/);
  assert.ok(ms < 3000, `took ${ms} ms`);
  await b.waitForLog(/server login failed: FATAL password authentication failed for user "app"/);
  // within server_login_retry the next client fails fast with the cached error
  const again = await loginFails(b, 'app', 'apppass', 'bad');
  assert.equal(again.err.code, '28P01');
  assert.match(again.err.message, /server_login_retry/);
  assert.ok(again.ms < 3000, `took ${again.ms} ms`);
  await stillServes(b, LOGIN_5S);
});

test('an md5 hash in the userlist cannot log in to a SCRAM role: the client gets an error promptly, no hang', async (t) => {
  const pgs = await sharedPostgres();
  const hash = 'md5' + createHash('md5').update('apppassapp').digest('hex');
  const b = await bouncer(t, pgs, { auth_type: 'md5', query_wait_timeout: 20 }, `"app" "${hash}"\n"md5user" "md5pass"\n`);
  const { err, ms } = await loginFails(b, 'app', 'apppass', 'app');
  assert.equal(err.code, '28P01', err.message);
  assert.ok(ms < 3000, `took ${ms} ms`);
  await stillServes(b, { ...LOGIN_5S, user: 'md5user', password: 'md5pass' });
});

test('a database whose server is down (nothing listening): the client gets an error well under query_wait_timeout', async (t) => {
  const pgs = await sharedPostgres();
  const deadPort = await freePort();
  const databases = `down = host=127.0.0.1 port=${deadPort} dbname=app
app = host=127.0.0.1 port=${pgs.port} dbname=app`;
  const b = await bouncer(t, pgs, { auth_type: 'md5', query_wait_timeout: 20, server_connect_timeout: 15 }, `"app" "apppass"\n`, databases);
  const { err, ms } = await loginFails(b, 'app', 'apppass', 'down');
  assert.match(err.code ?? '', /^08/, `${err.code}: ${err.message}`);
  assert.match(err.message, /ECONNREFUSED|connect/i);
  assert.ok(ms < 3000, `took ${ms} ms`);
  // postgres.js sees the same, and so does a second try
  const sql = postgres(b.url('app', 'apppass', 'down'), { max: 1, onnotice: () => {}, fetch_types: false, connect_timeout: 8 });
  const t0 = Date.now();
  await assert.rejects(sql`SELECT 1`, (e: PgError) => /^08/.test(e.code ?? ''));
  assert.ok(Date.now() - t0 < 3000);
  await sql.end({ timeout: 1 });
  await stillServes(b, LOGIN_5S);
});

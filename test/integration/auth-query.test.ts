// auth_user + auth_query: users that are not in auth_file log in with the secret PostgreSQL has for them, md5 and
// SCRAM alike (SCRAM users have no plain-text password anywhere: pgtide logs in to PostgreSQL with the keys the
// client's proof reveals). A wrong password is 28P01, an unknown user too; a changed password is picked up.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { sharedPostgres, type PgServer } from '../harness/postgres.js';
import { startPgtide, iniFor, track, type Pgtide } from '../harness/pgtide.js';
import { loginRefused, stillServes } from '../harness/util.js';

let server: PgServer;

before(async () => {
  server = await sharedPostgres();
  // the usual PgBouncer setup: a SECURITY DEFINER lookup function callable by a dedicated role
  await server.psql(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authq') THEN CREATE ROLE authq LOGIN PASSWORD 'authqpass'; END IF; END $$;
    DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aq_scram') THEN CREATE ROLE aq_scram LOGIN; END IF; END $$;
    SET password_encryption = 'scram-sha-256'; ALTER ROLE aq_scram PASSWORD 'scram-secret';
    GRANT CONNECT ON DATABASE app TO aq_scram;`);
  await server.psql(`CREATE OR REPLACE FUNCTION public.pgtide_lookup(i_username text, OUT uname text, OUT phash text) RETURNS record AS $$
      BEGIN SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = i_username INTO uname, phash; RETURN; END;
    $$ LANGUAGE plpgsql SECURITY DEFINER;
    REVOKE ALL ON FUNCTION public.pgtide_lookup(text) FROM public;
    GRANT EXECUTE ON FUNCTION public.pgtide_lookup(text) TO authq;`, 'app');
});

function start(t: { after(fn: () => unknown): unknown }, extra: Record<string, string | number> = {}): Promise<Pgtide> {
  return startPgtide({
    pg: server,
    ini: (ctx) => iniFor(ctx, {
      settings: { auth_user: 'authq', auth_query: 'SELECT uname, phash FROM public.pgtide_lookup($1)', pool_mode: 'transaction', ...extra },
    }),
    files: { 'userlist.txt': '"authq" "authqpass"\n' }, // nobody else: every other user comes from auth_query
  }).then((b) => track(t, b));
}

async function who(b: Pgtide, user: string, password: string): Promise<string> {
  const c = new pg.Client({ connectionString: b.url(user, password, 'app') });
  await c.connect();
  try {
    return (await c.query('select current_user as u')).rows[0].u;
  } finally {
    await c.end();
  }
}

test('auth_query logs in md5 and SCRAM users whose passwords exist only in PostgreSQL; wrong password and unknown user are 28P01', { timeout: 30_000 }, async (t) => {
  const b = await start(t);
  assert.equal(await who(b, 'app', 'apppass'), 'app'); // SCRAM in PostgreSQL
  assert.equal(await who(b, 'aq_scram', 'scram-secret'), 'aq_scram');
  assert.equal(await who(b, 'md5user', 'md5pass'), 'md5user'); // md5 in PostgreSQL
  // again: now from the cached secret, and the server connections reused
  assert.equal(await who(b, 'aq_scram', 'scram-secret'), 'aq_scram');
  for (const [user, pw] of [['app', 'wrong'], ['md5user', 'wrong'], ['nosuchuser', 'whatever']] as const) {
    const e = await loginRefused(b, user, pw);
    assert.equal(e.code, '28P01', `${user}: ${e.message}`);
    assert.equal(e.message, `password authentication failed for user "${user}"`);
  }
  assert.doesNotMatch(b.log(), /scram-secret|apppass|md5pass|SCRAM-SHA-256\$/, 'no secret in the log');
  await stillServes(b);
});

test('a password changed in PostgreSQL is picked up: the failed login asks again', { timeout: 30_000 }, async (t) => {
  const b = await start(t);
  assert.equal(await who(b, 'aq_scram', 'scram-secret'), 'aq_scram');
  await server.psql(`SET password_encryption = 'scram-sha-256'; ALTER ROLE aq_scram PASSWORD 'changed-secret'`);
  t.after(() => server.psql(`SET password_encryption = 'scram-sha-256'; ALTER ROLE aq_scram PASSWORD 'scram-secret'`));
  // the cached secret says no; that failure drops it, and the next login asks PostgreSQL again
  assert.equal((await loginRefused(b, 'aq_scram', 'changed-secret')).code, '28P01');
  assert.equal(await who(b, 'aq_scram', 'changed-secret'), 'aq_scram');
  assert.equal((await loginRefused(b, 'aq_scram', 'scram-secret')).code, '28P01');
});

test('auth_query that cannot run (auth_user refused by PostgreSQL) fails that login with 08006, and pgtide keeps serving', { timeout: 30_000 }, async (t) => {
  const b = track(t, await startPgtide({
    pg: server,
    ini: (ctx) => iniFor(ctx, { settings: { auth_user: 'authq', auth_query: 'SELECT uname, phash FROM public.pgtide_lookup($1)' } }),
    files: { 'userlist.txt': '"authq" "not-its-password"\n"app" "apppass"\n' },
  }));
  const e = await loginRefused(b, 'aq_scram', 'scram-secret');
  assert.equal(e.code, '08006');
  assert.match(e.message, /authentication lookup failed/);
  await b.waitForLog(/auth_query for user "aq_scram" failed/);
  assert.equal(await who(b, 'app', 'apppass'), 'app'); // a user in auth_file is not affected
  await stillServes(b);
});

test('workers = 2: auth_query logins (SCRAM and md5 secrets) work on each worker, and a wrong password is 28P01', { timeout: 30_000 }, async (t) => {
  const b = await start(t, { workers: 2 });
  await b.waitForLog(/LOG process up: .*, 2 workers/, 10_000);
  // round-robin hand-over: consecutive logins alternate between the workers
  for (let i = 0; i < 4; i++) assert.equal(await who(b, 'aq_scram', 'scram-secret'), 'aq_scram');
  for (let i = 0; i < 4; i++) assert.equal(await who(b, 'md5user', 'md5pass'), 'md5user');
  for (const w of ['w1', 'w2']) {
    for (const u of ['aq_scram', 'md5user']) assert.match(b.log(), new RegExp(`LOG \\[${w}\\] C-\\d+: app/${u}@127\\.0\\.0\\.1:\\d+ login attempt`));
  }
  for (let i = 0; i < 2; i++) {
    const e = await loginRefused(b, 'aq_scram', 'wrong');
    assert.equal(e.code, '28P01', e.message);
  }
  await stillServes(b);
});

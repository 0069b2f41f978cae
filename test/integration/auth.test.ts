// Client authentication per auth_type and userlist secret kind (plain, md5 hash, SCRAM secret), wrong passwords and
// unknown users (same 28P01, no user enumeration), trust/any rules, unknown databases (3D000 after auth) and `*` auto-databases.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash } from 'node:crypto';
import pg from 'pg';
import postgres from 'postgres';
import { spawn } from 'node:child_process';
import { sharedPostgres, pgBin, pgEnv, type PgServer } from '../harness/postgres.js';
import { startPgtide, iniFor, track, type Pgtide } from '../harness/pgtide.js';
import { stillServes, type Ctx, type PgError } from '../harness/util.js';

/** stillServes() with the 5 s login bound this file's other logins use. */
const LOGIN_5S = { connectionTimeoutMillis: 5000 };

const md5Hash = (password: string, user: string) => 'md5' + createHash('md5').update(password + user).digest('hex');

/** pgtide with the given settings, userlist and [databases] (default: db app). */
async function bouncer(t: Ctx, pgs: PgServer, settings: Record<string, string | number>, userlist: string, databases?: string): Promise<Pgtide> {
  return track(t, await startPgtide({ pg: pgs, files: { 'userlist.txt': userlist }, ini: (ctx) => iniFor(ctx, { settings, databases }) }));
}

/** Log in with node-postgres and return current_user / current_database(). */
async function pgLogin(b: Pgtide, user: string, password: string, db = 'app'): Promise<{ user: string; db: string }> {
  const c = new pg.Client({ connectionString: b.url(user, password, db), connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    const { rows } = await c.query<{ user: string; db: string }>('SELECT current_user AS user, current_database() AS db');
    return rows[0]!;
  } finally {
    await c.end();
  }
}

/** Log in with postgres.js and return current_user. */
async function pjsLogin(b: Pgtide, user: string, password: string, db = 'app'): Promise<string> {
  const sql = postgres(b.url(user, password, db), { max: 1, onnotice: () => {}, connect_timeout: 5, fetch_types: false });
  try {
    const [row] = await sql<{ user: string }[]>`SELECT current_user AS user`;
    return row!.user;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** psql -c 'SELECT current_user' with PGPASSWORD; resolves with stdout, rejects with stderr in the message. */
function psqlLogin(b: Pgtide, user: string, password: string, db = 'app'): Promise<string> {
  // stdin ignored: psql may exit before reading a pipe (harness run() would then hit EPIPE)
  return new Promise((resolve, reject) => {
    const child = spawn(pgBin('psql'), ['-XAtq', '-w', '-h', '127.0.0.1', '-p', String(b.port), '-U', user, '-d', db, '-c', 'SELECT current_user'],
      { env: pgEnv({ PGPASSWORD: password }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      if (code === 0) resolve(out.trim());
      else reject(new Error(`psql exited ${code ?? sig}: ${err}${out}`));
    });
  });
}

/** Expect a login with node-postgres to fail with this SQLSTATE (and message, if given); returns the error. */
async function pgLoginFails(b: Pgtide, user: string, password: string, code: string, msg?: RegExp, db = 'app'): Promise<PgError> {
  let caught: PgError | undefined;
  await assert.rejects(pgLogin(b, user, password, db), (err: PgError) => {
    caught = err;
    assert.equal(err.code, code, `expected SQLSTATE ${code}, got ${err.code}: ${err.message}`);
    if (msg) assert.match(err.message, msg);
    return true;
  });
  return caught!;
}

/** Expect a postgres.js login to fail with this SQLSTATE. */
async function pjsLoginFails(b: Pgtide, user: string, password: string, code: string, db = 'app'): Promise<PgError> {
  let caught: PgError | undefined;
  await assert.rejects(pjsLogin(b, user, password, db), (err: PgError) => {
    caught = err;
    assert.equal(err.code, code, `expected SQLSTATE ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
  return caught!;
}

/**
 * Raw startup for `user`/`db`; resolves with the first authentication request code the pooler sends
 * (3 cleartext, 5 md5, 10 SASL, 0 ok) or `E:<sqlstate>` for an error.
 */
function firstAuthRequest(b: Pgtide, user: string, db = 'app'): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: b.port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('no auth request within 5 s')); }, 5000);
    const done = (v: string) => { clearTimeout(timer); sock.destroy(); resolve(v); };
    sock.on('connect', () => {
      const body = Buffer.from(`user\0${user}\0database\0${db}\0\0`);
      const head = Buffer.alloc(8);
      head.writeInt32BE(8 + body.length, 0);
      head.writeInt32BE(196608, 4);
      sock.write(Buffer.concat([head, body]));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 5) return;
      const len = buf.readInt32BE(1);
      if (buf.length < 1 + len) return;
      if (buf[0] === 0x52) done(String(buf.readInt32BE(5)));
      else if (buf[0] === 0x45) done(`E:${/C([0-9A-Z]{5})\0/.exec(buf.subarray(5, 1 + len).toString('latin1'))?.[1]}`);
      else done(`?${String.fromCharCode(buf[0]!)}`);
    });
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

const SASL = '10';
const MD5 = '5';
const CLEARTEXT = '3';

test('auth_type=md5, plain secrets: pg, postgres.js and psql log in (server login SCRAM for app, md5 for md5user); wrong password and unknown user get the same 28P01', async (t) => {
  const pgs = await sharedPostgres();
  const b = await bouncer(t, pgs, { auth_type: 'md5' }, `"app" "apppass"\n"md5user" "md5pass"\n`);
  assert.equal(await firstAuthRequest(b, 'app'), MD5);
  assert.deepEqual(await pgLogin(b, 'app', 'apppass'), { user: 'app', db: 'app' });
  assert.equal(await pjsLogin(b, 'app', 'apppass'), 'app');
  assert.equal(await psqlLogin(b, 'app', 'apppass'), 'app');
  assert.deepEqual(await pgLogin(b, 'md5user', 'md5pass'), { user: 'md5user', db: 'app' });
  assert.equal(await pjsLogin(b, 'md5user', 'md5pass'), 'md5user');
  assert.equal(await psqlLogin(b, 'md5user', 'md5pass'), 'md5user');

  const wrong = await pgLoginFails(b, 'app', 'nope', '28P01', /password authentication failed for user "app"/);
  await pjsLoginFails(b, 'app', 'nope', '28P01');
  await assert.rejects(psqlLogin(b, 'app', 'nope'), /password authentication failed for user "app"/);
  // unknown user: same challenge, same code, same text (no user enumeration)
  assert.equal(await firstAuthRequest(b, 'zed_nobody'), MD5);
  const unknown = await pgLoginFails(b, 'zed_nobody', 'whatever', '28P01');
  assert.equal(unknown.message.replace('zed_nobody', 'app'), wrong.message);
  await pjsLoginFails(b, 'zed_nobody', 'whatever', '28P01');
  await b.waitForLog(/pooler error: password authentication failed for user "zed_nobody"/);
  await stillServes(b, LOGIN_5S);
  await stillServes(b, { ...LOGIN_5S, user: 'md5user', password: 'md5pass' });
});

test('auth_type=md5, md5-hash secret: md5user logs in with pg, postgres.js and psql (server login passes the hash on); wrong password 28P01', async (t) => {
  const pgs = await sharedPostgres();
  const b = await bouncer(t, pgs, { auth_type: 'md5' }, `"md5user" "${md5Hash('md5pass', 'md5user')}"\n"app" "apppass"\n`);
  assert.equal(await firstAuthRequest(b, 'md5user'), MD5);
  assert.deepEqual(await pgLogin(b, 'md5user', 'md5pass'), { user: 'md5user', db: 'app' });
  assert.equal(await pjsLogin(b, 'md5user', 'md5pass'), 'md5user');
  assert.equal(await psqlLogin(b, 'md5user', 'md5pass'), 'md5user');
  await pgLoginFails(b, 'md5user', 'md5pass-wrong', '28P01', /password authentication failed/);
  await pjsLoginFails(b, 'md5user', 'bad', '28P01');
  await assert.rejects(psqlLogin(b, 'md5user', 'bad'), /password authentication failed/);
  await stillServes(b, { ...LOGIN_5S, user: 'md5user', password: 'md5pass' });
});

test('auth_type=md5, SCRAM secret from pg_authid: the client is switched to SCRAM and pgtide logs in to PostgreSQL with the recovered keys', async (t) => {
  const pgs = await sharedPostgres();
  const secret = await pgs.scramSecret('app');
  assert.match(secret, /^SCRAM-SHA-256\$/);
  const b = await bouncer(t, pgs, { auth_type: 'md5' }, `"app" "${secret}"\n`);
  assert.equal(await firstAuthRequest(b, 'app'), SASL);
  assert.deepEqual(await pgLogin(b, 'app', 'apppass'), { user: 'app', db: 'app' });
  assert.equal(await pjsLogin(b, 'app', 'apppass'), 'app');
  assert.equal(await psqlLogin(b, 'app', 'apppass'), 'app');
  await pgLoginFails(b, 'app', 'apppass-wrong', '28P01', /password authentication failed/);
  await pjsLoginFails(b, 'app', 'x', '28P01');
  await assert.rejects(psqlLogin(b, 'app', 'x'), /password authentication failed/);
  await stillServes(b, LOGIN_5S);
});

test('auth_type=scram-sha-256, plain secret: SCRAM exchange, all three clients log in; wrong password and unknown user get 28P01 after a full SCRAM exchange', async (t) => {
  const pgs = await sharedPostgres();
  const b = await bouncer(t, pgs, { auth_type: 'scram-sha-256' }, `"app" "apppass"\n`);
  assert.equal(await firstAuthRequest(b, 'app'), SASL);
  assert.deepEqual(await pgLogin(b, 'app', 'apppass'), { user: 'app', db: 'app' });
  assert.equal(await pjsLogin(b, 'app', 'apppass'), 'app');
  assert.equal(await psqlLogin(b, 'app', 'apppass'), 'app');
  const wrong = await pgLoginFails(b, 'app', 'nope', '28P01');
  await pjsLoginFails(b, 'app', 'nope', '28P01');
  await assert.rejects(psqlLogin(b, 'app', 'nope'), /authentication failed/);
  assert.equal(await firstAuthRequest(b, 'ghost_user'), SASL);
  const unknown = await pgLoginFails(b, 'ghost_user', 'nope', '28P01');
  assert.equal(unknown.message.replace('ghost_user', 'app'), wrong.message);
  await stillServes(b, LOGIN_5S);
});

test('auth_type=scram-sha-256, SCRAM secret: logs in (passthrough to PostgreSQL); an md5 secret cannot do SCRAM, so the right password fails with 28P01', async (t) => {
  const pgs = await sharedPostgres();
  const secret = await pgs.scramSecret('app');
  const b = await bouncer(t, pgs, { auth_type: 'scram-sha-256' }, `"app" "${secret}"\n"md5user" "${md5Hash('md5pass', 'md5user')}"\n`);
  assert.deepEqual(await pgLogin(b, 'app', 'apppass'), { user: 'app', db: 'app' });
  assert.equal(await pjsLogin(b, 'app', 'apppass'), 'app');
  assert.equal(await psqlLogin(b, 'app', 'apppass'), 'app');
  await pgLoginFails(b, 'app', 'bad', '28P01');
  assert.equal(await firstAuthRequest(b, 'md5user'), SASL);
  await pgLoginFails(b, 'md5user', 'md5pass', '28P01', /password authentication failed/);
  await pjsLoginFails(b, 'md5user', 'md5pass', '28P01');
  await assert.rejects(psqlLogin(b, 'md5user', 'md5pass'), /authentication failed/);
  await stillServes(b, LOGIN_5S);
});

test('auth_type=plain: cleartext password checked against plain, md5 and SCRAM secrets; wrong password and unknown user 28P01', async (t) => {
  const pgs = await sharedPostgres();
  const scram = await pgs.scramSecret('app');
  // a SCRAM secret cannot log in to the server without a SCRAM client login: use a forced-user db for that user
  const databases = `app = host=127.0.0.1 port=${pgs.port} dbname=app
forced = host=127.0.0.1 port=${pgs.port} dbname=app user=app password=apppass`;
  const b = await bouncer(t, pgs, { auth_type: 'plain' },
    `"app" "apppass"\n"md5user" "${md5Hash('md5pass', 'md5user')}"\n"scramguy" "${scram}"\n`, databases);
  assert.equal(await firstAuthRequest(b, 'app'), CLEARTEXT);
  assert.deepEqual(await pgLogin(b, 'app', 'apppass'), { user: 'app', db: 'app' });
  assert.equal(await pjsLogin(b, 'app', 'apppass'), 'app');
  assert.equal(await psqlLogin(b, 'app', 'apppass'), 'app');
  assert.deepEqual(await pgLogin(b, 'md5user', 'md5pass'), { user: 'md5user', db: 'app' });
  assert.equal(await psqlLogin(b, 'md5user', 'md5pass'), 'md5user');
  // scramguy's secret is app's SCRAM secret, so app's password verifies; the forced user logs in to PostgreSQL
  assert.deepEqual(await pgLogin(b, 'scramguy', 'apppass', 'forced'), { user: 'app', db: 'app' });
  await pgLoginFails(b, 'scramguy', 'wrong', '28P01', undefined, 'forced');
  await pgLoginFails(b, 'app', 'wrong', '28P01', /password authentication failed/);
  await pjsLoginFails(b, 'md5user', 'wrong', '28P01');
  await assert.rejects(psqlLogin(b, 'app', 'wrong'), /password authentication failed/);
  assert.equal(await firstAuthRequest(b, 'nobody_here'), CLEARTEXT);
  await pgLoginFails(b, 'nobody_here', 'x', '28P01', /password authentication failed/);
  await stillServes(b, LOGIN_5S);
});

test('auth_type=trust: a user in auth_file gets in with any password (none asked); an unknown user is refused', async (t) => {
  const pgs = await sharedPostgres();
  const b = await bouncer(t, pgs, { auth_type: 'trust' }, `"app" "apppass"\n"trustuser" ""\n`);
  assert.equal(await firstAuthRequest(b, 'app'), '0');
  assert.deepEqual(await pgLogin(b, 'app', 'anything-at-all'), { user: 'app', db: 'app' });
  assert.equal(await pjsLogin(b, 'app', ''), 'app');
  assert.equal(await psqlLogin(b, 'trustuser', ''), 'trustuser');
  assert.equal(await firstAuthRequest(b, 'stranger'), 'E:28000');
  await pgLoginFails(b, 'stranger', 'x', '28000', /"trust" authentication failed/);
  await assert.rejects(psqlLogin(b, 'stranger', ''), /"trust" authentication failed/);
  await stillServes(b, { ...LOGIN_5S, user: 'app', password: '' });
});

test('auth_type=any: any user name logs in to a forced-user db without a password; a db without user= gives "bouncer config error"', async (t) => {
  const pgs = await sharedPostgres();
  const databases = `forced = host=127.0.0.1 port=${pgs.port} dbname=app user=app password=apppass
app = host=127.0.0.1 port=${pgs.port} dbname=app`;
  const b = await bouncer(t, pgs, { auth_type: 'any' }, `"app" "apppass"\n`, databases);
  assert.equal(await firstAuthRequest(b, 'whoever', 'forced'), '0');
  assert.deepEqual(await pgLogin(b, 'whoever', '', 'forced'), { user: 'app', db: 'app' });
  assert.equal(await pjsLogin(b, 'someone_else', 'ignored', 'forced'), 'app');
  assert.equal(await psqlLogin(b, 'psqlguy', '', 'forced'), 'app');
  await pgLoginFails(b, 'app', 'apppass', '28000', /bouncer config error/, 'app');
  await b.waitForLog(/auth_type=any requires forced user/);
  await stillServes(b, { ...LOGIN_5S, user: 'x', password: '', db: 'forced' });
});

test('unknown database: 3D000 "no such database: x" after authentication; with a wrong password the client gets 28P01 instead', async (t) => {
  const pgs = await sharedPostgres();
  const b = await bouncer(t, pgs, { auth_type: 'md5' }, `"app" "apppass"\n`);
  const err = await pgLoginFails(b, 'app', 'apppass', '3D000', /^no such database: nodb_auth_x$/, 'nodb_auth_x');
  assert.equal(err.message, 'no such database: nodb_auth_x');
  await pjsLoginFails(b, 'app', 'apppass', '3D000', 'nodb_auth_x');
  await assert.rejects(psqlLogin(b, 'app', 'apppass', 'nodb_auth_x'), /no such database: nodb_auth_x/);
  // the auth exchange comes first: strangers learn nothing about which databases exist
  assert.equal(await firstAuthRequest(b, 'app', 'nodb_auth_x'), MD5);
  await pgLoginFails(b, 'app', 'wrong', '28P01', /password authentication failed/, 'nodb_auth_x');
  await pgLoginFails(b, 'unknown_u', 'wrong', '28P01', /password authentication failed/, 'nodb_auth_x');
  await stillServes(b, LOGIN_5S);
});

test('the `*` fallback entry creates auto-databases on demand (log "registered new auto-database")', async (t) => {
  const pgs = await sharedPostgres();
  await pgs.psql('DROP DATABASE IF EXISTS auth_autodb_t; CREATE DATABASE auth_autodb_t OWNER app;');
  t.after(() => pgs.psql('DROP DATABASE IF EXISTS auth_autodb_t WITH (FORCE)'));
  const b = await bouncer(t, pgs, { auth_type: 'md5' }, `"app" "apppass"\n`, `* = host=127.0.0.1 port=${pgs.port}`);
  const mark = b.log().length;
  assert.deepEqual(await pgLogin(b, 'app', 'apppass', 'auth_autodb_t'), { user: 'app', db: 'auth_autodb_t' });
  await b.waitForLog(/registered new auto-database: (db=)?auth_autodb_t\b/, 5000, mark);
  assert.deepEqual(await pgLogin(b, 'app', 'apppass', 'app'), { user: 'app', db: 'app' });
  await b.waitForLog(/registered new auto-database: (db=)?app\b/, 5000, mark);
  // registered once: the second login to the same name reuses it
  assert.equal(await pjsLogin(b, 'app', 'apppass', 'auth_autodb_t'), 'app');
  assert.equal(b.log().slice(mark).match(/registered new auto-database: (db=)?auth_autodb_t\b/g)?.length, 1);
  // wrong password on an auto-database: still 28P01
  await pgLoginFails(b, 'app', 'bad', '28P01', undefined, 'auth_autodb_t');
  // a name PostgreSQL does not have: the server's own 3D000 reaches the client
  await pgLoginFails(b, 'app', 'apppass', '3D000', /does not exist/, 'auth_autodb_missing');
  await stillServes(b, LOGIN_5S);
});

/** Raw login for app up to the first auth request, then one 'p' message with `body`; resolves with the error's code and message. */
function badPasswordMessage(b: Pgtide, body: Buffer): Promise<{ code?: string; message?: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: b.port });
    let buf = Buffer.alloc(0);
    let sent = false;
    let result: { code?: string; message?: string } = {};
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('no answer within 5 s')); }, 5000);
    sock.on('connect', () => {
      const params = Buffer.from('user\0app\0database\0app\0\0');
      const head = Buffer.alloc(8);
      head.writeInt32BE(8 + params.length, 0);
      head.writeInt32BE(196608, 4);
      sock.write(Buffer.concat([head, params]));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5 && buf.length >= 1 + buf.readInt32BE(1)) {
        const type = buf[0];
        const msg = buf.subarray(5, 1 + buf.readInt32BE(1)).toString('utf8');
        buf = buf.subarray(1 + buf.readInt32BE(1));
        if (type === 0x52 && !sent) {
          sent = true;
          const h = Buffer.alloc(5);
          h.write('p', 0, 'latin1');
          h.writeInt32BE(4 + body.length, 1);
          sock.write(Buffer.concat([h, body]));
        } else if (type === 0x45) {
          result = { code: /C([0-9A-Z]{5})\0/.exec(msg)?.[1], message: /M([^\0]*)\0/.exec(msg)?.[1] };
        }
      }
    });
    sock.on('close', () => { clearTimeout(timer); resolve({ ...result, closed: true }); });
    sock.on('error', () => { /* close follows */ });
  });
}

test('malformed password and SASL messages: 08P01 (the client\'s fault, not an internal error); bad SCRAM content: 28P01; the pooler keeps serving', async (t) => {
  const pgs = await sharedPostgres();
  const sasl = (mech: string, len: number, data: string) => {
    const l = Buffer.alloc(4);
    l.writeInt32BE(len, 0);
    return Buffer.concat([Buffer.from(mech + '\0'), l, Buffer.from(data)]);
  };
  for (const authType of ['md5', 'plain', 'scram-sha-256']) {
    const b = await bouncer(t, pgs, { auth_type: authType }, `"app" "apppass"\n`);
    for (const body of [Buffer.from('no-terminator'), Buffer.alloc(0)]) {
      const r = await badPasswordMessage(b, body);
      assert.equal(r.code, '08P01', `${authType} ${JSON.stringify(body.toString())}: ${r.code} ${r.message}`);
      assert.match(r.message!, /malformed authentication message/);
    }
    if (authType === 'scram-sha-256') {
      // length word larger than the data that follows
      const over = await badPasswordMessage(b, sasl('SCRAM-SHA-256', 500, 'n,,n=,r=abc'));
      assert.equal(over.code, '08P01', `${over.code} ${over.message}`);
      // well-framed but meaningless SCRAM content, or a mechanism that was not offered
      for (const body of [sasl('SCRAM-SHA-256', 3, 'xyz'), sasl('SCRAM-SHA-256-PLUS', 3, 'xyz'), sasl('SCRAM-SHA-256', 11, 'p=x,,n=,r=a')]) {
        const r = await badPasswordMessage(b, body);
        assert.equal(r.code, '28P01', `${r.code} ${r.message}`);
      }
    } else {
      // an empty password is just a wrong password
      const empty = await badPasswordMessage(b, Buffer.from('\0'));
      assert.equal(empty.code, '28P01', `${empty.code} ${empty.message}`);
    }
    await stillServes(b, LOGIN_5S);
    assert.doesNotMatch(b.log(), /internal error|ERROR C-/);
  }
});

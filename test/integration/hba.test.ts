// auth_type = hba through pgtide with real clients: methods chosen per user, database, address and connection
// type; reject and no-match are 28000 with PostgreSQL's wording; an @file list; the console follows the rules too;
// a broken file makes RELOAD fail and keeps the old rules; a good one is picked up by SIGHUP. auth_type = cert: the client certificate's CN is the user.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { sharedPostgres, type PgServer } from '../harness/postgres.js';
import { startPgtide, iniFor, track, type Pgtide } from '../harness/pgtide.js';
import { makeCerts, type Certs } from '../harness/certs.js';
import { stillServes, type PgError } from '../harness/util.js';

let server: PgServer;
let certs: Certs;

before(async () => {
  server = await sharedPostgres();
  certs = makeCerts();
});
after(() => certs?.cleanup());

const HBA = `
local   all        app                       reject
host    app        @md5users  127.0.0.1/32   md5
host    app        app        127.0.0.1/32   scram-sha-256
host    app        trustuser  127.0.0.1 255.255.255.255 trust
host    pgbouncer  app        127.0.0.1/32   md5
host    all        all        0.0.0.0/0      reject
`;

async function login(b: Pgtide, user: string, password: string, db = 'app', host = '127.0.0.1'): Promise<string | PgError> {
  const c = new pg.Client({ host, port: b.port, user, password, database: db });
  c.on('error', () => {});
  try {
    await c.connect();
    const r = await c.query(db === 'pgbouncer' ? 'SHOW VERSION' : 'select current_user as u');
    return db === 'pgbouncer' ? 'console' : r.rows[0].u;
  } catch (e) {
    return e as PgError;
  } finally {
    await c.end().catch(() => {});
  }
}

function code(r: string | PgError): string {
  return typeof r === 'string' ? r : `${r.code}: ${r.message}`;
}

test('auth_type = hba: the first matching line picks the method; reject and no match are refused', { timeout: 30_000 }, async (t) => {
  const b = track(t, await startPgtide({
    pg: server,
    ini: (ctx) => iniFor(ctx, { settings: { auth_type: 'hba', auth_hba_file: 'hba.conf', admin_users: 'app', stats_users: 'md5user' } }),
    files: { 'hba.conf': HBA, md5users: 'md5user\n' },
  }));
  assert.equal(await login(b, 'md5user', 'md5pass'), 'md5user'); // md5, via @md5users
  assert.equal(code(await login(b, 'md5user', 'wrong')), '28P01: password authentication failed for user "md5user"');
  assert.equal(await login(b, 'app', 'apppass'), 'app'); // scram-sha-256
  assert.equal(await login(b, 'trustuser', 'anything'), 'trustuser'); // trust: no password asked
  assert.equal(await login(b, 'app', 'apppass', 'pgbouncer'), 'console');
  assert.equal(code(await login(b, 'md5user', 'md5pass', 'pgbouncer')),
    '28000: pg_hba.conf rejects connection for host "127.0.0.1", user "md5user", database "pgbouncer", no encryption');
  // over the unix socket the `local` line rejects app
  assert.equal(code(await login(b, 'app', 'apppass', 'app', b.socketDir)),
    '28000: pg_hba.conf rejects connection for host "[local]", user "app", database "app", no encryption');
  assert.equal(code(await login(b, 'trustuser', '', 'app', b.socketDir)),
    '28000: no pg_hba.conf entry for host "[local]", user "trustuser", database "app", no encryption');

  // RELOAD with a broken file: the old rules stay
  writeFileSync(join(b.dir, 'hba.conf'), 'host all all all ldap\n');
  const admin = new pg.Client({ host: '127.0.0.1', port: b.port, user: 'app', password: 'apppass', database: 'pgbouncer' });
  await admin.connect();
  await assert.rejects(admin.query('RELOAD'), (e: PgError) => e.code === 'F0000' && /RELOAD failed/.test(e.message));
  await admin.end();
  await b.waitForLog(/hba\.conf:1: authentication method "ldap" is not supported/);
  assert.equal(await login(b, 'md5user', 'md5pass'), 'md5user');
  // a good file is picked up
  writeFileSync(join(b.dir, 'hba.conf'), readFileSync(join(b.dir, 'hba.conf'), 'utf8').replace(/.*/s, 'host all md5user all reject\nhost all all all md5\n'));
  b.signal('SIGHUP');
  await waitUntil(async () => typeof (await login(b, 'md5user', 'md5pass')) !== 'string');
  assert.equal(await login(b, 'app', 'apppass'), 'app');
  await stillServes(b);
});

async function waitUntil(fn: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + 5000;
  while (!(await fn())) {
    if (Date.now() > end) assert.fail('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('auth_type = cert: a verified client certificate whose CN is the user logs in without a password', { timeout: 30_000 }, async (t) => {
  const f = certs.f;
  const b = track(t, await startPgtide({
    pg: server,
    ini: (ctx) => iniFor(ctx, {
      settings: {
        auth_type: 'cert', client_tls_sslmode: 'verify-full',
        client_tls_key_file: f('server.key'), client_tls_cert_file: f('server.crt'), client_tls_ca_file: f('ca.crt'),
      },
    }),
  }));
  const ssl = { ca: readFileSync(f('ca.crt'), 'utf8'), cert: readFileSync(f('client.crt'), 'utf8'), key: readFileSync(f('client.key'), 'utf8'), servername: 'localhost' };
  const as = async (user: string) => {
    const c = new pg.Client({ host: '127.0.0.1', port: b.port, user, database: 'app', ssl });
    c.on('error', () => {});
    try {
      await c.connect();
      return (await c.query('select current_user as u')).rows[0].u as string;
    } catch (e) {
      return code(e as PgError);
    } finally {
      await c.end().catch(() => {});
    }
  };
  assert.equal(await as('app'), 'app'); // CN=app
  assert.equal(await as('md5user'), '28000: certificate authentication failed for user "md5user"');
  assert.match(b.log(), /certificate's CN "app" is not the user name/);
});

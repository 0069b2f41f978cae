// Server-side TLS (pgtide as a TLS client of PostgreSQL): a PostgreSQL that accepts only TLS on TCP (hostssl, and
// hostnossl … reject), with certificates made by openssl at test time. server_tls_sslmode require and verify-full
// (with the test CA) log in over TLS; verify-full without the CA, and require against a PostgreSQL without TLS, fail
// with a clear error and never fall back to plain text; disable against the TLS-only server gets PostgreSQL's refusal.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { pgFileOwner, sharedPostgres, startPostgres, type PgServer } from '../harness/postgres.js';
import { pgtideWith, track, type Pgtide } from '../harness/pgtide.js';
import { makeCerts, type Certs } from '../harness/certs.js';
import { stillServes, type PgError } from '../harness/util.js';

let certs: Certs;
let tlsPg: PgServer;

before(async () => {
  certs = makeCerts(pgFileOwner());
  const f = certs.f;
  tlsPg = await startPostgres({
    maxConnections: 50,
    extraConf: `ssl = on\nssl_cert_file = '${f('server.crt')}'\nssl_key_file = '${f('server.key')}'\nssl_ca_file = '${f('ca.crt')}'\n`,
    hba: 'hostssl all all 127.0.0.1/32 md5\nhostnossl all all 127.0.0.1/32 reject\n',
  });
});

after(async () => {
  await tlsPg?.stop();
  certs?.cleanup();
});

async function sslInfo(b: Pgtide): Promise<{ ssl: boolean; version: string }> {
  const c = new pg.Client({ connectionString: b.url('app', 'apppass', 'app') });
  await c.connect();
  try {
    return (await c.query('select ssl, version from pg_stat_ssl where pid = pg_backend_pid()')).rows[0];
  } finally {
    await c.end();
  }
}

async function loginError(b: Pgtide): Promise<PgError> {
  const c = new pg.Client({ connectionString: b.url('app', 'apppass', 'app') });
  c.on('error', () => {});
  try {
    await c.connect();
    await c.query('select 1');
  } catch (e) {
    return e as PgError;
  } finally {
    await c.end().catch(() => {});
  }
  assert.fail('the login through pgtide should have failed');
}

test('server_tls_sslmode = require and verify-full: pgtide reaches a TLS-only PostgreSQL over TLS', { timeout: 30_000 }, async (t) => {
  for (const settings of <Record<string, string>[]>[
    { server_tls_sslmode: 'require' },
    { server_tls_sslmode: 'verify-ca', server_tls_ca_file: certs.f('ca.crt') },
    { server_tls_sslmode: 'verify-full', server_tls_ca_file: certs.f('ca.crt') },
    // a client certificate for PostgreSQL too
    { server_tls_sslmode: 'verify-full', server_tls_ca_file: certs.f('ca.crt'), server_tls_key_file: certs.f('client.key'), server_tls_cert_file: certs.f('client.crt') },
  ]) {
    const b = track(t, await pgtideWith(tlsPg, { pool_mode: 'transaction', admin_users: 'app', log_connections: 1, ...settings }));
    const info = await sslInfo(b);
    assert.equal(info.ssl, true, JSON.stringify(settings));
    assert.match(info.version, /^TLSv1\.[23]$/);
    const admin = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'pgbouncer') }));
    await admin.connect();
    const servers = (await admin.query('SHOW SERVERS')).rows.filter((r) => r.database === 'app');
    assert.ok(servers.length > 0 && servers.every((r) => /^TLSv1\.[23]\//.test(r.tls)), JSON.stringify(servers.map((r) => r.tls)));
    assert.match(b.log(), /new connection to server \(from [^)]*\) tls=TLSv1\.[23]\//);
    await stillServes(b);
  }
});

test('a certificate that does not verify, or a server without TLS under require, is an error, never plain text', { timeout: 30_000 }, async (t) => {
  // verify-full with the system CAs: the test CA is unknown
  const b1 = track(t, await pgtideWith(tlsPg, { server_tls_sslmode: 'verify-full' }));
  const e1 = await loginError(b1);
  assert.equal(e1.code, '08006');
  assert.match(e1.message, /server connection failed: .*(self[- ]signed|unable to (get|verify))/i);
  // require against a PostgreSQL without TLS
  const plain = await sharedPostgres();
  const b2 = track(t, await pgtideWith(plain, { server_tls_sslmode: 'require' }));
  const e2 = await loginError(b2);
  assert.equal(e2.code, '08001');
  assert.match(e2.message, /server does not support TLS, but server_tls_sslmode is require/);
  // prefer (the default) against it: plain text, as before
  const b3 = track(t, await pgtideWith(plain, { server_tls_sslmode: 'prefer' }));
  await stillServes(b3);
  // disable against the TLS-only server: PostgreSQL's own refusal reaches the client
  const b4 = track(t, await pgtideWith(tlsPg, { server_tls_sslmode: 'disable' }));
  const e4 = await loginError(b4);
  assert.equal(e4.code, '28000');
  assert.match(e4.message, /no encryption/);
  for (const b of [b1, b2, b4]) assert.equal(b.proc.exitCode, null, 'pgtide still runs');
});

test('named statements over server TLS: rewritten Binds gathered with the bytes around them reach PostgreSQL intact, large ones too', { timeout: 60_000 }, async (t) => {
  const b = track(t, await pgtideWith(tlsPg, { pool_mode: 'transaction', default_pool_size: 2, server_tls_sslmode: 'require' }));
  const clients = await Promise.all(Array.from({ length: 6 }, async () => {
    const c = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app') }));
    await c.connect();
    return c;
  }));
  await Promise.all(clients.map(async (c, ci) => {
    for (let i = 0; i < 150; i++) {
      // every 25th a 100 kB parameter: a write the TLS socket may not take at once
      const tail = i % 25 === 0 ? 'z'.repeat(100_000) : `c${ci}-i${i}`;
      const { rows } = await c.query<{ s: string }>({ name: 'tls_cat', text: 'select $1::text || $2::text as s', values: [`${ci}:`, tail] });
      assert.equal(rows[0]!.s, `${ci}:${tail}`, `client ${ci}, query ${i}`);
    }
  }));
  await stillServes(b);
});

// Client-side TLS (pgtide as a TLS server): a CA, a server certificate (localhost / 127.0.0.1) and a client
// certificate are made with openssl in a temp dir at test time. psql and pg through pgtide with sslmode require
// and verify-full; client_tls_sslmode=require refuses plaintext; verify-ca wants a client certificate; the
// plaintext-injection case (bytes after the SSLRequest) is refused; RELOAD with a broken certificate keeps the old one.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { sharedPostgres, type PgServer } from '../harness/postgres.js';
import { pgtideWith, startPgtide, iniFor, type Pgtide } from '../harness/pgtide.js';
import { psqlThrough, stillServes } from '../harness/util.js';
import { makeCerts, type Certs } from '../harness/certs.js';

let certs: Certs;
let pgs: PgServer;
const f = (name: string): string => certs.f(name);

before(async () => {
  pgs = await sharedPostgres();
  certs = makeCerts();
});

after(() => certs?.cleanup());

function tlsSettings(mode: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    client_tls_sslmode: mode,
    client_tls_key_file: f('server.key'),
    client_tls_cert_file: f('server.crt'),
    client_tls_ca_file: f('ca.crt'),
    log_connections: '1',
    ...extra,
  };
}

const psql = (b: Pgtide, conn: string, host = '127.0.0.1') => psqlThrough(b, conn, 'SELECT 1', host);

/** Send an SSLRequest (optionally followed by more bytes in the same write) and collect what comes back until close. */
function rawSslRequest(port: number, extra: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let got = Buffer.alloc(0);
    sock.on('connect', () => {
      const req = Buffer.alloc(8);
      req.writeInt32BE(8, 0);
      req.writeInt32BE(80877103, 4);
      sock.write(Buffer.concat([req, extra]));
    });
    sock.on('data', (d) => { got = Buffer.concat([got, d]); });
    sock.on('error', reject);
    sock.on('close', () => resolve(got));
    setTimeout(() => sock.destroy(), 3000);
  });
}

function startup(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) parts.push(Buffer.from(`${k}\0${v}\0`));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
}

test('client_tls_sslmode=require: psql require and verify-full, pg with ca+servername; plaintext refused with SSL required; log and SHOW CLIENTS show tls', async () => {
  const b = await pgtideWith(pgs, tlsSettings('require', { admin_users: 'app' }));
  try {
    const req = await psql(b, 'sslmode=require');
    assert.equal(req.code, 0, req.err);
    assert.equal(req.out, '1');
    const full = await psql(b, `sslmode=verify-full sslrootcert=${f('ca.crt')}`, 'localhost');
    assert.equal(full.code, 0, full.err);
    assert.equal(full.out, '1');
    await b.waitForLog(/login attempt: db=app user=app tls=TLSv1\.[23]\/\S+/);

    const ca = readFileSync(f('ca.crt'), 'utf8');
    const c = new pg.Client({ host: '127.0.0.1', port: b.port, user: 'app', password: 'apppass', database: 'app', ssl: { ca, servername: 'localhost' } });
    await c.connect();
    try {
      const { rows } = await c.query<{ one: number }>('select 1 as one');
      assert.deepEqual(rows, [{ one: 1 }]);
      // a large result over TLS arrives intact (the server side reuses its read buffer)
      const big = await c.query<{ i: number; s: string }>("select i, repeat(md5(i::text), 64) as s from generate_series(1, 6000) i");
      assert.equal(big.rows.length, 6000);
      for (const r of big.rows) assert.equal(r.s, createHash('md5').update(String(r.i)).digest('hex').repeat(64), `row ${r.i}`);
      const admin = new pg.Client({ host: '127.0.0.1', port: b.port, user: 'app', password: 'apppass', database: 'pgbouncer', ssl: { ca, servername: 'localhost' } });
      await admin.connect();
      try {
        const r = await admin.query({ text: 'SHOW CLIENTS', queryMode: 'simple' } as pg.QueryConfig);
        const tlsCells = r.rows.map((row: Record<string, string>) => row.tls);
        assert.ok(tlsCells.length >= 2 && tlsCells.every((t) => /^TLSv1\.[23]\/\S+$/.test(t)), JSON.stringify(tlsCells));
        // SET of a client TLS file that cannot be used is refused and changes nothing
        await assert.rejects(admin.query(`SET client_tls_cert_file = '${f('missing.crt')}'`), (e: Error & { detail?: string }) => {
          assert.match(e.message, /SET failed/);
          assert.match(e.detail ?? '', /cannot read client_tls_cert_file/);
          return true;
        });
        const cfg = await admin.query({ text: 'SHOW CONFIG', queryMode: 'simple' } as pg.QueryConfig);
        assert.equal(cfg.rows.find((r: Record<string, string>) => r.key === 'client_tls_cert_file')?.value, f('server.crt'));
      } finally {
        await admin.end();
      }
    } finally {
      await c.end();
    }

    // plaintext under require: FATAL SSL required, and the pooler keeps serving
    const plain = new pg.Client({ connectionString: b.url('app', 'apppass', 'app') });
    plain.on('error', () => {});
    await assert.rejects(plain.connect(), (e: Error & { code?: string }) => {
      assert.match(e.message, /SSL required/);
      assert.equal(e.code, '28000');
      return true;
    });
    const disable = await psql(b, 'sslmode=disable');
    assert.notEqual(disable.code, 0);
    assert.match(disable.err, /SSL required/);
    const again = await psql(b, 'sslmode=require');
    assert.equal(again.code, 0, again.err);
    // unix sockets: SSLRequest gets N and plain clients are exempt, as in PgBouncer
    const unixPrefer = await psql(b, 'sslmode=prefer', b.socketDir);
    assert.equal(unixPrefer.code, 0, unixPrefer.err);
    assert.equal(unixPrefer.out, '1');
  } finally {
    await b.stop();
  }
});

test('unencrypted bytes after the SSLRequest (CVE-2021-23214) are refused, then the pooler still serves', async () => {
  const b = await pgtideWith(pgs, tlsSettings('prefer', { log_pooler_errors: '1' }));
  try {
    const got = await rawSslRequest(b.port, startup({ user: 'app', database: 'app' }));
    assert.notEqual(got.subarray(0, 1).toString(), 'S');
    assert.match(got.toString('latin1'), /received unencrypted data after SSL request/);
    // prefer: plaintext still works, TLS works
    await stillServes(b);
    const req = await psql(b, 'sslmode=require');
    assert.equal(req.code, 0, req.err);
  } finally {
    await b.stop();
  }
});

test('client_tls_sslmode=disable: SSLRequest gets N, psql sslmode=prefer works, log says tls=no', async () => {
  const b = await pgtideWith(pgs, { log_connections: '1' });
  try {
    const got = await rawSslRequest(b.port);
    assert.equal(got.toString(), 'N');
    const prefer = await psql(b, 'sslmode=prefer');
    assert.equal(prefer.code, 0, prefer.err);
    assert.equal(prefer.out, '1');
    await b.waitForLog(/login attempt: db=app user=app tls=no/);
  } finally {
    await b.stop();
  }
});

test('client_tls_sslmode=verify-ca: no client certificate is refused, one signed by the CA is accepted', async () => {
  const b = await pgtideWith(pgs, tlsSettings('verify-ca'));
  try {
    const none = await psql(b, `sslmode=require sslcert=${f('nonexistent.crt')} sslkey=${f('nonexistent.key')}`);
    assert.notEqual(none.code, 0);
    const withCert = await psql(b, `sslmode=verify-ca sslrootcert=${f('ca.crt')} sslcert=${f('client.crt')} sslkey=${f('client.key')}`);
    assert.equal(withCert.code, 0, withCert.err);
    assert.equal(withCert.out, '1');
    await stillServes(b).then(
      () => assert.fail('a plaintext client must be refused under verify-ca'),
      (e: Error) => assert.match(e.message, /SSL required/),
    );
  } finally {
    await b.stop();
  }
});

test('a broken certificate: refused at startup with a clear message; on RELOAD the old context stays', async () => {
  writeFileSync(f('broken.crt'), 'not a certificate\n');
  const bad = await startPgtide({
    pg: pgs,
    expectExit: true,
    ini: (ctx) => iniFor(ctx, { settings: tlsSettings('require', { client_tls_cert_file: f('broken.crt') }) }),
  });
  assert.notEqual(bad.proc.exitCode, 0);
  assert.match(bad.log(), /cannot start: client TLS setup failed/);

  const b = await startPgtide({ pg: pgs, ini: (ctx) => iniFor(ctx, { settings: tlsSettings('require') }) });
  try {
    const ini = readFileSync(join(b.dir, 'pgbouncer.ini'), 'utf8').replace(f('server.crt'), f('broken.crt'));
    writeFileSync(join(b.dir, 'pgbouncer.ini'), ini);
    const mark = b.log().length;
    process.kill(b.pid, 'SIGHUP');
    await b.waitForLog(/keeping the old client TLS configuration/, 5000, mark);
    const req = await psql(b, `sslmode=verify-full sslrootcert=${f('ca.crt')}`, 'localhost');
    assert.equal(req.code, 0, req.err);
    assert.equal(req.out, '1');
  } finally {
    await b.stop();
  }
});

test('direct TLS (PostgreSQL 17 sslnegotiation=direct, ALPN "postgresql") and client_tls13_ciphers', async () => {
  const b = await pgtideWith(pgs, tlsSettings('require', { client_tls13_ciphers: 'TLS_AES_128_GCM_SHA256' }));
  try {
    const startup = (() => {
      const body = Buffer.from('user\0app\0database\0app\0\0');
      const head = Buffer.alloc(8);
      head.writeInt32BE(8 + body.length, 0);
      head.writeInt32BE(196608, 4);
      return Buffer.concat([head, body]);
    })();
    // a TLS handshake straight away, no SSLRequest; the pooler asks for the password inside TLS
    const reply = (alpn: string[] | undefined) => new Promise<{ first: string; cipher: string; alpn: string | false | null } | 'closed'>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: b.port, ca: readFileSync(f('ca.crt')), servername: 'localhost', ALPNProtocols: alpn }, () => s.write(startup));
      s.once('data', (d) => { resolve({ first: String.fromCharCode(d[0]!), cipher: s.getCipher().standardName, alpn: s.alpnProtocol }); s.destroy(); });
      s.on('error', () => resolve('closed'));
      s.on('close', () => resolve('closed'));
    });
    assert.deepEqual(await reply(['postgresql']), { first: 'R', cipher: 'TLS_AES_128_GCM_SHA256', alpn: 'postgresql' });
    assert.equal(await reply(undefined), 'closed', 'direct TLS without ALPN is refused, as PostgreSQL does');
    const req = await psql(b, 'sslmode=require');
    assert.equal(req.code, 0, req.err);
    await b.waitForLog(/login attempt: db=app user=app tls=TLSv1\.3\/TLS_AES_128_GCM_SHA256/);
    await stillServes(b).then(() => assert.fail('plaintext must be refused'), (e: Error) => assert.match(e.message, /SSL required/));
  } finally {
    await b.stop();
  }
});

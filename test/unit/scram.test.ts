/* Unit tests for src/auth/scram.ts: RFC 7677 vectors, PostgreSQL-made secrets, both exchange sides, malformed input. */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

import {
  ScramClientExchange,
  ScramError,
  ScramServerExchange,
  type ScramSecret,
  cachedSecretFromPassword,
  clearScramSecretCache,
  dummyScramSecret,
  formatScramSecret,
  generateScramNonce,
  isDummyScramSecret,
  parseScramSecret,
  saltedPassword,
  saslprep,
  scramSecretCacheSize,
  scramSecretFromPassword,
  setScramSecretCacheMax,
  SCRAM_SECRET_CACHE_MAX,
} from '../../src/auth/scram.js';

// RFC 7677 section 3.
const RFC = {
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonceSuffix: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  iterations: 4096,
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

/*
 * Secrets made by a throwaway PostgreSQL 15 (initdb + SET password_encryption='scram-sha-256';
 * CREATE ROLE ... PASSWORD ...; SELECT rolpassword FROM pg_authid).
 */
const PG_SECRETS: Array<{ role: string; password: string; secret: string; note: string }> = [
  {
    role: 'x',
    password: 'pw',
    note: 'ASCII',
    secret:
      'SCRAM-SHA-256$4096:3H07EFaVnKAR1U8++HVsAA==$Blms+NqDxbduBMZk33r7XxoE0szVCANOmbXfM3Tywc8=:ytE+u3r9Ce4sUENLEennWUxbQoWQkf9cnP6UEW4tlK8=',
  },
  {
    role: 'y',
    password: 'p\u00e4ss',
    note: 'non-ASCII, NFKC-stable',
    secret:
      'SCRAM-SHA-256$4096:VL5S0LzD/hRKzuep8vV7fg==$9G3iY7+0LoOW1INwdrrPVNQuBrWbLVu+gYiOQyZ+R30=:ZLSBNeCp7e0V2muD3dtelgnFlQHNTKfaxPAl+p0pIfk=',
  },
  {
    role: 'z',
    password: '\u2168',
    note: 'ROMAN NUMERAL NINE, NFKC -> "IX"',
    secret:
      'SCRAM-SHA-256$4096:/qnUvWF4/a94wUX6vKf/5g==$h9J4Mnj7iAt0lXM3MnuTXPCoJx6gyClQZ9TASy426mc=:uv1UmU7heCuaJkYbUXrSlEGuBET8DZLVyxFC3S60JKs=',
  },
  {
    role: 's',
    password: 'a\u00adb',
    note: 'soft hyphen mapped to nothing',
    secret:
      'SCRAM-SHA-256$4096:KvrYdMlXGmOAGTUWHCqGYw==$djmpxO7IzupUM1AL853OEqc28l5hgof6F6QiOFBvwY4=:GL/2+i4rjo6EC+L9CuYvAOAAzcuAASM5h3WkocFtIRY=',
  },
  {
    role: 'pu',
    password: 'p\ue000w',
    note: 'private use character: prohibited, raw bytes used',
    secret:
      'SCRAM-SHA-256$4096:ccaLIvihoJTDZF9gQ5jqJA==$jOyz8/si+uRFe5fegxc2GywpMJKUF3uUsky2E4n6ogc=:DMMRuQXqRUTHg4B/eUfvMFLr2p840/nu8LOIk3fbwNA=',
  },
  {
    role: 'nb',
    password: '\u00a0pw',
    note: 'no-break space mapped to space',
    secret:
      'SCRAM-SHA-256$4096:QR9iKRApeTxRUAveXEa6sA==$0vCUV4/smFAlO6O3yKyTpgq5wPGcLRh3WlSEAs/MkVo=:ntMWawICi8f44KTuc4vlFQbKg+o7aLxE9GXMcPILkSs=',
  },
];

/** Run a full exchange between a client and a server; returns the server's result. */
async function runExchange(client: ScramClientExchange, server: ScramServerExchange) {
  const serverFirst = server.clientFirst(client.clientFirst());
  const clientFinal = await client.serverFirst(serverFirst);
  const result = server.clientFinal(clientFinal);
  if (result.ok) client.serverFinal(result.serverFinal);
  return result;
}

/** Independent reference computation of a secret (no SASLprep: ASCII only). */
function referenceSecret(password: string, salt: Buffer, iterations: number): ScramSecret {
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  return {
    iterations,
    salt,
    storedKey: createHash('sha256').update(clientKey).digest(),
    serverKey: createHmac('sha256', salted).update('Server Key').digest(),
  };
}

// ---------------------------------------------------------------------------

test('RFC 7677: client side produces the RFC client-final and accepts its server-final', async () => {
  const client = new ScramClientExchange({ password: RFC.password }, { clientNonce: RFC.clientNonce, user: 'user' });
  assert.equal(client.clientFirst(), RFC.clientFirst);
  assert.equal(await client.serverFirst(RFC.serverFirst), RFC.clientFinal);
  client.serverFinal(RFC.serverFinal);
  assert.equal(client.completed, true);
});

test('RFC 7677: client side in passthrough mode (keys only, no PBKDF2) matches too', async () => {
  const salted = await saltedPassword(RFC.password, RFC.salt, RFC.iterations);
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  const client = new ScramClientExchange({ clientKey, serverKey }, { clientNonce: RFC.clientNonce, user: 'user' });
  assert.equal(client.clientFirst(), RFC.clientFirst);
  assert.equal(await client.serverFirst(Buffer.from(RFC.serverFirst)), RFC.clientFinal);
  client.serverFinal(Buffer.from(RFC.serverFinal));
});

test('RFC 7677: server side accepts the RFC client-final and produces the RFC server-final', async () => {
  const secret = await scramSecretFromPassword(RFC.password, RFC.salt, RFC.iterations);
  assert.deepEqual(secret, referenceSecret(RFC.password, RFC.salt, RFC.iterations));
  const server = new ScramServerExchange(secret, { serverNonce: RFC.serverNonceSuffix });
  assert.equal(server.clientFirst(Buffer.from(RFC.clientFirst)), RFC.serverFirst);
  const result = server.clientFinal(RFC.clientFinal);
  assert.ok(result.ok);
  assert.equal(result.serverFinal, RFC.serverFinal);
  const salted = pbkdf2Sync(RFC.password, RFC.salt, RFC.iterations, 32, 'sha256');
  assert.deepEqual(result.clientKey, createHmac('sha256', salted).update('Client Key').digest());
});

test('client-first looks like libpq: n,,n=,r=<nonce>', () => {
  const c = new ScramClientExchange({ password: 'x' });
  const first = c.clientFirst();
  assert.match(first, /^n,,n=,r=[A-Za-z0-9+/]{24}$/);
  assert.throws(() => c.clientFirst(), ScramError);
});

test('nonces: 18 random bytes, printable, no comma', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const n = generateScramNonce();
    assert.match(n, /^[\x21-\x2b\x2d-\x7e]+$/);
    assert.equal(Buffer.from(n, 'base64').length, 18);
    seen.add(n);
  }
  assert.equal(seen.size, 200);
});

test('secret format round trip and validation', async () => {
  const secret = await scramSecretFromPassword('pw', Buffer.from('0123456789abcdef'), 4096);
  const text = formatScramSecret(secret);
  assert.match(text, /^SCRAM-SHA-256\$4096:[^$]+\$[^:]+:.+$/);
  assert.deepEqual(parseScramSecret(text), secret);
  for (const { secret: s } of PG_SECRETS) assert.equal(formatScramSecret(parseScramSecret(s)!), s);

  const good = PG_SECRETS[0]!.secret;
  for (const bad of [
    '',
    'md5a3556571e93b0d20722ba62be61e8c2d',
    good.replace('SCRAM-SHA-256', 'SCRAM-SHA-1'),
    good.replace('$4096:', '$0:'),
    good.replace('$4096:', '$-1:'),
    good.replace('$4096:', '$99999999999:'),
    good.replace('$4096:', '$4096x:'),
    good.replace('3H07EF', '3H0!EF'), // bad base64 salt
    good.replace('Blms+', 'Blms*'), // bad base64 StoredKey
    good.slice(0, -4), // truncated ServerKey
    `${good}:extra`,
    good.replace(/\$[^$]*:/, '$4096'),
    'SCRAM-SHA-256$4096:$AAAA:AAAA',
  ]) {
    assert.equal(parseScramSecret(bad), null, bad);
  }
  // Keys must be 32 bytes.
  assert.equal(parseScramSecret(`SCRAM-SHA-256$4096:AAAA$${'A'.repeat(40)}=:${'A'.repeat(43)}=`), null);
});

test('scramSecretFromPassword reproduces the secrets PostgreSQL 15 computed (SASLprep included)', async () => {
  for (const { password, secret, note } of PG_SECRETS) {
    const pg = parseScramSecret(secret)!;
    const mine = await scramSecretFromPassword(password, pg.salt, pg.iterations);
    assert.equal(formatScramSecret(mine), secret, `${note}: ${JSON.stringify(password)}`);
  }
});

test('exchanges accept the right password against PostgreSQL-made secrets', async () => {
  for (const { password, secret, note } of PG_SECRETS) {
    const pg = parseScramSecret(secret)!;
    const result = await runExchange(new ScramClientExchange({ password }), new ScramServerExchange(pg));
    assert.ok(result.ok, note);

    const wrong = await runExchange(new ScramClientExchange({ password: `${password}!` }), new ScramServerExchange(pg));
    assert.equal(wrong.ok, false, note);
  }
});

test('SASLprep details', () => {
  assert.deepEqual(saslprep('plain ascii \t\x01'), Buffer.from('plain ascii \t\x01')); // ASCII untouched
  assert.deepEqual(saslprep('\u2168'), Buffer.from('IX'));
  assert.deepEqual(saslprep('I\u00adX'), Buffer.from('IX'));
  assert.deepEqual(saslprep('\u00aa'), Buffer.from('a'));
  assert.deepEqual(saslprep('a\u2000b'), Buffer.from('a b'));
  assert.deepEqual(saslprep('\u00ad'), Buffer.from('\u00ad')); // empty after mapping -> raw
  assert.deepEqual(saslprep('\u2168\u0007'), Buffer.from('\u2168\u0007')); // control char -> raw
  assert.deepEqual(saslprep('\u2168\ue000'), Buffer.from('\u2168\ue000')); // private use -> raw
  assert.deepEqual(saslprep('\u05d0\u05d1'), Buffer.from('\u05d0\u05d1')); // pure RTL is fine
  assert.deepEqual(saslprep('\u05d0a\u05d1\u2168'), Buffer.from('\u05d0a\u05d1\u2168')); // mixed bidi -> raw
  const notUtf8 = Buffer.from([0x70, 0xff, 0xfe, 0x77]);
  assert.deepEqual(saslprep(notUtf8), notUtf8);
  const bom = Buffer.from([0xef, 0xbb, 0xbf, 0x41, 0xe2, 0x85, 0xa8]); // BOM + 'A' + U+2168
  assert.deepEqual(saslprep(bom), Buffer.from('AIX')); // BOM is in table B.1
});

test('password mode: client and server exchanges against each other', async () => {
  const secret = await scramSecretFromPassword('s3cr\u00e9t');
  const client = new ScramClientExchange({ password: 's3cr\u00e9t' });
  const result = await runExchange(client, new ScramServerExchange(secret));
  assert.ok(result.ok);
  assert.equal(client.completed, true);
  // Also with a Buffer password.
  assert.ok((await runExchange(new ScramClientExchange({ password: Buffer.from('s3cr\u00e9t') }), new ScramServerExchange(secret))).ok);
});

test('passthrough mode: the ClientKey recovered by one server logs in to another with the same secret', async () => {
  const secret = await scramSecretFromPassword('hunter2');
  const first = await runExchange(new ScramClientExchange({ password: 'hunter2' }), new ScramServerExchange(secret));
  assert.ok(first.ok);

  const relay = new ScramClientExchange({ clientKey: first.clientKey, serverKey: secret.serverKey });
  const second = await runExchange(relay, new ScramServerExchange(secret));
  assert.ok(second.ok);
  assert.equal(relay.completed, true);

  // The same keys do not work against a secret with another salt (the pooler must reuse the server's secret).
  const other = await scramSecretFromPassword('hunter2');
  const third = await runExchange(
    new ScramClientExchange({ clientKey: first.clientKey, serverKey: secret.serverKey }),
    new ScramServerExchange(other),
  );
  assert.equal(third.ok, false);
});

test('passthrough against a PostgreSQL-made secret', async () => {
  const pg = parseScramSecret(PG_SECRETS[0]!.secret)!;
  const first = await runExchange(new ScramClientExchange({ password: 'pw' }), new ScramServerExchange(pg));
  assert.ok(first.ok);
  assert.ok((await runExchange(new ScramClientExchange({ clientKey: first.clientKey, serverKey: pg.serverKey }), new ScramServerExchange(pg))).ok);
});

test('server accepts gs2 flag "y" with c=eSws and rejects a mismatched channel-binding echo', async () => {
  const secret = await scramSecretFromPassword(RFC.password, RFC.salt, RFC.iterations);
  // Build a client-final by hand for "y,,".
  const cnonce = 'abcdefghijklmnop';
  const server = new ScramServerExchange(secret, { serverNonce: 'SRV' });
  const bare = `n=,r=${cnonce}`;
  const sFirst = server.clientFirst(`y,,${bare}`);
  const withoutProof = `c=eSws,r=${cnonce}SRV`;
  const authMessage = `${bare},${sFirst},${withoutProof}`;
  const salted = pbkdf2Sync(RFC.password, RFC.salt, RFC.iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const sig = createHmac('sha256', storedKey).update(authMessage).digest();
  const proof = Buffer.from(clientKey.map((b, i) => b ^ sig[i]!));
  const ok = server.clientFinal(`${withoutProof},p=${proof.toString('base64')}`);
  assert.ok(ok.ok);

  // "y" header but "n" echo (c=biws): refused.
  const server2 = new ScramServerExchange(secret, { serverNonce: 'SRV' });
  const sFirst2 = server2.clientFirst(`y,,${bare}`);
  const wp2 = `c=biws,r=${cnonce}SRV`;
  const sig2 = createHmac('sha256', storedKey).update(`${bare},${sFirst2},${wp2}`).digest();
  const proof2 = Buffer.from(clientKey.map((b, i) => b ^ sig2[i]!));
  const res2 = server2.clientFinal(`${wp2},p=${proof2.toString('base64')}`);
  assert.equal(res2.ok, false);
  assert.match((res2 as { reason: string }).reason, /channel binding/);
});

test('server ignores the SCRAM user name but keeps the exact bare message', async () => {
  const secret = await scramSecretFromPassword('pw');
  for (const user of ['', 'someone-else', 'a=2Cb=3D']) {
    const client = new ScramClientExchange({ password: 'pw' }, { user });
    assert.ok((await runExchange(client, new ScramServerExchange(secret))).ok, user);
  }
  // Optional extensions in client-first are tolerated (and part of the AuthMessage).
  const server = new ScramServerExchange(secret, { serverNonce: 'S' });
  const sFirst = server.clientFirst('n,,n=,r=abc,x=ext');
  assert.equal(sFirst.split(',')[0], 'r=abcS');
});

test('wrong password and tampered messages fail with ok:false', async () => {
  const secret = await scramSecretFromPassword('right');
  const wrong = await runExchange(new ScramClientExchange({ password: 'wrong' }), new ScramServerExchange(secret));
  assert.equal(wrong.ok, false);

  const tamper = async (edit: (clientFinal: string) => string) => {
    const client = new ScramClientExchange({ password: 'right' });
    const server = new ScramServerExchange(secret);
    const clientFinal = await client.serverFirst(server.clientFirst(client.clientFirst()));
    return server.clientFinal(edit(clientFinal));
  };
  // Flip one bit of the proof.
  const flipped = await tamper((m) => {
    const i = m.lastIndexOf(',p=');
    const proof = Buffer.from(m.slice(i + 3), 'base64');
    proof[5] ^= 0x01;
    return `${m.slice(0, i)},p=${proof.toString('base64')}`;
  });
  assert.equal(flipped.ok, false);
  // Wrong nonce (valid proof computed for a different nonce is impossible; just edit the nonce).
  const nonce = await tamper((m) => m.replace(/,r=(.)/, (_s, c: string) => `,r=${c === 'A' ? 'B' : 'A'}`));
  assert.equal(nonce.ok, false);
  assert.match((nonce as { reason: string }).reason, /nonce/);
  // Untampered still works.
  assert.ok((await tamper((m) => m)).ok);
});

test('client rejects a wrong server signature, an e= error and a foreign nonce', async () => {
  const secret = await scramSecretFromPassword('pw');
  const mk = async () => {
    const client = new ScramClientExchange({ password: 'pw' });
    const server = new ScramServerExchange(secret);
    const result = server.clientFinal(await client.serverFirst(server.clientFirst(client.clientFirst())));
    assert.ok(result.ok);
    return { client, serverFinal: result.serverFinal };
  };
  const a = await mk();
  assert.throws(() => a.client.serverFinal(`v=${randomBytes(32).toString('base64')}`), /server signature/);
  assert.equal(a.client.completed, false);
  const b = await mk();
  assert.throws(() => b.client.serverFinal('e=invalid-proof'), (e: unknown) => e instanceof ScramError && /invalid-proof/.test(e.message));
  const c = await mk();
  assert.throws(() => c.client.serverFinal('v=!!!!'), ScramError);
  const d = await mk();
  assert.throws(() => d.client.serverFinal(`v=${randomBytes(16).toString('base64')}`), ScramError);
  const e = await mk();
  e.client.serverFinal(e.serverFinal);
  assert.throws(() => e.client.serverFinal(e.serverFinal), ScramError); // only once

  // Server with a different password: the client notices at serverFinal (server cannot forge v=).
  const client = new ScramClientExchange({ password: 'pw' }, { clientNonce: 'CN' });
  client.clientFirst();
  await assert.rejects(client.serverFirst('r=XXCNsrv,s=AAAAAAAAAAAAAAAAAAAAAA==,i=4096'), /nonce/);
  const client2 = new ScramClientExchange({ password: 'pw' }, { clientNonce: 'CN' });
  client2.clientFirst();
  await assert.rejects(client2.serverFirst('r=CN,s=AAAAAAAAAAAAAAAAAAAAAA==,i=4096'), /nonce/); // must be extended
});

test('client rejects malformed server-first messages', async () => {
  const cases: Array<string | Buffer> = [
    '',
    'r=CNx',
    'r=CNx,s=AAAA',
    's=AAAA,r=CNx,i=4096',
    'r=CNx,s=AAAA,i=',
    'r=CNx,s=AAAA,i=0',
    'r=CNx,s=AAAA,i=-1',
    'r=CNx,s=AAAA,i=4096.5',
    'r=CNx,s=AAAA,i=0x10',
    'r=CNx,s=AAAA,i=2147483648',
    'r=CNx,s=AAAA,i=99999999999999999999',
    'r=CNx,s=AAAA,i=20000000', // above SCRAM_MAX_ITERATIONS
    'r=CNx,s=,i=4096',
    'r=CNx,s=A!AA,i=4096',
    'r=CNx,s=AAA,i=4096',
    'm=ext,r=CNx,s=AAAA,i=4096',
    'r=CNx,s=AAAA,i=4096,',
    'r=CN\u00e9,s=AAAA,i=4096',
    'r=CNx,s=AAAA,i=4096\0',
    Buffer.from([0x72, 0x3d, 0x43, 0x4e, 0xc3, 0x28, 0x2c]),
    'x'.repeat(100_000),
  ];
  for (const msg of cases) {
    const client = new ScramClientExchange({ password: 'pw' }, { clientNonce: 'CN' });
    client.clientFirst();
    await assert.rejects(client.serverFirst(msg), ScramError, JSON.stringify(String(msg).slice(0, 40)));
  }
  // A small iteration-count limit can be configured.
  const client = new ScramClientExchange({ password: 'pw' }, { clientNonce: 'CN', maxIterations: 1000 });
  client.clientFirst();
  await assert.rejects(client.serverFirst('r=CNx,s=AAAA,i=4096'), /exceeds/);
  // Out of order.
  await assert.rejects(new ScramClientExchange({ password: 'pw' }).serverFirst('r=a,s=AAAA,i=1'), ScramError);
  assert.throws(() => new ScramClientExchange({ password: 'pw' }).serverFinal('v=AAAA'), ScramError);
  // Bad credentials / options.
  assert.throws(() => new ScramClientExchange({ clientKey: Buffer.alloc(5), serverKey: Buffer.alloc(32) }), ScramError);
  assert.throws(() => new ScramClientExchange({ password: 'pw' }, { clientNonce: 'a,b' }), ScramError);
});

test('server rejects malformed client-first messages with ScramError', async () => {
  const secret = await scramSecretFromPassword('pw');
  const cases: Array<[string | Buffer, RegExp?]> = [
    ['p=tls-server-end-point,,n=,r=abc', /channel binding/],
    ['p=tls-unique,,n=,r=abc', /channel binding/],
    ['', undefined],
    ['n', undefined],
    ['n,', undefined],
    ['n,,', undefined],
    ['n,,n=', undefined],
    ['n,,n=,r=', undefined],
    ['n,,r=abc', undefined],
    ['n,,n=,x=abc', undefined],
    ['n,,n=,r=abc,', undefined],
    ['n,,n=,r=a\u00e9c', undefined],
    ['n,,n=,r=a\x01c', undefined],
    ['n,,m=ext,n=,r=abc', /extension/],
    ['n,a=admin,n=,r=abc', /authorization identity/],
    ['x,,n=,r=abc', undefined],
    ['nn,n=,r=abc', undefined],
    ['n,,n=,r=abc\0', undefined],
    ['\ufeffn,,n=,r=abc', undefined],
    [Buffer.from([0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0xff, 0x2c, 0x72, 0x3d, 0x61]), /UTF-8/],
    [Buffer.from([0xef, 0xbb, 0xbf, 0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0x2c, 0x72, 0x3d, 0x61]), undefined],
    ['n,,n=\ud800,r=abc', /UTF-8/],
    [`n,,n=,r=${'a'.repeat(20_000)}`, /too long/],
    [Buffer.alloc(20_000, 0x61), /too long/],
  ];
  for (const [msg, re] of cases) {
    const server = new ScramServerExchange(secret);
    assert.throws(
      () => server.clientFirst(msg),
      (e: unknown) => e instanceof ScramError && (!re || re.test(e.message)),
      JSON.stringify(String(msg).slice(0, 40)),
    );
    // After an error the exchange is dead.
    assert.throws(() => server.clientFinal('c=biws,r=x,p=AAAA'), ScramError);
  }
  // Not a string or buffer at all.
  assert.throws(() => new ScramServerExchange(secret).clientFirst(42 as unknown as string), ScramError);
  assert.throws(() => new ScramServerExchange(secret).clientFirst(null as unknown as string), ScramError);
});

test('server rejects malformed client-final messages with ScramError', async () => {
  const secret = await scramSecretFromPassword('pw');
  const proof = randomBytes(32).toString('base64');
  const cases: Array<string | Buffer> = [
    '',
    'c=biws',
    'c=biws,r=NONCE',
    `c=biws,p=${proof}`,
    `r=NONCE,c=biws,p=${proof}`,
    `c=biws,r=NONCE,p=${proof},x=y`,
    `c=biws,r=NONCE,p=${proof},p=${proof}`,
    'c=biws,r=NONCE,p=',
    'c=biws,r=NONCE,p=!!!!',
    `c=biws,r=NONCE,p=${proof.slice(0, -4)}`,
    `c=biws,r=NONCE,p=${randomBytes(16).toString('base64')}`,
    `c=b!ws,r=NONCE,p=${proof}`,
    `c=,r=NONCE,p=${proof}`,
    `c=biws,r=NONCE,,p=${proof}`,
    `c=biws,r=NONCE,p=${proof}\0`,
    `c=biws,r=NONCE,1=x,p=${proof}`,
    Buffer.concat([Buffer.from('c=biws,r=NONCE\xff', 'latin1'), Buffer.from(`,p=${proof}`)]),
  ];
  for (const msg of cases) {
    const server = new ScramServerExchange(secret, { serverNonce: 'NCE' });
    server.clientFirst('n,,n=,r=NO');
    assert.throws(() => server.clientFinal(msg), ScramError, JSON.stringify(String(msg).slice(0, 60)));
  }
  // Out of order.
  assert.throws(() => new ScramServerExchange(secret).clientFinal(`c=biws,r=a,p=${proof}`), ScramError);
  const s = new ScramServerExchange(secret);
  s.clientFirst('n,,n=,r=abc');
  assert.throws(() => s.clientFirst('n,,n=,r=abc'), ScramError);
  // Bad secrets / options.
  assert.throws(() => new ScramServerExchange({ ...secret, storedKey: Buffer.alloc(31) }), ScramError);
  assert.throws(() => new ScramServerExchange({ ...secret, iterations: 0 }), ScramError);
  assert.throws(() => new ScramServerExchange(secret, { serverNonce: 'a,b' }), ScramError);
});

test('fuzz: mutated messages only ever throw ScramError or return', async () => {
  const secret = await scramSecretFromPassword('pw');
  const client = new ScramClientExchange({ password: 'pw' }, { clientNonce: 'fuzzclientnonce' });
  const server = new ScramServerExchange(secret, { serverNonce: 'fuzzservernonce' });
  const cFirst = client.clientFirst();
  const sFirst = server.clientFirst(cFirst);
  const cFinal = await client.serverFirst(sFirst);
  const result = server.clientFinal(cFinal);
  assert.ok(result.ok);

  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const mutate = (m: string): Buffer => {
    const b = Buffer.from(m);
    const out: number[] = [...b];
    const edits = 1 + rnd(4);
    for (let k = 0; k < edits; k++) {
      const op = rnd(4);
      const pos = rnd(out.length + 1);
      if (op === 0) out.splice(pos, 1);
      else if (op === 1) out.splice(pos, 0, rnd(256));
      else if (op === 2 && pos < out.length) out[pos] = rnd(256);
      else out.splice(pos, 0, [0x2c, 0x3d, 0x00][rnd(3)]!);
    }
    return Buffer.from(out);
  };
  const isExpected = (e: unknown) => e instanceof ScramError;
  for (let i = 0; i < 1500; i++) {
    try {
      new ScramServerExchange(secret).clientFirst(mutate(cFirst));
    } catch (e) {
      assert.ok(isExpected(e), String(e));
    }
    const srv = new ScramServerExchange(secret, { serverNonce: 'fuzzservernonce' });
    srv.clientFirst(cFirst);
    try {
      const r = srv.clientFinal(mutate(cFinal));
      assert.equal(typeof r.ok, 'boolean');
    } catch (e) {
      assert.ok(isExpected(e), String(e));
    }
    const cl = new ScramClientExchange({ clientKey: Buffer.alloc(32, 1), serverKey: Buffer.alloc(32, 2) }, { clientNonce: 'fuzzclientnonce' });
    cl.clientFirst();
    try {
      await cl.serverFirst(mutate(sFirst));
      try {
        cl.serverFinal(mutate((result as { serverFinal: string }).serverFinal));
      } catch (e) {
        assert.ok(isExpected(e), String(e));
      }
    } catch (e) {
      assert.ok(isExpected(e), String(e));
    }
  }
});

test('dummy secret: deterministic per user, and always fails', async () => {
  const a1 = dummyScramSecret('ghost');
  const a2 = dummyScramSecret('ghost');
  const b = dummyScramSecret('other');
  assert.deepEqual(a1, a2);
  assert.notDeepEqual(a1.salt, b.salt);
  assert.equal(a1.salt.length, 16);
  assert.equal(a1.iterations, 4096);
  assert.ok(isDummyScramSecret(a1));
  assert.equal(isDummyScramSecret({ ...a1 }), false);
  assert.ok(parseScramSecret(formatScramSecret(a1)));

  for (const password of ['', 'pw', 'ghost']) {
    const client = new ScramClientExchange({ password });
    const server = new ScramServerExchange(a1);
    const sFirst = server.clientFirst(client.clientFirst());
    assert.match(sFirst, new RegExp(`,s=${a1.salt.toString('base64').replace(/[+/]/g, '\\$&')},i=4096$`));
    const result = server.clientFinal(await client.serverFirst(sFirst));
    assert.equal(result.ok, false);
  }
  // Even a client that somehow holds the dummy's keys (a forged ClientKey cannot exist, but the flag
  // is what guarantees failure).
  const forged = new ScramServerExchange(a1, { serverNonce: 'S' });
  forged.clientFirst('n,,n=,r=C');
  assert.equal(forged.clientFinal(`c=biws,r=CS,p=${Buffer.alloc(32).toString('base64')}`).ok, false);
});

test('cachedSecretFromPassword: same secret for same (user, password), bounded, usable', async () => {
  clearScramSecretCache();
  const [a, b] = await Promise.all([cachedSecretFromPassword('u', 'pw'), cachedSecretFromPassword('u', 'pw')]);
  assert.equal(a, b);
  assert.equal(await cachedSecretFromPassword('u', 'pw'), a);
  const other = await cachedSecretFromPassword('u2', 'pw');
  assert.notDeepEqual(other.salt, a.salt);
  const otherPw = await cachedSecretFromPassword('u', 'pw2');
  assert.notDeepEqual(otherPw.salt, a.salt);
  // 'u' + 'xpw' vs 'ux' + 'pw' must not collide.
  const c1 = await cachedSecretFromPassword('u', 'xpw');
  const c2 = await cachedSecretFromPassword('ux', 'pw');
  assert.notEqual(c1, c2);
  assert.ok((await runExchange(new ScramClientExchange({ password: 'pw' }), new ScramServerExchange(a))).ok);
  clearScramSecretCache();
  assert.notEqual(await cachedSecretFromPassword('u', 'pw'), a);

  // Bounded: least recently used entries go first.
  clearScramSecretCache();
  setScramSecretCacheMax(3);
  try {
    const first = await cachedSecretFromPassword('a', 'pw');
    const second = await cachedSecretFromPassword('b', 'pw');
    await cachedSecretFromPassword('c', 'pw');
    assert.equal(await cachedSecretFromPassword('a', 'pw'), first); // touch 'a'
    await cachedSecretFromPassword('d', 'pw'); // evicts 'b'
    assert.equal(scramSecretCacheSize(), 3);
    assert.equal(await cachedSecretFromPassword('a', 'pw'), first);
    assert.notEqual(await cachedSecretFromPassword('b', 'pw'), second);
    assert.equal(scramSecretCacheSize(), 3);
  } finally {
    setScramSecretCacheMax(SCRAM_SECRET_CACHE_MAX);
    clearScramSecretCache();
  }
});

test('saltedPassword / scramSecretFromPassword reject bad iteration counts', async () => {
  await assert.rejects(saltedPassword('pw', Buffer.from('salt'), 0), ScramError);
  await assert.rejects(saltedPassword('pw', Buffer.from('salt'), 1.5), ScramError);
  await assert.rejects(scramSecretFromPassword('pw', Buffer.alloc(0)), ScramError);
  const s = await scramSecretFromPassword('pw', Buffer.from('salt'), 1);
  assert.deepEqual(s, referenceSecret('pw', Buffer.from('salt'), 1));
});

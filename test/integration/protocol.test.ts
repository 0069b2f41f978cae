// Protocol robustness with raw sockets: bad startup packets, SSL/GSSENC negotiation, clients vanishing mid-login,
// bad typed messages after login, max_packet_size; after each the pooler still serves. Also startup parameters
// (no user, unsupported keys, application_name_add_host).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import { sharedPostgres } from '../harness/postgres.js';
import { pgtideWith, type Pgtide } from '../harness/pgtide.js';
import { psqlThrough, stillServes as selectOneWorks } from '../harness/util.js';
import { V3, SSL_REQUEST, GSSENC_REQUEST, Raw, startupPacket, special, typed, query, expectErrorAndClose, finishLogin, rawLogin, rawSelect } from '../harness/raw.js';


const psql = (b: Pgtide, sslmode: string) => psqlThrough(b, `sslmode=${sslmode}`, 'SELECT 40 + 2');

let bouncer: Pgtide;
let small: Pgtide;
/** One server per pool, short query_wait_timeout: a leaked server shows up as a query_wait_timeout. */
let tiny: Pgtide;
let tinyTx: Pgtide;

before(async () => {
  const pgs = await sharedPostgres();
  bouncer = await pgtideWith(pgs, { auth_type: 'md5' });
  small = await pgtideWith(pgs, { auth_type: 'md5', max_packet_size: 1000, application_name_add_host: 1 });
  tiny = await pgtideWith(pgs, { auth_type: 'md5', default_pool_size: 1, query_wait_timeout: 2 });
  tinyTx = await pgtideWith(pgs, { auth_type: 'md5', default_pool_size: 1, query_wait_timeout: 2, pool_mode: 'transaction' });
});
after(async () => {
  await Promise.all([bouncer?.stop(), small?.stop(), tiny?.stop(), tinyTx?.stop()]);
});

/** The pooler process is alive and a fresh client runs select 1. */
async function stillServes(b: Pgtide = bouncer): Promise<void> {
  assert.equal(b.proc.exitCode, null, 'pgtide exited');
  await selectOneWorks(b, { connectionTimeoutMillis: 5000 });
  assert.doesNotMatch(b.log(), /internal error|uncaught|TypeError|RangeError/i);
}

test('garbage bytes as the startup packet: 08P01 error, connection closed', async () => {
  const r = await Raw.open(bouncer.port);
  r.send(Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
  await expectErrorAndClose(r, '08P01', /startup packet|packet/);
  await stillServes();
});

test('startup length < 8 and > 10000: 08P01 "invalid length of startup packet"', async () => {
  for (const len of [0, 4, 7]) {
    const r = await Raw.open(bouncer.port);
    const b = Buffer.alloc(8);
    b.writeInt32BE(len, 0);
    b.writeInt32BE(V3, 4);
    r.send(b);
    await expectErrorAndClose(r, '08P01', /invalid length of startup packet/);
  }
  const r = await Raw.open(bouncer.port);
  const big = Buffer.alloc(10_001, 0x61);
  big.writeInt32BE(10_001, 0);
  big.writeInt32BE(V3, 4);
  r.send(big);
  await expectErrorAndClose(r, '08P01', /invalid length of startup packet/);
  // exactly 10000 bytes is still a valid startup packet
  const base = startupPacket({ user: 'app', database: 'app', application_name: '' }).length;
  const full = await Raw.open(bouncer.port);
  const pkt = startupPacket({ user: 'app', database: 'app', application_name: 'a'.repeat(10_000 - base) });
  assert.equal(pkt.length, 10_000);
  full.send(pkt);
  await finishLogin(full, 'app', 'apppass');
  full.close();
  await stillServes();
});

test('protocol version 2.0 and 4.0: 0A000 naming the unsupported protocol; 3.1 gets NegotiateProtocolVersion and logs in', async () => {
  for (const [major, minor] of [[2, 0], [4, 0]] as const) {
    const r = await Raw.open(bouncer.port);
    r.send(startupPacket({ user: 'app', database: 'app' }, (major << 16) | minor));
    const f = await expectErrorAndClose(r, '0A000', /protocol/);
    assert.match(f.M!, new RegExp(`${major}\\.${minor}`));
  }
  const r = await Raw.open(bouncer.port);
  r.send(startupPacket({ user: 'app', database: 'app', '_pq_.x': 'y' }, V3 | 1));
  const v = await r.msg();
  assert.equal(v?.type, 'v');
  assert.equal(v!.body.readInt32BE(0), V3, 'the pooler should offer 3.0');
  await finishLogin(r, 'app', 'apppass');
  assert.equal(await rawSelect(r, 'SELECT 7'), '7');
  r.close();
  await stillServes();
});

test('SSLRequest: single byte N, then a normal startup on the same socket works; psql sslmode=prefer works, require fails client-side', async () => {
  const r = await Raw.open(bouncer.port);
  r.send(special(SSL_REQUEST));
  assert.equal(await r.byte(), 'N');
  r.send(startupPacket({ user: 'app', database: 'app' }));
  await finishLogin(r, 'app', 'apppass');
  assert.equal(await rawSelect(r, 'SELECT 40 + 1'), '41');
  r.close();

  const prefer = await psql(bouncer, 'prefer');
  assert.equal(prefer.code, 0, prefer.err);
  assert.equal(prefer.out, '42');
  const require = await psql(bouncer, 'require');
  assert.notEqual(require.code, 0);
  assert.match(require.err, /server does not support SSL, but SSL was required/);
  await stillServes();
});

test('GSSENCRequest: single byte N, then startup works on the same socket', async () => {
  const r = await Raw.open(bouncer.port);
  r.send(special(GSSENC_REQUEST));
  assert.equal(await r.byte(), 'N');
  r.send(special(SSL_REQUEST));
  assert.equal(await r.byte(), 'N');
  r.send(startupPacket({ user: 'app', database: 'app' }));
  await finishLogin(r, 'app', 'apppass');
  assert.equal(await rawSelect(r, 'SELECT 5'), '5');
  r.close();
  await stillServes();
});

test('a client that connects and closes at once, or sends half a startup packet and vanishes: no crash, no log line', async () => {
  const mark = bouncer.log().length;
  const ports: number[] = [];
  const a = await Raw.open(bouncer.port);
  ports.push(a.localPort);
  a.destroy();
  const h = await Raw.open(bouncer.port);
  ports.push(h.localPort);
  const half = startupPacket({ user: 'app', database: 'app' }).subarray(0, 12);
  h.send(half);
  await new Promise((r) => setTimeout(r, 50));
  h.destroy();
  const h2 = await Raw.open(bouncer.port);
  ports.push(h2.localPort);
  h2.send(Buffer.from([0, 0])); // not even a length word
  await new Promise((r) => setTimeout(r, 50));
  h2.destroy();
  await stillServes();
  const later = bouncer.log().slice(mark);
  for (const p of ports) assert.doesNotMatch(later, new RegExp(`:${p}\\b`), `log mentions the vanished client on port ${p}`);
});

test('password message before the startup packet: 08P01, closed', async () => {
  const r = await Raw.open(bouncer.port);
  r.send(typed('p', 'apppass\0'));
  await expectErrorAndClose(r, '08P01');
  await stillServes();
});

test('Terminate in the middle of login: connection closed, log "client close request"', async () => {
  const mark = bouncer.log().length;
  const r = await Raw.open(bouncer.port);
  r.send(startupPacket({ user: 'app', database: 'app' }));
  const auth = await r.msg();
  assert.equal(auth?.type, 'R');
  r.send(typed('X', ''));
  assert.ok(await r.closedWithin(3000));
  await bouncer.waitForLog(new RegExp(`@127\\.0\\.0\\.1:${r.localPort} closing because: client close request`), 3000, mark);
  await stillServes();
});

test('a non-password message during login: 08P01, closed', async () => {
  const r = await Raw.open(bouncer.port);
  r.send(startupPacket({ user: 'app', database: 'app' }));
  assert.equal((await r.msg())?.type, 'R');
  r.send(query('SELECT 1'));
  await expectErrorAndClose(r, '08P01');
  await stillServes();
});

test('Terminate after login: closed cleanly, log "client close request"; the server is reset and goes back to the pool', async () => {
  const pgs = await sharedPostgres();
  const mark = bouncer.log().length;
  const r = await rawLogin(bouncer);
  const pid = await rawSelect(r, 'SELECT pg_backend_pid()');
  r.send(typed('X', ''));
  assert.ok(await r.closedWithin(3000));
  await bouncer.waitForLog(new RegExp(`@127\\.0\\.0\\.1:${r.localPort} closing because: client close request`), 3000, mark);
  // the backend lives on, idle after the session reset (DISCARD ALL)
  const deadline = Date.now() + 3000;
  let seen = '';
  while (Date.now() < deadline) {
    seen = await pgs.psql(`SELECT state || '|' || query FROM pg_stat_activity WHERE pid = ${pid}`);
    if (seen === 'idle|DISCARD ALL') break;
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(seen, 'idle|DISCARD ALL');
  await stillServes();
});

test('a typed message with length < 4 after login: 08P01, closed', async () => {
  for (const len of [0, 3]) {
    const r = await rawLogin(bouncer);
    const m = Buffer.alloc(5);
    m.write('Q', 0, 'latin1');
    m.writeInt32BE(len, 1);
    r.send(m);
    await expectErrorAndClose(r, '08P01', /invalid message length/);
  }
  // also right after a completed query (the client is then linked to a server in session mode)
  const r = await rawLogin(bouncer);
  assert.equal(await rawSelect(r, 'SELECT 9'), '9');
  r.send(Buffer.from([0x51, 0, 0, 0, 2]));
  await expectErrorAndClose(r, '08P01', /invalid message length/);
  await stillServes();
});

test('a message of an unknown type after login: 08P01, the client is closed, the pooler keeps serving', async () => {
  for (const type of ['\0', 'x', 'p']) {
    const r = await rawLogin(bouncer);
    assert.equal(await rawSelect(r, 'SELECT 2'), '2');
    r.send(typed(type, 'abc\0'));
    await expectErrorAndClose(r, '08P01');
  }
  await stillServes();
});

test('malformed startup parameter lists: 08P01, closed', async () => {
  const bodies = [
    Buffer.from('user\0app\0database\0app\0'), // no final terminator
    Buffer.from('user\0app\0database\0'), // key without value
    Buffer.from('user\0app\0\0junk'), // bytes after the terminator
  ];
  for (const body of bodies) {
    const head = Buffer.alloc(8);
    head.writeInt32BE(8 + body.length, 0);
    head.writeInt32BE(V3, 4);
    const r = await Raw.open(bouncer.port);
    r.send(Buffer.concat([head, body]));
    await expectErrorAndClose(r, '08P01', /startup packet|unterminated string/);
  }
  await stillServes();
});

test('a client that vanishes mid-extended-protocol (Parse+Flush, no Sync) or in the middle of a message does not leak its server', async () => {
  const parseMsg = typed('P', '\0SELECT 1\0\0\0');
  const flush = typed('H', '');
  for (const b of [tiny, tinyTx]) {
    // Parse + Flush: the server answers ParseComplete and waits for more (not ready)
    const r = await rawLogin(b);
    r.send(Buffer.concat([parseMsg, flush]));
    assert.equal((await r.msg())?.type, '1');
    r.destroy();
    await stillServes(b);
    // half a Query: the server has a partial message it will never complete
    const r2 = await rawLogin(b);
    assert.equal(await rawSelect(r2, 'SELECT 1'), '1');
    const q = query('SELECT 12345');
    r2.send(q.subarray(0, 9));
    await new Promise((res) => setTimeout(res, 100));
    r2.destroy();
    await stillServes(b);
    // Parse + Execute without Sync after a completed query, then Terminate
    const r3 = await rawLogin(b);
    assert.equal(await rawSelect(r3, 'SELECT 1'), '1');
    r3.send(Buffer.concat([parseMsg, typed('B', '\0\0\0\0\0\0\0\0'), typed('E', '\0\0\0\0\0'), flush]));
    assert.equal((await r3.msg())?.type, '1');
    r3.send(typed('X', ''));
    assert.ok(await r3.closedWithin(3000));
    await stillServes(b);
  }
});

test('max_packet_size=1000: a 2000-byte query gets 08P01 and is never run; a 900-byte one works', async () => {
  const pgs = await sharedPostgres();
  const ok = await rawLogin(small);
  const pad = 'x'.repeat(860);
  assert.equal(await rawSelect(ok, `SELECT length('${pad}')`), '860');
  ok.close();
  const tables = ['proto_pkt_never_a', 'proto_pkt_never_b'];
  await pgs.psql(tables.map((n) => `DROP TABLE IF EXISTS ${n};`).join('\n'), 'app');
  const r = await rawLogin(small);
  r.send(query(`CREATE TABLE ${tables[0]} AS SELECT '${'y'.repeat(2000)}' AS x`));
  await expectErrorAndClose(r, '08P01', /too large|max_packet_size/);
  // also when a server is already linked (session mode, after a first query)
  const r2 = await rawLogin(small);
  assert.equal(await rawSelect(r2, 'SELECT 1'), '1');
  r2.send(query(`CREATE TABLE ${tables[1]} AS SELECT '${'z'.repeat(2000)}' AS x`));
  await expectErrorAndClose(r2, '08P01', /too large|max_packet_size/);
  await stillServes(small);
  // neither statement reached PostgreSQL
  assert.equal(await pgs.psql(`SELECT count(*) FROM pg_class WHERE relname IN ('${tables.join("','")}')`, 'app'), '0');
});

test('startup without user: "no username supplied"; unsupported startup parameter: named in the error', async () => {
  const r = await Raw.open(bouncer.port);
  r.send(startupPacket({ database: 'app' }));
  await expectErrorAndClose(r, '28000', /^no username supplied$/);
  const r2 = await Raw.open(bouncer.port);
  r2.send(startupPacket({ user: 'app', database: 'app', geqo: 'off' }));
  await expectErrorAndClose(r2, '08P01', /unsupported startup parameter: geqo/);
  await stillServes();
});

test('application_name_add_host=1 appends " - <addr>:<port>" (seen by the server through the pooler)', async () => {
  const c = new pg.Client({ connectionString: small.url('app', 'apppass', 'app'), application_name: 'myapp' });
  await c.connect();
  try {
    const port = (c as unknown as { connection: { stream: net.Socket } }).connection.stream.localPort;
    const { rows } = await c.query<{ a: string }>("SELECT current_setting('application_name') AS a");
    assert.equal(rows[0]!.a, `myapp - 127.0.0.1:${port}`);
  } finally {
    await c.end();
  }
  // without an application_name PgBouncer names it "app"
  const r = await Raw.open(small.port);
  r.send(startupPacket({ user: 'app', database: 'app' }));
  await finishLogin(r, 'app', 'apppass');
  assert.equal(await rawSelect(r, "SELECT current_setting('application_name')"), `app - 127.0.0.1:${r.localPort}`);
  r.close();
});

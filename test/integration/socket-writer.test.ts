// Hot-path writes (src/net/socket-writer.ts) when the kernel cannot take them at once: a large result to a client that
// stops reading, and a large COPY upload, arrive byte for byte (content checked, not only sizes), in order, and the
// connection stays usable. The same tests with PGTIDE_STREAM_WRITES=1 run the socket.write() path.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { makeCerts } from '../harness/certs.js';
import { sharedPostgres } from '../harness/postgres.js';
import { iniFor, startPgtide, track, type Pgtide } from '../harness/pgtide.js';
import { query, special, startupPacket, typed } from '../harness/raw.js';
import { sleep, stillServes, type Ctx } from '../harness/util.js';

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

/** A client socket whose messages are parsed as they come (no re-concatenation of everything received). */
class Reader {
  private chunks: Buffer[] = [];
  private have = 0;
  readonly msgs: { type: string; body: Buffer }[] = [];
  private wake: (() => void) | null = null;
  constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.have += d.length;
      this.parse();
      this.wake?.();
    });
  }
  private parse(): void {
    while (this.have >= 5) {
      let head = this.chunks[0]!;
      if (head.length < 5) {
        head = Buffer.concat(this.chunks);
        this.chunks = [head];
      }
      const len = head.readInt32BE(1);
      if (this.have < 1 + len) return;
      if (head.length < 1 + len) {
        head = Buffer.concat(this.chunks);
        this.chunks = [head];
      }
      this.msgs.push({ type: String.fromCharCode(head[0]!), body: head.subarray(5, 1 + len) });
      const rest = head.subarray(1 + len);
      this.chunks[0] = rest;
      if (rest.length === 0) this.chunks.shift();
      this.have -= 1 + len;
    }
  }
  async until(pred: () => boolean, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, 100);
        this.wake = () => { clearTimeout(timer); r(); };
      });
    }
  }
}

async function login(b: Pgtide, useTls = false): Promise<Reader> {
  let sock: net.Socket = net.connect({ host: '127.0.0.1', port: b.port });
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  if (useTls) {
    const raw = sock;
    raw.write(special(80877103)); // SSLRequest
    const answer = await new Promise<Buffer>((resolve) => raw.once('data', resolve));
    assert.equal(answer.toString(), 'S');
    sock = tls.connect({ socket: raw, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => sock.once('secureConnect', resolve).once('error', reject));
  }
  const r = new Reader(sock);
  sock.write(startupPacket({ user: 'trustuser', database: 'app' }));
  await r.until(() => r.msgs.some((m) => m.type === 'Z'), 5000, 'login');
  assert.equal(r.msgs.find((m) => m.type === 'E'), undefined);
  r.msgs.length = 0;
  return r;
}

for (const streamWrites of [false, true]) {
  const how = streamWrites ? 'socket.write() path (PGTIDE_STREAM_WRITES=1)' : 'fast path';
  const start = async (t: Ctx): Promise<Pgtide> => {
    const pg = await sharedPostgres();
    const settings = { pool_mode: 'transaction', auth_type: 'trust', default_pool_size: 2 };
    return track(t, await startPgtide({ pg, ini: (ctx) => iniFor(ctx, { settings }), env: streamWrites ? { PGTIDE_STREAM_WRITES: '1' } : {} }));
  };

  test(`${how}: a 20 MB result to a client that stops reading arrives whole and in order`, { timeout: 60_000 }, async (t) => {
    const b = await start(t);
    const r = await login(b);
    const ROWS = 200_000;
    r.sock.pause(); // pgtide's writes to this client cannot complete until it reads again
    r.sock.write(query(`select i, md5(i::text) || repeat('y', 50) as v from generate_series(1, ${ROWS}) i`));
    await sleep(700);
    await stillServes(b); // a neighbour is served meanwhile
    r.sock.resume();
    await r.until(() => r.msgs.some((m) => m.type === 'Z'), 30_000, 'the whole result');
    const rows = r.msgs.filter((m) => m.type === 'D');
    assert.equal(rows.length, ROWS);
    assert.equal(r.msgs.find((m) => m.type === 'E'), undefined);
    for (let k = 0; k < ROWS; k++) {
      const body = rows[k]!.body;
      const l1 = body.readInt32BE(2);
      const i = Number(body.toString('utf8', 6, 6 + l1));
      const l2 = body.readInt32BE(6 + l1);
      const v = body.toString('utf8', 10 + l1, 10 + l1 + l2);
      if (i !== k + 1 || v !== md5(String(i)) + 'y'.repeat(50)) assert.fail(`row ${k + 1} arrived as (${i}, ${v})`);
    }
    r.msgs.length = 0;
    r.sock.write(query('select 42'));
    await r.until(() => r.msgs.some((m) => m.type === 'Z'), 5000, 'select 42');
    assert.equal(r.msgs.filter((m) => m.type === 'D').length, 1);
    r.sock.destroy();
    await stillServes(b);
  });

  test(`${how}: a 30 MB COPY upload sent in one go reaches PostgreSQL byte for byte`, { timeout: 60_000 }, async (t) => {
    const b = await start(t);
    const r = await login(b);
    const table = `sw_copy_${streamWrites ? 's' : 'f'}_${process.pid}`;
    r.sock.write(query(`drop table if exists ${table}; create table ${table} (id int, v text)`));
    await r.until(() => r.msgs.some((m) => m.type === 'Z'), 5000, 'create table');
    r.msgs.length = 0;
    const N = 100_000;
    const lines: string[] = [];
    for (let i = 1; i <= N; i++) lines.push(`${i}\t${md5(String(i)).repeat(9)}\n`);
    const data = Buffer.from(lines.join(''));
    const msgs: Buffer[] = [query(`copy ${table} from stdin`)];
    for (let off = 0; off < data.length; off += 100_000) msgs.push(typed('d', data.subarray(off, Math.min(off + 100_000, data.length))));
    msgs.push(typed('c', ''));
    r.sock.write(Buffer.concat(msgs)); // more than the server socket takes at once
    await r.until(() => r.msgs.some((m) => m.type === 'Z'), 30_000, 'copy done');
    assert.equal(r.msgs.find((m) => m.type === 'E'), undefined, 'copy failed');
    r.msgs.length = 0;
    r.sock.write(query(`select count(*) || ' ' || md5(string_agg(id || E'\\t' || v || E'\\n', '' order by id)) from ${table}; drop table ${table}`));
    await r.until(() => r.msgs.some((m) => m.type === 'Z'), 10_000, 'check');
    const row = r.msgs.find((m) => m.type === 'D')!.body;
    assert.equal(row.toString('utf8', 6, 6 + row.readInt32BE(2)), `${N} ${md5(data.toString())}`);
    r.sock.destroy();
  });
}

test('TLS client (stream-layer writes): a 20 MB result to a client that stops reading arrives whole; the drain is heard', { timeout: 60_000 }, async (t) => {
  const certs = makeCerts();
  t.after(() => certs.cleanup());
  const settings = { pool_mode: 'transaction', auth_type: 'trust', default_pool_size: 2, client_tls_sslmode: 'require', client_tls_key_file: certs.f('server.key'), client_tls_cert_file: certs.f('server.crt') };
  const b = track(t, await startPgtide({ pg: await sharedPostgres(), ini: (ctx) => iniFor(ctx, { settings }) }));
  const r = await login(b, true);
  const ROWS = 200_000;
  r.sock.pause();
  r.sock.write(query(`select i, md5(i::text) as v from generate_series(1, ${ROWS}) i`));
  await sleep(700);
  r.sock.resume();
  await r.until(() => r.msgs.some((m) => m.type === 'Z'), 30_000, 'the whole result');
  const rows = r.msgs.filter((m) => m.type === 'D');
  assert.equal(rows.length, ROWS);
  for (let k = 0; k < ROWS; k += 997) {
    const body = rows[k]!.body;
    const l1 = body.readInt32BE(2);
    const l2 = body.readInt32BE(6 + l1);
    assert.equal(body.toString('utf8', 10 + l1, 10 + l1 + l2), md5(String(k + 1)));
  }
  r.sock.destroy();
  const again = await login(b, true);
  again.sock.write(query('select 7'));
  await again.until(() => again.msgs.some((m) => m.type === 'Z'), 5000, 'select 7');
  assert.equal(again.msgs.filter((m) => m.type === 'D').length, 1);
  again.sock.destroy();
});

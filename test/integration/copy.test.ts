// COPY through transaction pooling: psql \copy in and out, concurrent COPYs on a small pool, bad data and CopyFail
// (the pooler keeps serving and the server goes back clean), postgres.js COPY streams, and a 50 MB COPY OUT.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import postgres from 'postgres';
import { spawn } from 'node:child_process';
import { sharedPostgres, pgBin, pgEnv, type PgServer } from '../harness/postgres.js';
import { pgtideWith, track, type Pgtide } from '../harness/pgtide.js';
import { stillServes, type Ctx } from '../harness/util.js';

/**
 * Run psql against pgtide; resolves with stdout, rejects with stderr + exit code. (Own runner rather than the harness's
 * run(): psql may exit before reading all of its stdin — a failed COPY — and the EPIPE must not be an uncaught error.)
 */
function psql(b: Pgtide, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(pgBin('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(b.port), '-U', 'app', '-d', 'app', ...args], {
      env: pgEnv({ PGPASSWORD: 'apppass' }), stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    if (child.stdin) {
      child.stdin.on('error', () => {}); // EPIPE when psql stops reading: its exit status tells what happened
      child.stdin.end(input);
    }
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new Error(`psql ${args.join(' ')} failed (code ${code}, signal ${signal}):\n${err}`));
    });
  });
}

async function freshTable(t: Ctx, server: PgServer, name: string): Promise<void> {
  await server.psql(`DROP TABLE IF EXISTS ${name}; CREATE TABLE ${name} (id int, v text); GRANT ALL ON ${name} TO app, trustuser;`, 'app');
  t.after(() => server.psql(`DROP TABLE IF EXISTS ${name}`, 'app'));
}

const rowsText = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => `${from + i}\tvalue ${from + i} with\\ttab and \\\\ backslash\n`).join('');

/** State of the pool's server as seen by a new client: backend pid and whether the statement runs in a fresh transaction. */
async function serverState(b: Pgtide): Promise<{ pid: number; fresh: boolean; xid: string | null }> {
  const c = new pg.Client({ connectionString: b.url('app', 'apppass', 'app') });
  await c.connect();
  try {
    const { rows } = await c.query<{ pid: number; fresh: boolean; xid: string | null }>(
      'select pg_backend_pid() as pid, now() = statement_timestamp() as fresh, pg_current_xact_id_if_assigned()::text as xid');
    return rows[0]!;
  } finally {
    await c.end();
  }
}

test('psql \\copy in and out through transaction pooling, several at once on a pool of 2', async (t) => {
  const server = await sharedPostgres();
  await freshTable(t, server, 'copy_t');
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, query_wait_timeout: 10 }));

  await psql(b, ['-c', '\\copy copy_t from pstdin'], rowsText(1, 5000));
  assert.equal(await server.psql('SELECT count(*) || \' \' || sum(id) FROM copy_t', 'app'), `5000 ${(5000 * 5001) / 2}`);

  const out = await psql(b, ['-c', '\\copy (select * from copy_t order by id) to stdout']);
  assert.equal(out, rowsText(1, 5000));

  // four COPY FROM and two COPY TO at the same time, over two servers
  const ins = [1, 2, 3, 4].map((k) => psql(b, ['-c', '\\copy copy_t from pstdin'], rowsText(k * 10_000, 3000)));
  const outs = [0, 1].map(() => psql(b, ['-c', '\\copy (select id from copy_t where id <= 5000 order by id) to stdout']));
  await Promise.all(ins);
  for (const o of await Promise.all(outs)) assert.equal(o, Array.from({ length: 5000 }, (_, i) => `${i + 1}\n`).join(''));
  assert.equal(await server.psql('SELECT count(*) FROM copy_t', 'app'), String(5000 + 4 * 3000));
  for (const k of [1, 2, 3, 4])
    assert.equal(await server.psql(`SELECT count(*) FROM copy_t WHERE id >= ${k * 10_000} AND id < ${k * 10_000 + 3000}`, 'app'), '3000');
  await stillServes(b);
});

test('COPY with bad data: the COPY fails, nothing is inserted, the server goes back clean and the pooler keeps serving', async (t) => {
  const server = await sharedPostgres();
  await freshTable(t, server, 'copy_bad');
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, query_wait_timeout: 10 }));
  const before = await serverState(b);

  // autocommit: the error comes back while psql is still sending data
  const bad = rowsText(1, 2000) + 'oops\tbad\n' + rowsText(2001, 2000);
  await assert.rejects(psql(b, ['-c', '\\copy copy_bad from pstdin'], bad), /invalid input syntax for type integer: "oops"/);
  assert.equal(await server.psql('SELECT count(*) FROM copy_bad', 'app'), '0');
  const after = await serverState(b);
  assert.deepEqual(after, { pid: before.pid, fresh: true, xid: null }, 'the one server should be reused, outside any transaction');

  // inside a transaction: the transaction is aborted; the client leaves with it open, so that server is closed
  await assert.rejects(psql(b, ['-c', 'BEGIN', '-c', '\\copy copy_bad from pstdin', '-c', 'COMMIT'], bad), /invalid input syntax/);
  assert.equal(await server.psql('SELECT count(*) FROM copy_bad', 'app'), '0');
  const third = await serverState(b);
  assert.equal(third.fresh, true);
  assert.equal(third.xid, null);
  assert.equal(await server.psql(
    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'copy_bad'", 'app'), '0');

  // the same transaction with ROLLBACK handled by the client itself
  const out = await psql(b, ['-v', 'ON_ERROR_STOP=0', '-c', 'BEGIN', '-c', '\\copy copy_bad from pstdin', '-c', 'ROLLBACK', '-c', 'select 42'], bad)
    .catch((e: Error) => e.message);
  assert.match(out, /42/);
  assert.deepEqual(await serverState(b), { ...third, fresh: true, xid: null });
  // good data still works
  await psql(b, ['-c', '\\copy copy_bad from pstdin'], rowsText(1, 100));
  assert.equal(await server.psql('SELECT count(*) FROM copy_bad', 'app'), '100');
  await stillServes(b);
});

// ---- raw protocol, for a client-side CopyFail ----

function msg(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

class RawClient {
  private buf = Buffer.alloc(0);
  readonly messages: { type: string; body: Buffer }[] = [];
  private wake: (() => void) | null = null;
  constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      while (this.buf.length >= 5 && this.buf.length >= 1 + this.buf.readUInt32BE(1)) {
        const len = this.buf.readUInt32BE(1);
        this.messages.push({ type: String.fromCharCode(this.buf[0]!), body: this.buf.subarray(5, 1 + len) });
        this.buf = this.buf.subarray(1 + len);
      }
      this.wake?.();
    });
  }
  static async connect(b: Pgtide, user: string): Promise<RawClient> {
    const sock = net.connect({ host: '127.0.0.1', port: b.port });
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    const body = Buffer.concat([Buffer.from([0, 3, 0, 0]), Buffer.from(`user\0${user}\0database\0app\0\0`)]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length + 4);
    sock.write(Buffer.concat([len, body]));
    const c = new RawClient(sock);
    await c.until('Z');
    return c;
  }
  /** Wait for a message of this type after `from`; returns its index. */
  until(type: string, from = 0, ms = 5000): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = this.messages.findIndex((m, k) => k >= from && m.type === type);
        if (i >= 0) {
          clearTimeout(timer);
          this.wake = null;
          resolve(i);
        }
      };
      const timer = setTimeout(() => { this.wake = null; reject(new Error(`no '${type}' within ${ms} ms; got ${this.messages.slice(from).map((m) => m.type).join('')}`)); }, ms);
      this.wake = check;
      check();
    });
  }
  send(data: Buffer): void {
    this.sock.write(data);
  }
  close(): void {
    this.sock.destroy();
  }
}

test('client CopyFail aborts a COPY FROM STDIN; the client and the server keep working', async (t) => {
  const server = await sharedPostgres();
  await freshTable(t, server, 'copy_fail');
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', auth_type: 'trust', default_pool_size: 1, query_wait_timeout: 10 }));
  const c = track(t, await RawClient.connect(b, 'trustuser'));
  let from = c.messages.length;
  c.send(msg('Q', Buffer.from('COPY copy_fail FROM STDIN\0')));
  await c.until('G', from);
  c.send(msg('d', Buffer.from(rowsText(1, 500))));
  c.send(msg('f', Buffer.from('client changed its mind\0')));
  const z = await c.until('Z', from);
  const types = c.messages.slice(from, z + 1).map((m) => m.type).join('');
  assert.equal(types, 'GEZ');
  const err = c.messages[z - 1]!.body.toString();
  assert.match(err, /C57014\0/);
  assert.match(err, /COPY from stdin failed: client changed its mind/);
  assert.equal(c.messages[z]!.body.toString(), 'I');
  assert.equal(await server.psql('SELECT count(*) FROM copy_fail', 'app'), '0');

  // the same client, the same (only) server: a normal COPY and a query work
  from = c.messages.length;
  c.send(msg('Q', Buffer.from('COPY copy_fail FROM STDIN\0')));
  await c.until('G', from);
  c.send(Buffer.concat([msg('d', Buffer.from(rowsText(1, 300))), msg('c', Buffer.alloc(0))]));
  const z2 = await c.until('Z', from);
  assert.equal(c.messages.slice(from, z2 + 1).map((m) => m.type).join(''), 'GCZ');
  assert.equal(c.messages[z2 - 1]!.body.toString(), 'COPY 300\0');
  assert.equal(await server.psql('SELECT count(*) FROM copy_fail', 'app'), '300');
  c.close();
  await stillServes(b);
});

test('COPY error while the client is in the middle of sending a CopyData message: the server is not handed to another client mid-message', async (t) => {
  const server = await sharedPostgres();
  await freshTable(t, server, 'copy_mid');
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', auth_type: 'trust', default_pool_size: 1, query_wait_timeout: 10 }));
  const a = track(t, await RawClient.connect(b, 'trustuser'));
  const from = a.messages.length;
  a.send(msg('Q', Buffer.from('COPY copy_mid FROM STDIN\0')));
  await a.until('G', from);

  // another client wants the only server while A is copying
  const other = track(t, new pg.Client({ connectionString: b.url('trustuser', '', 'app') }));
  other.on('error', () => {});
  await other.connect();
  const answer = other.query<{ x: number }>('select 42 as x').then((r) => r.rows[0]!.x, (e: Error) => e.message);

  // a bad row (the COPY fails at once) followed by the first half of a second CopyData message
  const second = msg('d', Buffer.from('x'.repeat(999) + '\n'));
  a.send(Buffer.concat([msg('d', Buffer.from('oops\tbad\n')), second.subarray(0, 500)]));
  const z = await a.until('Z', from);
  assert.equal(a.messages.slice(from, z + 1).map((m) => m.type).join(''), 'GEZ');
  // give the pooler a moment to (wrongly) hand the server over, then finish the message
  await new Promise((r) => setTimeout(r, 200));
  a.send(Buffer.concat([second.subarray(500), msg('c', Buffer.alloc(0))]));
  const from2 = a.messages.length;
  a.send(msg('Q', Buffer.from('select 7\0')));
  const z2 = await a.until('Z', from2);
  assert.equal(a.messages.slice(from2, z2 + 1).map((m) => m.type).join(''), 'TDCZ', 'the copying client should get its own answer');
  const timeout = new Promise<string>((r) => setTimeout(r, 3000, 'no answer within 3 s'));
  assert.equal(await Promise.race([answer, timeout]), 42, 'the waiting client should get its own answer');
  assert.equal(await server.psql('SELECT count(*) FROM copy_mid', 'app'), '0');
  a.close();
  await stillServes(b);
});

test('a client that keeps streaming 30 MB of COPY data after its COPY failed gets the error, then its next query answered', async (t) => {
  const server = await sharedPostgres();
  await freshTable(t, server, 'copy_stream');
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', auth_type: 'trust', default_pool_size: 1, query_wait_timeout: 10 }));
  const c = track(t, await RawClient.connect(b, 'trustuser'));
  const from = c.messages.length;
  c.send(msg('Q', Buffer.from('COPY copy_stream FROM STDIN\0')));
  await c.until('G', from);
  // everything in one write, as a client that does not watch for errors while copying would send it:
  // good rows, a bad row, 30 MB more rows (PostgreSQL discards them), CopyDone, then the next query
  const row = msg('d', Buffer.from(`1\t${'y'.repeat(1000)}\n`));
  const parts: Buffer[] = [];
  for (let i = 0; i < 5000; i++) parts.push(row);
  parts.push(msg('d', Buffer.from('oops\tx\n')));
  for (let i = 0; i < 30_000; i++) parts.push(row);
  parts.push(msg('c', Buffer.alloc(0)), msg('Q', Buffer.from('select 7\0')));
  c.send(Buffer.concat(parts));
  const z1 = await c.until('Z', from, 15_000);
  const z2 = await c.until('Z', z1 + 1, 15_000);
  assert.equal(c.messages.slice(from, z2 + 1).map((m) => m.type).join(''), 'GEZTDCZ');
  assert.match(c.messages[z1 - 1]!.body.toString(), /invalid input syntax for type integer: "oops"/);
  assert.deepEqual(c.messages[z2 - 2]!.body, Buffer.from([0, 1, 0, 0, 0, 1, 0x37]), 'select 7 answered with 7');
  assert.equal(await server.psql('SELECT count(*) FROM copy_stream', 'app'), '0');
  c.close();
  await stillServes(b);
});

test('postgres.js COPY streams through transaction pooling, and a 50 MB COPY OUT arrives complete', async (t) => {
  const server = await sharedPostgres();
  await freshTable(t, server, 'copy_pjs');
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, query_wait_timeout: 10 }));
  const sql = track(t, postgres(b.url('app', 'apppass', 'app'), { max: 3, prepare: false, onnotice: () => {} }));

  // COPY FROM STDIN from a stream, while other queries run on the same pool
  const N = 20_000;
  const writable = await sql`copy copy_pjs (id, v) from stdin`.writable();
  const others = Promise.all(Array.from({ length: 20 }, (_, i) => sql`select ${i}::int as i`.then((r) => r[0]!.i)));
  await pipeline(Readable.from((function* () {
    for (let i = 0; i < N; i += 1000) yield rowsText(i, 1000);
  })()), writable);
  assert.deepEqual(await others, Array.from({ length: 20 }, (_, i) => i));
  const [{ n, s }] = (await sql`select count(*)::int as n, sum(id)::bigint as s from copy_pjs`) as unknown as [{ n: number; s: string }];
  assert.equal(n, N);
  assert.equal(s, String(((N - 1) * N) / 2));

  // COPY TO STDOUT as a stream
  let bytes = 0;
  let lines = 0;
  const readable = await sql`copy (select id from copy_pjs order by id) to stdout`.readable();
  await pipeline(readable, new Writable({
    write(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      for (const ch of chunk) if (ch === 10) lines++;
      cb();
    },
  }));
  assert.equal(lines, N);

  // 50 MB through psql: every byte arrives
  const ROWS = 50_000;
  const big = await psql(b, ['-c', `COPY (select repeat('x', 1000) from generate_series(1, ${ROWS})) TO STDOUT`]);
  assert.equal(big.length, ROWS * 1001);
  assert.equal(big, `${'x'.repeat(1000)}\n`.repeat(ROWS));
  assert.ok(bytes > 0);
  await stillServes(b);
});

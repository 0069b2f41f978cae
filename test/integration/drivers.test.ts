// Real drivers through transaction pooling: postgres.js pipelining over 20 connections, pg's queued queries,
// errors that must not disturb neighbours, and backpressure for a large result read slowly.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import pg from 'pg';
import postgres from 'postgres';
import { sharedPostgres } from '../harness/postgres.js';
import { pgtideWith, track } from '../harness/pgtide.js';
import { stillServes, type PgError } from '../harness/util.js';

test('postgres.js: 200 pipelined queries over 20 connections (simple, parameterised, some failing) each get their own answer', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 5, max_client_conn: 100, query_wait_timeout: 10 }));
  // postgres.js's default prepare: true: named statements, tracked by the pooler across servers
  const sql = track(t, postgres(b.url('app', 'apppass', 'app'), { max: 20, onnotice: () => {} }));
  const isError = (i: number) => i % 17 === 5;

  for (let round = 0; round < 2; round++) {
    const N = 200;
    const queries = Array.from({ length: N }, (_, i): Promise<unknown> => {
      const id = round * 1000 + i;
      if (isError(i)) return i % 2 ? sql.unsafe(`select ${id} / 0 as v`) : sql`select ${id}::int / 0 as v`;
      switch (i % 4) {
        case 0: return sql.unsafe(`select ${id}::int as v, 'simple' as kind`); // simple protocol
        case 1: return sql`select ${id}::int as v, 'tagged' as kind`; // unnamed statement, parameter
        case 2: return sql.unsafe('select $1::int as v, $2::text as kind', [id, 'unsafe']); // extended, parameters
        default: return sql`select v, 'rows' as kind from generate_series(${id}::int, ${id + 2}::int) v`; // several rows
      }
    });
    const results = await Promise.allSettled(queries);
    results.forEach((r, i) => {
      const id = round * 1000 + i;
      if (isError(i)) {
        assert.equal(r.status, 'rejected', `query ${i} should have failed`);
        assert.equal(((r as PromiseRejectedResult).reason as PgError).code, '22012');
        return;
      }
      assert.equal(r.status, 'fulfilled', `query ${i} failed: ${(r as PromiseRejectedResult).reason}`);
      const rows = (r as PromiseFulfilledResult<{ v: number; kind: string }[]>).value;
      const kind = ['simple', 'tagged', 'unsafe', 'rows'][i % 4]!;
      const want = kind === 'rows' ? [id, id + 1, id + 2] : [id];
      assert.deepEqual(rows.map((x) => [Number(x.v), x.kind]), want.map((v) => [v, kind]), `query ${i} got someone else's answer`);
    });
  }
  // transactions through sql.begin stay on one server and see their own writes
  const [pids] = await Promise.all([
    sql.begin(async (tx) => {
      const a = await tx`select pg_backend_pid() as pid, txid_current() as x`;
      await tx`select pg_sleep(0.01)`;
      const c = await tx`select pg_backend_pid() as pid, txid_current() as x`;
      return [a[0]!, c[0]!];
    }),
    ...Array.from({ length: 20 }, (_, i) => sql`select ${i}::int as i`),
  ]);
  assert.deepEqual(pids[0], pids[1]);
  await stillServes(b);
});

test('pg: many queued queries on one client, and on a pg.Pool, interleaved with failing ones', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, query_wait_timeout: 10 }));
  const clients = await Promise.all([0, 1, 2].map(async () => {
    const c = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app') }));
    await c.connect();
    return c;
  }));
  // every client queues 150 queries at once; pg sends them one after another, the pooler may move each to any server
  await Promise.all(clients.map(async (c, ci) => {
    const results = await Promise.allSettled(Array.from({ length: 150 }, (_, i) => {
      const id = ci * 1000 + i;
      if (i % 25 === 7) return c.query('select 1 / 0');
      return i % 2 ? c.query<{ v: number }>('select $1::int as v', [id]) : c.query<{ v: number }>(`select ${id} as v`);
    }));
    results.forEach((r, i) => {
      if (i % 25 === 7) {
        assert.equal(r.status, 'rejected');
        assert.equal(((r as PromiseRejectedResult).reason as PgError).code, '22012');
      } else {
        assert.equal(r.status, 'fulfilled', `client ${ci} query ${i}: ${(r as PromiseRejectedResult).reason}`);
        assert.deepEqual((r as PromiseFulfilledResult<pg.QueryResult<{ v: number }>>).value.rows, [{ v: ci * 1000 + i }]);
      }
    });
  }));

  const pool = track(t, new pg.Pool({ connectionString: b.url('app', 'apppass', 'app'), max: 10 }));
  const rows = await Promise.all(Array.from({ length: 300 }, (_, i) =>
    pool.query<{ v: string }>('select $1::text as v', [`p${i}`]).then((r) => r.rows[0]!.v)));
  assert.deepEqual(rows, Array.from({ length: 300 }, (_, i) => `p${i}`));
  await stillServes(b);
});

test('postgres.js cursors (Execute with a row limit + Flush) keep their server between batches; other clients wait and are served after', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, query_wait_timeout: 10 }));
  const sql = track(t, postgres(b.url('app', 'apppass', 'app'), { max: 1, prepare: false, onnotice: () => {} }));
  const other = track(t, postgres(b.url('app', 'apppass', 'app'), { max: 1, prepare: false, onnotice: () => {} }));
  const seen: number[] = [];
  const pids = new Set<number>();
  let otherDone = false;
  let otherPending: Promise<unknown> | null = null;
  for await (const batch of sql`select v, pg_backend_pid() as pid from generate_series(1, 1000) v`.cursor(100)) {
    for (const r of batch) {
      seen.push(r.v as number);
      pids.add(r.pid as number);
    }
    // another client asks for the only server while the cursor is open: it has to wait
    otherPending ??= other`select 42 as x`.then((r) => { otherDone = true; return r[0]!.x; });
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(otherDone, false, 'another client got the server while a cursor (portal) was open on it');
  }
  assert.deepEqual(seen, Array.from({ length: 1000 }, (_, i) => i + 1));
  assert.equal(pids.size, 1);
  assert.equal(await otherPending, 42);
  await stillServes(b);
});

test('a 30 MB parameter and a 30 MB result row pass through intact', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, query_wait_timeout: 10 }));
  const c = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app') }));
  await c.connect();
  const big = Array.from({ length: 30 * 1024 }, (_, i) => String(i % 10).repeat(1023) + '\n').join('');
  const { rows } = await c.query<{ len: number; md5: string; back: string }>('select length($1::text) as len, md5($1::text) as md5, $1::text as back', [big]);
  assert.equal(rows[0]!.len, big.length);
  assert.equal(rows[0]!.md5, createHash('md5').update(big).digest('hex'));
  assert.ok(rows[0]!.back === big, 'the echoed 30 MB value differs');
  await stillServes(b);
});

// ---- a minimal raw protocol client (trust auth), to read a result as slowly as we like ----

function startupPacket(params: Record<string, string>): Buffer {
  const body = Buffer.concat([
    Buffer.from([0, 3, 0, 0]),
    ...Object.entries(params).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)),
    Buffer.from([0]),
  ]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length + 4);
  return Buffer.concat([len, body]);
}

function queryPacket(sql: string): Buffer {
  const body = Buffer.from(sql + '\0');
  const head = Buffer.alloc(5);
  head[0] = 0x51;
  head.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/** Counts messages as bytes arrive, without keeping them. */
class MessageCounter {
  private need = 0; // bytes of the current message body still to skip
  private head = Buffer.alloc(0);
  bytes = 0;
  readonly counts = new Map<string, number>();
  lastType = '';
  lastStatus = '';
  feed(chunk: Buffer): void {
    this.bytes += chunk.length;
    let pos = 0;
    while (pos < chunk.length) {
      if (this.need > 0) {
        const n = Math.min(this.need, chunk.length - pos);
        if (this.lastType === 'Z' && n > 0 && this.need === 1) this.lastStatus = String.fromCharCode(chunk[pos]!);
        this.need -= n;
        pos += n;
        continue;
      }
      const take = Math.min(5 - this.head.length, chunk.length - pos);
      this.head = Buffer.concat([this.head, chunk.subarray(pos, pos + take)]);
      pos += take;
      if (this.head.length === 5) {
        this.lastType = String.fromCharCode(this.head[0]!);
        this.counts.set(this.lastType, (this.counts.get(this.lastType) ?? 0) + 1);
        this.need = this.head.readUInt32BE(1) - 4;
        this.head = Buffer.alloc(0);
      }
    }
  }
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'no VmRSS');
  return Number(m[1]);
}

test('backpressure: a 100 MB result read slowly does not pile up in pgtide (RSS bounded), arrives complete, neighbours unaffected', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', auth_type: 'trust', default_pool_size: 2, query_wait_timeout: 10 }));
  const sock0 = net.connect({ host: '127.0.0.1', port: b.port });
  const sock = track(t, { close: () => sock0.destroy() });
  await new Promise<void>((resolve, reject) => sock0.once('connect', resolve).once('error', reject));
  const counter = new MessageCounter();
  let waiter: (() => void) | null = null;
  sock0.on('data', (chunk: Buffer) => {
    counter.feed(chunk);
    waiter?.();
  });
  const waitFor = (cond: () => boolean, ms: number, what: string) => new Promise<void>((resolve, reject) => {
    if (cond()) return resolve();
    const timer = setTimeout(() => { waiter = null; reject(new Error(`timed out waiting for ${what} (${counter.bytes} bytes)`)); }, ms);
    waiter = () => { if (cond()) { clearTimeout(timer); waiter = null; resolve(); } };
  });
  sock0.write(startupPacket({ user: 'trustuser', database: 'app' }));
  await waitFor(() => counter.lastType === 'Z' && counter.lastStatus === 'I', 5000, 'login');
  assert.equal(counter.counts.get('E'), undefined);

  // warm up the pooler a little, then take the baseline
  await stillServes(b);
  const base = rssKb(b.pid);

  const ROWS = 100_000; // 1000-byte values: ~101 MB of DataRow messages
  const loginBytes = counter.bytes;
  sock0.pause();
  sock0.write(queryPacket(`select repeat('x', 1000) from generate_series(1, ${ROWS})`));
  let peak = base;
  const sample = () => { peak = Math.max(peak, rssKb(b.pid)); };

  // phase 1: not reading at all for a second
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 100));
    sample();
  }
  // not reading at all: the pooler stops reading from the server too (without backpressure this is ~+100 MB)
  const stalled = (peak - base) / 1024;
  assert.ok(stalled < 30, `pgtide RSS grew by ${stalled.toFixed(1)} MB while its client read nothing (base ${(base / 1024).toFixed(1)} MB)`);
  // a neighbour in the same pool is served meanwhile
  await stillServes(b);
  // phase 2: read slowly, a little at a time
  for (let i = 0; i < 20; i++) {
    sock0.resume();
    await new Promise((r) => setImmediate(r));
    sock0.pause();
    await new Promise((r) => setTimeout(r, 50));
    sample();
  }
  assert.ok(counter.bytes - loginBytes < 80_000_000, `the slow reader already got ${counter.bytes} bytes: the test did not read slowly`);
  // phase 3: read the rest at full speed
  sock0.resume();
  const sampler = setInterval(sample, 50);
  try {
    await waitFor(() => counter.lastType === 'Z' && counter.lastStatus === 'I' && (counter.counts.get('C') ?? 0) === 1, 30_000, 'the whole result');
  } finally {
    clearInterval(sampler);
  }
  assert.equal(counter.counts.get('D'), ROWS);
  assert.equal(counter.counts.get('E'), undefined);
  assert.equal(counter.bytes - loginBytes, (1 + 4 + 2 + 4 + 1000) * ROWS + /* T */ (1 + 4 + 2 + 7 + 18) + /* C */ (1 + 4 + 14) + /* Z */ 6);
  const grew = (peak - base) / 1024;
  assert.ok(grew < 60, `pgtide RSS grew by ${grew.toFixed(1)} MB while a slow client received 100 MB (base ${(base / 1024).toFixed(1)} MB)`);
  // the connection is still usable
  sock0.write(queryPacket('select 1'));
  await waitFor(() => (counter.counts.get('C') ?? 0) === 2 && counter.lastType === 'Z', 5000, 'select 1');
  sock.close();
  await stillServes(b);
});

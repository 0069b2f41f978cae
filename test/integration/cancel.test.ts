// Cancel requests through the pooler: postgres.js query.cancel() and raw CancelRequests with the client's BackendKeyData
// cancel exactly that client's query (57014) and nothing else; wrong keys and truncated cancel packets do no harm; the
// key handed to clients is the pooler's own, not the backend's.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import postgres from 'postgres';
import { sharedPostgres, type PgServer } from '../harness/postgres.js';
import { pgtideWith, track, type Pgtide } from '../harness/pgtide.js';
import { type Ctx, type PgError } from '../harness/util.js';

type KeyedClient = pg.Client & { processID: number; secretKey: number };

let pgs: PgServer;
let bouncer: Pgtide;
let txBouncer: Pgtide;

before(async () => {
  pgs = await sharedPostgres();
  bouncer = await pgtideWith(pgs, { auth_type: 'md5' });
  txBouncer = await pgtideWith(pgs, { auth_type: 'md5', pool_mode: 'transaction' });
});
after(async () => {
  await Promise.all([bouncer?.stop(), txBouncer?.stop()]);
});

const CANCEL_CODE = 80877102;

function cancelPacket(pid: number, key: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32BE(16, 0);
  b.writeInt32BE(CANCEL_CODE, 4);
  b.writeInt32BE(pid, 8);
  b.writeInt32BE(key, 12);
  return b;
}

/** Send raw bytes on a fresh connection to the pooler; resolves with what came back once the pooler closed it (or after ms). */
function sendRaw(b: Pgtide, data: Buffer, opts: { closeAfterSend?: boolean; ms?: number } = {}): Promise<{ reply: Buffer; closedByPooler: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: b.port });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closedByPooler: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ reply: Buffer.concat(chunks), closedByPooler });
    };
    const timer = setTimeout(() => finish(false), opts.ms ?? 3000);
    sock.on('connect', () => {
      sock.write(data, () => {
        if (opts.closeAfterSend) finish(false);
      });
    });
    sock.on('data', (d) => chunks.push(d));
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', (e) => { if (!settled) { settled = true; clearTimeout(timer); reject(e); } });
  });
}

async function keyedClient(t: Ctx, b: Pgtide = bouncer): Promise<KeyedClient> {
  const c = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app') })) as KeyedClient;
  await c.connect();
  assert.ok(c.processID && c.secretKey !== undefined, 'no BackendKeyData from the pooler');
  return c;
}

/** Wait until a backend runs a query containing `marker` (state active); returns its pid. */
async function waitActive(marker: string, ms = 5000): Promise<number> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const pid = await pgs.psql(`SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%${marker}%' AND pid <> pg_backend_pid()`);
    if (pid) return Number(pid.split('\n')[0]);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no active query with ${marker} within ${ms} ms`);
}

/** Settle a promise with its outcome and the time it took from `t0`. */
async function outcome<T>(p: Promise<T>, t0: number): Promise<{ ok: boolean; value?: T; err?: PgError; at: number }> {
  try {
    const value = await p;
    return { ok: true, value, at: Date.now() - t0 };
  } catch (err) {
    return { ok: false, err: err as PgError, at: Date.now() - t0 };
  }
}

test('postgres.js query.cancel(): the running pg_sleep(10) fails with 57014 within ~2 s and the connection keeps working', async (t) => {
  const sql = track(t, postgres(bouncer.url('app', 'apppass', 'app'), { max: 1, onnotice: () => {}, fetch_types: false }));
  await sql`SELECT 1`;
  const q = sql`SELECT pg_sleep(10) /* cancel_pjs_1 */`.execute();
  const running = outcome(q, 0);
  await waitActive('cancel_pjs_1');
  const t0 = Date.now();
  await q.cancel();
  const res = await running;
  const took = Date.now() - t0;
  assert.equal(res.ok, false, 'pg_sleep(10) was not cancelled');
  assert.equal(res.err!.code, '57014', res.err!.message);
  assert.match(res.err!.message, /canceling statement due to user request/);
  assert.ok(took < 2000, `cancel took ${took} ms`);
  const [row] = await sql<{ n: number }[]>`SELECT 41 + 1 AS n`;
  assert.equal(row!.n, 42);
});

test('a raw CancelRequest with one client\'s key cancels only that client\'s query; another client\'s concurrent pg_sleep on another server completes', async (t) => {
  const victim = await keyedClient(t);
  const bystander = await keyedClient(t);
  const [vpid, bpid] = await Promise.all([
    victim.query<{ p: number }>('SELECT pg_backend_pid() AS p'),
    bystander.query<{ p: number }>('SELECT pg_backend_pid() AS p'),
  ]);
  assert.notEqual(vpid.rows[0]!.p, bpid.rows[0]!.p, 'the two clients should be on different servers');
  const start = Date.now();
  const v = outcome(victim.query('SELECT pg_sleep(10) /* cancel_victim */'), start);
  const b = outcome(bystander.query("SELECT pg_sleep(1.5) /* cancel_bystander */, 'done' AS r"), start);
  await waitActive('cancel_victim');
  await waitActive('cancel_bystander');
  const t0 = Date.now() - start;
  const sent = await sendRaw(bouncer, cancelPacket(victim.processID, victim.secretKey));
  assert.equal(sent.reply.length, 0, 'a CancelRequest gets no reply');
  assert.ok(sent.closedByPooler, 'the pooler should close the cancel connection');
  const vr = await v;
  assert.equal(vr.ok, false, 'the victim\'s pg_sleep(10) was not cancelled');
  assert.equal(vr.err!.code, '57014');
  assert.ok(vr.at - t0 < 2000, `cancel took ${vr.at - t0} ms`);
  const br = await b;
  assert.ok(br.ok, `the bystander was hit: ${br.err?.code} ${br.err?.message}`);
  assert.ok(br.at >= 1400, `the bystander finished too early (${br.at} ms)`);
  // both keep working
  assert.equal((await victim.query<{ n: number }>('SELECT 5 AS n')).rows[0]!.n, 5);
  assert.equal((await bystander.query<{ n: number }>('SELECT 6 AS n')).rows[0]!.n, 6);
});

test('a CancelRequest with a wrong key does nothing harmful (log "failed cancel request")', async (t) => {
  const c = await keyedClient(t);
  const mark = bouncer.log().length;
  const start = Date.now();
  const q = outcome(c.query("SELECT pg_sleep(1) /* cancel_wrongkey */, 'survived' AS r"), start);
  await waitActive('cancel_wrongkey');
  for (const [pid, key] of [[c.processID, (c.secretKey ^ 0x5a5a5a5a) | 0], [(c.processID ^ 0x1234) | 0, c.secretKey], [1, 1]] as const) {
    const sent = await sendRaw(bouncer, cancelPacket(pid, key));
    assert.ok(sent.closedByPooler);
    assert.equal(sent.reply.length, 0);
  }
  const r = await q;
  assert.ok(r.ok, `query was hit: ${r.err?.code} ${r.err?.message}`);
  assert.equal((r.value as pg.QueryResult).rows[0].r, 'survived');
  await bouncer.waitForLog(/failed cancel request/, 3000, mark);
  assert.equal((await c.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n, 1);
});

test('truncated or malformed cancel packets (8 of 16 bytes then close; wrong length) hurt nothing', async (t) => {
  const c = await keyedClient(t);
  const start = Date.now();
  const q = outcome(c.query("SELECT pg_sleep(0.8) /* cancel_trunc */, 'ok' AS r"), start);
  await waitActive('cancel_trunc');
  const full = cancelPacket(c.processID, c.secretKey);
  await sendRaw(bouncer, full.subarray(0, 8), { closeAfterSend: true });
  await sendRaw(bouncer, full.subarray(0, 12), { closeAfterSend: true });
  // a cancel packet with length 12: refused, nothing cancelled
  const bad = Buffer.from(full.subarray(0, 12));
  bad.writeInt32BE(12, 0);
  const sent = await sendRaw(bouncer, bad);
  assert.ok(sent.closedByPooler);
  const r = await q;
  assert.ok(r.ok, `query was hit: ${r.err?.code} ${r.err?.message}`);
  assert.equal((r.value as pg.QueryResult).rows[0].r, 'ok');
  // pooler alive, fresh client served
  const fresh = await keyedClient(t);
  assert.equal((await fresh.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n, 1);
  assert.equal(bouncer.proc.exitCode, null);
});

test('BackendKeyData given to clients is the pooler\'s own: not the backend pid, different per client', async (t) => {
  const a = await keyedClient(t);
  const b = await keyedClient(t);
  const pa = (await a.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
  const pb = (await b.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
  assert.notEqual(a.processID, pa);
  assert.notEqual(b.processID, pb);
  assert.notDeepEqual([a.processID, a.secretKey], [b.processID, b.secretKey]);
  // the backend's real key does not work against the pooler: PostgreSQL's pid used as a key cancels nothing
  const q = outcome(a.query("SELECT pg_sleep(0.6) /* cancel_realpid */, 'ok' AS r"), Date.now());
  await waitActive('cancel_realpid');
  await sendRaw(bouncer, cancelPacket(pa, a.secretKey));
  const r = await q;
  assert.ok(r.ok, `query was hit: ${r.err?.code}`);
});

test('transaction mode: cancel reaches the linked server; a cancel for an idle (unlinked) client affects no later query', async (t) => {
  const c = await keyedClient(t, txBouncer);
  const q = outcome(c.query('SELECT pg_sleep(10) /* cancel_tx_active */'), Date.now());
  await waitActive('cancel_tx_active');
  const t0 = Date.now();
  await sendRaw(txBouncer, cancelPacket(c.processID, c.secretKey));
  const r = await q;
  assert.equal(r.ok, false);
  assert.equal(r.err!.code, '57014');
  assert.ok(Date.now() - t0 < 2000);
  // pg reports the error before its ReadyForQuery arrives; one round trip makes sure the client is idle and unlinked
  assert.equal((await c.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n, 1);
  // now idle, no server linked: the cancel is dropped, the next query is not hit
  await sendRaw(txBouncer, cancelPacket(c.processID, c.secretKey));
  const again = await c.query<{ r: string }>("SELECT pg_sleep(0.3), 'fine' AS r");
  assert.equal(again.rows[0]!.r, 'fine');
});

/**
 * A TCP proxy in front of PostgreSQL. Connections opened while `holdNewMs` > 0 are held back that long before
 * being passed on (and their bytes buffered): this makes a forwarded CancelRequest arrive late, deterministically.
 */
async function delayingProxy(t: Ctx, target: number): Promise<{ port: number; holdNewMs: number }> {
  const state = { port: 0, holdNewMs: 0 };
  const socks = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (down) => {
    socks.add(down);
    const hold = state.holdNewMs;
    const pending: Buffer[] = [];
    let up: net.Socket | null = null;
    let downEnded = false;
    down.on('data', (d) => (up ? up.write(d) : pending.push(d)));
    down.on('end', () => { downEnded = true; up?.end(); });
    down.on('close', () => socks.delete(down));
    down.on('error', () => {});
    setTimeout(() => {
      up = net.connect({ host: '127.0.0.1', port: target });
      socks.add(up);
      up.on('connect', () => {
        for (const p of pending.splice(0)) up!.write(p);
        if (downEnded) up!.end();
      });
      up.on('data', (d) => { if (!down.destroyed) down.write(d); });
      up.on('close', () => { socks.delete(up!); down.destroy(); });
      up.on('error', () => down.destroy());
    }, hold);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.port = (server.address() as net.AddressInfo).port;
  track(t, { close: () => { for (const s of socks) s.destroy(); server.close(); } });
  return state;
}

test('transaction mode: a cancel still in flight when its query ends does not cancel the next client\'s query on that server', async (t) => {
  const proxy = await delayingProxy(t, pgs.port);
  const b = track(t, await pgtideWith(pgs, { auth_type: 'md5', pool_mode: 'transaction', default_pool_size: 1, query_wait_timeout: 10 },
    `app = host=127.0.0.1 port=${proxy.port} dbname=app`));
  const a = await keyedClient(t, b);
  const other = await keyedClient(t, b);
  const pidA = (await a.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
  assert.equal((await other.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p, pidA, 'pool_size=1: one shared server');
  // A's query ends on its own while A's cancel is held back on its way to PostgreSQL
  const qa = outcome(a.query('SELECT pg_sleep(0.4) /* cancel_inflight_a */'), Date.now());
  await waitActive('cancel_inflight_a');
  proxy.holdNewMs = 1200;
  await sendRaw(b, cancelPacket(a.processID, a.secretKey));
  const ra = await qa;
  proxy.holdNewMs = 0;
  // then the other client's query starts on the same backend before the late cancel lands
  const start = Date.now();
  const rb = await outcome(other.query<{ r: string }>("SELECT pg_sleep(1.5) /* cancel_inflight_b */, 'untouched' AS r"), start);
  assert.ok(rb.ok, `the other client's query was cancelled by a cancel meant for A (${rb.err?.code} ${rb.err?.message}); A's own query: ${ra.ok ? 'completed' : ra.err?.code}`);
  assert.equal((rb.value as pg.QueryResult).rows[0].r, 'untouched');
});

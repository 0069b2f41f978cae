// V8 heap tuning of the pgtide process (src/util/heap.ts): a burst of logins leaves V8's young generation at its
// initial size. SHOW MEM's node_new_space row reports it. The same burst grows it past 4 MB when node's command line
// sizes the young generation itself (pgtide then keeps V8's behaviour). That run is also what shows the test can fail.
// A queue of clients waiting for a server lets it grow again (the janitor says so in its debug log).

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { sharedPostgres, type PgServer } from '../harness/postgres.js';
import { startPgtide, iniFor, track, DEFAULT_USERLIST, type Pgtide } from '../harness/pgtide.js';
import { rawLogin, rawSelect, query, type Raw } from '../harness/raw.js';
import { waitFor } from '../harness/util.js';
import { QUEUE_CLIENTS, tuneHeap, YOUNG_GENERATION_FLAG } from '../../src/util/heap.js';

const CLIENTS = 1000;
const MB = 1024 * 1024;
const USERLIST = `${DEFAULT_USERLIST}"pgbouncer" "adminpass"\n`;

let server: PgServer;

before(async () => {
  server = await sharedPostgres();
});

async function start(nodeArgs: string[] = [], settings: Record<string, string | number> = {}): Promise<Pgtide> {
  return startPgtide({
    pg: server,
    nodeArgs,
    files: { 'userlist.txt': USERLIST },
    ini: (ctx) => iniFor(ctx, { settings: { pool_mode: 'transaction', default_pool_size: 2, max_client_conn: CLIENTS + 50, admin_users: 'pgbouncer', log_connections: 0, log_disconnections: 0, ...settings } }),
  });
}

/** Log CLIENTS clients in, 25 at a time, and keep them; one of them runs a query, to show they are usable. */
async function loginBurst(b: Pgtide): Promise<Raw[]> {
  const held: Raw[] = [];
  let next = 0;
  const worker = async () => {
    while (next < CLIENTS) {
      next++;
      held.push(await rawLogin(b));
    }
  };
  await Promise.all(Array.from({ length: 25 }, worker));
  assert.equal(await rawSelect(held[held.length - 1]!, 'SELECT 1'), '1');
  return held;
}

async function youngGeneration(b: Pgtide): Promise<{ used: number; free: number; memtotal: number }> {
  const c = new pg.Client({ host: '127.0.0.1', port: b.port, user: 'pgbouncer', password: 'adminpass', database: 'pgbouncer' });
  await c.connect();
  try {
    const rows = (await c.query<{ name: string; size: string; used: string; free: string; memtotal: string }>('SHOW MEM')).rows;
    const r = rows.find((x) => x.name === 'node_new_space');
    assert.ok(r, `SHOW MEM has a node_new_space row: ${JSON.stringify(rows.map((x) => x.name))}`);
    assert.equal(Number(r.size), 1);
    return { used: Number(r.used), free: Number(r.free), memtotal: Number(r.memtotal) };
  } finally {
    await c.end();
  }
}

test(`after ${CLIENTS} logins the young generation is still at its initial size (at most 4 MB)`, async (t) => {
  const b = track(t, await start());
  const held = await loginBurst(b);
  t.after(() => { for (const r of held) r.destroy(); });
  const y = await youngGeneration(b);
  assert.ok(y.memtotal > 0 && y.used <= y.memtotal, JSON.stringify(y));
  assert.ok(y.memtotal <= 4 * MB, `node_new_space memtotal ${(y.memtotal / MB).toFixed(1)} MB`);
});

test('node started with its own young-generation size: pgtide keeps V8 behaviour, and the same burst grows it', async (t) => {
  const b = track(t, await start(['--max-semi-space-size=16']));
  const held = await loginBurst(b);
  t.after(() => { for (const r of held) r.destroy(); });
  const y = await youngGeneration(b);
  assert.ok(y.memtotal > 4 * MB, `node_new_space memtotal ${(y.memtotal / MB).toFixed(1)} MB`);
});

test(`a queue of ${QUEUE_CLIENTS} clients waiting for a server lets the young generation grow`, async (t) => {
  const b = track(t, await start([], { default_pool_size: 1, verbose: 1 }));
  const holder = await rawLogin(b);
  t.after(() => holder.destroy());
  assert.equal(await rawSelect(holder, 'BEGIN'), null);
  const waiters: Raw[] = [];
  t.after(() => { for (const r of waiters) r.destroy(); });
  for (let i = 0; i < QUEUE_CLIENTS + 4; i++) waiters.push(await rawLogin(b));
  assert.doesNotMatch(b.log(), /young generation may grow/, 'no queue yet');
  for (const r of waiters) r.send(query('SELECT 1'));
  await waitFor('the janitor lets the young generation grow', () => /young generation may grow: \d+ clients wait for a server/.test(b.log()));
  assert.equal(await rawSelect(holder, 'COMMIT'), null);
  for (const r of waiters) assert.ok(await r.until('Z', 5000), 'every queued client is served');
});

test('tuneHeap leaves a young-generation size given on the command line or in NODE_OPTIONS alone', () => {
  assert.equal(tuneHeap(['--max-semi-space-size=16'], ''), false);
  assert.equal(tuneHeap([], '--max-old-space-size=512 --max_semi_space_size=8'), false);
  assert.equal(tuneHeap(['--semi-space-growth-factor=2'], ''), false);
  assert.equal(YOUNG_GENERATION_FLAG, '--semi-space-growth-factor=1');
});

// Login limits: max_client_conn refuses the extra client with 53300 before authentication and frees the slot when a
// client leaves; failed logins do not leak slots; client_login_timeout drops clients stuck in login.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import postgres from 'postgres';
import { sharedPostgres } from '../harness/postgres.js';
import { pgtideWith, track, type Pgtide } from '../harness/pgtide.js';
import { loginRefused, type Ctx, type PgError } from '../harness/util.js';

async function client(t: Ctx, b: Pgtide, password = 'apppass', db = 'app'): Promise<pg.Client> {
  const c = track(t, new pg.Client({ connectionString: b.url('app', password, db), connectionTimeoutMillis: 5000 }));
  await c.connect();
  return c;
}

/** Retry a login until it succeeds (the pooler may not have seen a disconnect yet), within ms. */
async function eventuallyLogsIn(t: Ctx, b: Pgtide, ms = 3000): Promise<pg.Client> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await client(t, b);
    } catch (e) {
      if ((e as PgError).code !== '53300' || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** A raw TCP connection that has sent `bytes` (maybe nothing) and then just sits there. */
function rawIdle(b: Pgtide, bytes = Buffer.alloc(0)): Promise<{ sock: net.Socket; data: Buffer[]; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: b.port });
    const data: Buffer[] = [];
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('data', (d) => data.push(d));
    sock.once('error', reject);
    sock.once('connect', () => {
      if (bytes.length) sock.write(bytes);
      resolve({ sock, data, closed });
    });
  });
}

test('max_client_conn=3: the 4th client gets 53300 "no more connections allowed (max_client_conn)"; after one leaves a new client gets in', async (t) => {
  const pgs = await sharedPostgres();
  const b = track(t, await pgtideWith(pgs, { max_client_conn: 3 }));
  const c1 = await client(t, b);
  const c2 = await client(t, b);
  const c3 = await client(t, b);
  for (const c of [c1, c2, c3]) assert.equal((await c.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n, 1);

  const err = await loginRefused(b);
  assert.equal(err.code, '53300');
  assert.equal(err.message, 'no more connections allowed (max_client_conn)');
  await b.waitForLog(/pooler error: no more connections allowed \(max_client_conn\)/);
  // refused before authentication: no password is asked for
  const first = await new Promise<Buffer>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: b.port }, () => {
      const body = Buffer.from('user\0app\0database\0app\0\0');
      const head = Buffer.alloc(8);
      head.writeInt32BE(8 + body.length, 0);
      head.writeInt32BE(196608, 4);
      s.write(Buffer.concat([head, body]));
    });
    s.once('data', (d) => { s.destroy(); resolve(d); });
    s.once('error', reject);
  });
  assert.equal(String.fromCharCode(first[0]!), 'E', 'expected an ErrorResponse, not an authentication request');
  assert.match(first.toString('latin1'), /C53300\0/);
  // postgres.js sees the same
  const sql = postgres(b.url('app', 'apppass', 'app'), { max: 1, onnotice: () => {}, fetch_types: false, connect_timeout: 5 });
  await assert.rejects(sql`SELECT 1`, (e: PgError) => e.code === '53300');
  await sql.end({ timeout: 1 });

  // the three are unaffected
  for (const c of [c1, c2, c3]) assert.equal((await c.query<{ n: number }>('SELECT 2 AS n')).rows[0]!.n, 2);
  await c2.end();
  const c4 = await eventuallyLogsIn(t, b);
  assert.equal((await c4.query<{ n: number }>('SELECT 4 AS n')).rows[0]!.n, 4);
  // full again
  assert.equal((await loginRefused(b)).code, '53300');
});

test('failed logins and refused clients do not leak max_client_conn slots', async (t) => {
  const pgs = await sharedPostgres();
  const b = track(t, await pgtideWith(pgs, { max_client_conn: 3 }));
  for (let i = 0; i < 4; i++) {
    await assert.rejects(client(t, b, 'wrong'), (e: PgError) => e.code === '28P01');
    await assert.rejects(client(t, b, 'apppass', 'no_such_db_limits'), (e: PgError) => e.code === '3D000');
    const raw = await rawIdle(b, Buffer.from('garbage!garbage!'));
    await raw.closed;
  }
  // with three logged in, the refused fourth must not take a slot either
  const held = [await eventuallyLogsIn(t, b), await eventuallyLogsIn(t, b), await eventuallyLogsIn(t, b)];
  for (let i = 0; i < 3; i++) assert.equal((await loginRefused(b)).code, '53300');
  await held[0]!.end();
  await eventuallyLogsIn(t, b);
});

test('clients still in login count toward max_client_conn; client_login_timeout drops them and frees the slots', async (t) => {
  const pgs = await sharedPostgres();
  const b = track(t, await pgtideWith(pgs, { max_client_conn: 3, client_login_timeout: 1 }));
  const half = Buffer.from([0, 0, 0, 40, 0, 3, 0, 0, 0x75]); // a startup packet cut short
  const idlers = [await rawIdle(b), await rawIdle(b, half), await rawIdle(b, half)];
  for (const r of idlers) track(t, { close: () => r.sock.destroy() });
  assert.equal((await loginRefused(b)).code, '53300');
  const t0 = Date.now();
  await Promise.all(idlers.map((r) => r.closed));
  const took = Date.now() - t0;
  assert.ok(took < 3000, `stuck logins were dropped only after ${took} ms`);
  // the ones that had started a startup packet are told why
  for (const r of idlers.slice(1)) assert.match(Buffer.concat(r.data).toString('latin1'), /client_login_timeout/);
  const c = await eventuallyLogsIn(t, b);
  assert.equal((await c.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n, 1);
});

// workers = 2 (issue 6): two pgtide processes serve one port behind a primary. psql, pgbench and pg work through it
// and both workers get clients; max_client_conn and the pool size hold across the workers, and server slots move so
// the clients of neither worker starve; a cancel request reaches the worker that owns the client; the console answers
// for every worker; SIGHUP reaches both; a killed worker is replaced and its slots are freed; SIGINT stops all.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { isAlive, pgBin, pgEnv, run, sharedPostgres, type PgServer } from '../harness/postgres.js';
import { iniFor, startPgtide, track, type Pgtide, type PgtideContext } from '../harness/pgtide.js';
import { makeCerts } from '../harness/certs.js';
import { consoleRows, loginRefused, monitorClient, psqlThrough, sleep, waitFor, type Ctx, type PgError } from '../harness/util.js';

const DB = 'wk_pool';

type Keyed = pg.Client & { processID: number; secretKey: number };

/** The worker (1, 2) that logged the client in: BackendKeyData's process id carries it in its high bits. */
const workerOf = (c: Keyed): number => c.processID >>> 24;

let server: PgServer;
let monitor: pg.Client;

before(async () => {
  server = await sharedPostgres();
  await server.psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await server.psql(`CREATE DATABASE ${DB} OWNER app`);
  monitor = await monitorClient(server);
});
after(async () => {
  await monitor?.end();
  await server?.psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
});

const entries = (extra = '') => `app = host=127.0.0.1 port=${server.port} dbname=app\n${DB} = host=127.0.0.1 port=${server.port} dbname=${DB}\n${extra}`;

/** pgtide with workers = 2 (app is an admin user), once the primary says every worker is up. */
async function twoWorkers(t: Ctx, settings: Record<string, string | number> = {}, extraDbs = ''): Promise<{ b: Pgtide; ctx: PgtideContext }> {
  let ctx: PgtideContext | undefined;
  const b = track(t, await startPgtide({
    pg: server,
    ini: (c) => {
      ctx = c;
      return iniFor(c, { settings: { workers: 2, admin_users: 'app', ...settings }, databases: entries(extraDbs) });
    },
  }));
  await b.waitForLog(/LOG process up: .*, 2 workers/, 10_000);
  return { b, ctx: ctx! };
}

/** `n` connected clients of worker `w` (clients that land on the other worker are closed again). */
async function clientsOn(t: Ctx, b: Pgtide, w: number, n: number, db = 'app'): Promise<Keyed[]> {
  const out: Keyed[] = [];
  for (let tries = 0; out.length < n && tries < n * 8; tries++) {
    const c = new pg.Client({ connectionString: b.url('app', 'apppass', db) }) as Keyed;
    await c.connect();
    if (workerOf(c) === w) out.push(track(t, c));
    else await c.end();
  }
  assert.equal(out.length, n, `could not place ${n} clients on worker ${w}`);
  return out;
}

function cancelPacket(pid: number, key: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32BE(16, 0);
  b.writeInt32BE(80877102, 4);
  b.writeInt32BE(pid, 8);
  b.writeInt32BE(key, 12);
  return b;
}

/** A CancelRequest on a fresh connection; resolves once the pooler has closed it. */
function sendCancel(b: Pgtide, c: Keyed): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: b.port }, () => s.write(cancelPacket(c.processID, c.secretKey)));
    s.on('close', () => resolve());
    s.on('error', reject);
    s.on('data', () => {});
  });
}

async function backends(db: string): Promise<number> {
  const { rows } = await monitor.query<{ n: string }>(
    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'", [db]);
  return Number(rows[0]!.n);
}

test('psql and pgbench through the one port; clients land on both workers; SHOW STATS sums both', async (t) => {
  const { b } = await twoWorkers(t, { pool_mode: 'transaction', default_pool_size: 4 });
  const r = await psqlThrough(b, '', 'SELECT 40 + 2');
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, '42');

  const script = join(b.dir, 'one.sql');
  writeFileSync(script, 'SELECT 1;\n');
  const out = await run(pgBin('pgbench'), ['-n', '-f', script, '-c', '6', '-j', '2', '-t', '50', '-h', '127.0.0.1', '-p', String(b.port), '-U', 'app', DB],
    { env: pgEnv({ PGPASSWORD: 'apppass' }), timeoutMs: 60_000 });
  assert.match(out, /number of transactions actually processed: 300\/300/);
  assert.match(out, /number of failed transactions: 0 /);
  // every login is logged by the worker that took it
  assert.match(b.log(), /LOG \[w1\] C-\d+: wk_pool\/app@127\.0\.0\.1:\d+ login attempt/);
  assert.match(b.log(), /LOG \[w2\] C-\d+: wk_pool\/app@127\.0\.0\.1:\d+ login attempt/);
  const stats = (await consoleRows(b, 'SHOW STATS')).find((row) => row.database === DB);
  assert.ok(stats, 'SHOW STATS has the database');
  assert.ok(Number(stats.total_xact_count) >= 300, `total_xact_count ${String(stats.total_xact_count)}: both workers' transactions`);
});

test('max_client_conn = 4 holds across both workers: the 5th client gets 53300, a freed slot is usable again', async (t) => {
  const { b } = await twoWorkers(t, { max_client_conn: 4 });
  const held: Keyed[] = [];
  for (let i = 0; i < 4; i++) {
    const c = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app') }) as Keyed);
    await c.connect();
    held.push(c);
  }
  assert.deepEqual(new Set(held.map(workerOf)), new Set([1, 2]), 'the four clients are spread over both workers');
  for (let i = 0; i < 2; i++) {
    const err = await loginRefused(b); // one attempt per worker (round robin)
    assert.equal(err.code, '53300');
    assert.equal(err.message, 'no more connections allowed (max_client_conn)');
  }
  for (const c of held) assert.equal((await c.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n, 1);
  await held[0]!.end();
  const again = await waitFor('a login once a slot is free', async () => {
    const c = new pg.Client({ connectionString: b.url('app', 'apppass', 'app') });
    try {
      await c.connect();
      return track(t, c);
    } catch (e) {
      if ((e as PgError).code !== '53300') throw e;
      return null;
    }
  }, 5000);
  assert.equal((await again.query<{ n: number }>('SELECT 2 AS n')).rows[0]!.n, 2);
});

test('default_pool_size = 3 over both workers: never more than 3 backends, and worker 2 is served while worker 1 is saturated', async (t) => {
  const { b } = await twoWorkers(t, { pool_mode: 'transaction', default_pool_size: 3, query_wait_timeout: 30, log_connections: 0 });
  const hogs = await clientsOn(t, b, 1, 6, DB);
  const others = await clientsOn(t, b, 2, 3, DB);
  let most = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      most = Math.max(most, await backends(DB));
      await sleep(10);
    }
  })();
  // worker 1: six clients for three servers, always someone waiting
  let running = true;
  const hogLoops = hogs.map(async (c) => {
    let n = 0;
    while (running) {
      await c.query('SELECT pg_sleep(0.02)');
      n++;
    }
    return n;
  });
  // worker 2's idle server (opened for its clients' logins) moves to worker 1, whose clients wait
  const slotsOf = async () => Object.fromEntries((await consoleRows(b, 'SHOW WORKERS')).map((w) => [Number(w.worker), Number(w.server_slots)]));
  const taken = await waitFor('worker 1 to hold every slot', async () => {
    const s = await slotsOf();
    return s[1] === 3 && s[2] === 0 && s;
  }, 5000, 100);
  assert.deepEqual(taken, { 0: 3, 1: 3, 2: 0 });
  // now worker 2 needs slots that worker 1 holds and never leaves idle
  const t0 = Date.now();
  await Promise.all(others.map(async (c) => {
    for (let i = 0; i < 5; i++) await c.query('SELECT pg_sleep(0.02)');
  }));
  const took = Date.now() - t0;
  assert.ok(running, 'still running');
  running = false;
  const done = await Promise.all(hogLoops);
  sampling = false;
  await sampler;
  assert.ok(took < 8000, `worker 2's clients needed ${took} ms for 5 short transactions each`);
  for (const n of done) assert.ok(n > 0, 'every client of worker 1 was served');
  assert.ok(most <= 3, `${most} backends at once for default_pool_size = 3`);
  assert.ok(most >= 2, `only ${most} backends seen`);
  const moved = b.log().split('\n').filter((l) => l.includes('server slot moved to another worker'));
  assert.ok(moved.some((l) => l.includes('LOG [w2] S-')), `worker 2's idle server moved:\n${moved.join('\n')}`);
  assert.ok(moved.some((l) => l.includes('LOG [w1] S-')), `one of worker 1's busy servers moved:\n${moved.join('\n')}`);
  const pools = (await consoleRows(b, 'SHOW POOLS')).find((row) => row.database === DB);
  assert.ok(pools && Number(pools.sv_idle) + Number(pools.sv_active) + Number(pools.sv_used) <= 3, JSON.stringify(pools));
});

test('max_db_connections = 2 holds across both workers; min_pool_size = 3 is split 2 + 1 between them', async (t) => {
  const { b } = await twoWorkers(t, { max_db_connections: 2, query_wait_timeout: 2, log_connections: 0 });
  // session mode: each worker's first client keeps the server opened for its login; that is the database's two
  const firsts = [...(await clientsOn(t, b, 1, 1, DB)), ...(await clientsOn(t, b, 2, 1, DB))];
  const seconds = [...(await clientsOn(t, b, 1, 1, DB)), ...(await clientsOn(t, b, 2, 1, DB))];
  for (const c of seconds) c.on('error', () => {});
  for (const c of firsts) assert.equal((await c.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n, 1);
  const waited = await Promise.all(seconds.map((c) => c.query('SELECT 1').then(() => null, (e: PgError) => e)));
  for (const e of waited) assert.equal(e?.message, 'query_wait_timeout');
  assert.equal(await backends(DB), 2);
  for (const c of [...firsts, ...seconds]) await c.end();
  await b.stop();

  const { b: m } = await twoWorkers(t, { pool_mode: 'transaction', min_pool_size: 3, log_connections: 0 });
  const one = [...(await clientsOn(t, m, 1, 1, DB)), ...(await clientsOn(t, m, 2, 1, DB))];
  const slots = await waitFor('min_pool_size filled', async () => {
    const w = Object.fromEntries((await consoleRows(m, 'SHOW WORKERS')).map((r) => [Number(r.worker), Number(r.servers)]));
    return w[1] === 2 && w[2] === 1 ? w : null;
  }, 5000, 100);
  assert.deepEqual([slots[1], slots[2]], [2, 1]);
  await waitFor('three backends (the first pgtide\'s are gone)', async () => (await backends(DB)) === 3);
  for (const c of one) await c.end();
});

test('reserve_pool_size: a client that waited reserve_pool_timeout gets a reserve server, whichever worker it is on', async (t) => {
  const { b } = await twoWorkers(t, { default_pool_size: 2, reserve_pool_size: 1, reserve_pool_timeout: 0.5, query_wait_timeout: 10, log_connections: 0 });
  // session mode: two clients, one per worker, hold the pool's two servers
  const holders = [...(await clientsOn(t, b, 1, 1, DB)), ...(await clientsOn(t, b, 2, 1, DB))];
  for (const c of holders) await c.query('SELECT 1');
  const [third] = await clientsOn(t, b, 2, 1, DB);
  const t0 = Date.now();
  assert.equal((await third!.query<{ n: number }>('SELECT 3 AS n')).rows[0]!.n, 3);
  const took = Date.now() - t0;
  assert.ok(took >= 400 && took < 5000, `the third client waited ${took} ms`);
  assert.match(b.log(), /WARNING \[w2\] C-\d+: wk_pool\/app@[^ ]+ taking connection from reserve_pool/);
  assert.equal(await backends(DB), 3);
});

test('a cancel request that reaches the other worker is forwarded to the owner and cancels the query', async (t) => {
  const { b } = await twoWorkers(t, { verbose: 1 });
  const [victim] = await clientsOn(t, b, 1, 1);
  let crossed = false;
  for (let attempt = 0; attempt < 6 && !crossed; attempt++) {
    const q = victim!.query(`SELECT pg_sleep(10) /* wk_cancel_${attempt} */`).then(() => null, (e: PgError) => e);
    await waitFor('the query to run', async () => {
      const { rows } = await monitor.query("SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1", [`%wk_cancel_${attempt} */`]);
      return rows.length > 0;
    });
    const mark = b.log().length;
    const t0 = Date.now();
    await sendCancel(b, victim!);
    const err = await q;
    assert.ok(err, 'pg_sleep(10) was not canceled');
    assert.equal(err.code, '57014');
    assert.ok(Date.now() - t0 < 3000, `cancel took ${Date.now() - t0} ms`);
    crossed = /DEBUG \[w2\] cancel request for a client of worker 1: forwarded/.test(b.log().slice(mark));
  }
  assert.ok(crossed, 'no cancel request went through worker 2');
  assert.equal((await victim!.query<{ n: number }>('SELECT 3 AS n')).rows[0]!.n, 3);
});

test('SHOW CLIENTS, POOLS, DATABASES and WORKERS answer for both workers', async (t) => {
  const { b } = await twoWorkers(t);
  const mine = [...(await clientsOn(t, b, 1, 2)), ...(await clientsOn(t, b, 2, 2))];
  for (const c of mine) {
    c.on('error', () => {}); // one of them is killed below
    await c.query('SELECT 1');
  }
  const clients = (await consoleRows(b, 'SHOW CLIENTS')).filter((r) => r.database === 'app');
  assert.equal(clients.length, 4, JSON.stringify(clients));
  const ids = clients.map((r) => Number(r.id));
  assert.equal(new Set(ids).size, 4, 'client ids are unique across workers');
  assert.deepEqual(new Set(ids.map((id) => Math.floor(id / 1e9))), new Set([1, 2]), 'ids name their worker');
  const pool = (await consoleRows(b, 'SHOW POOLS')).find((r) => r.database === 'app' && r.user === 'app');
  assert.equal(Number(pool?.cl_active), 4, JSON.stringify(pool));
  const db = (await consoleRows(b, 'SHOW DATABASES')).find((r) => r.name === 'app');
  assert.equal(Number(db?.current_client_connections), 4);
  assert.equal(Number(db?.current_connections), 4, 'session mode: one server per client');
  const workers = await consoleRows(b, 'SHOW WORKERS');
  assert.deepEqual(workers.map((w) => [Number(w.worker), w.role]), [[0, 'primary'], [1, 'worker'], [2, 'worker']]);
  assert.equal(Number(workers[0]!.pid), b.pid);
  for (const w of workers.slice(1)) {
    assert.ok(Number(w.clients) >= 2, JSON.stringify(w));
    assert.equal(Number(w.server_slots), 2, JSON.stringify(w));
  }
  // a command changes every worker: KILL_CLIENT finds a client of either worker, PAUSE/RESUME apply to both
  const victim = clients.find((r) => Math.floor(Number(r.id) / 1e9) === 2)!;
  await consoleRows(b, `KILL_CLIENT ${String(victim.id)}`);
  await waitFor('the killed client to be gone', async () =>
    (await consoleRows(b, 'SHOW CLIENTS')).filter((r) => r.database === 'app').length === 3);
  await consoleRows(b, 'SET default_pool_size = 7');
  const sizes: string[] = [];
  for (const w of [1, 2]) {
    const [c] = await clientsOn(t, b, w, 1, 'pgbouncer');
    const row = (await c!.query('SHOW CONFIG')).rows.find((r: { key: string }) => r.key === 'default_pool_size') as { value: string };
    sizes.push(row.value);
  }
  assert.deepEqual(sizes, ['7', '7'], 'SET reached both workers');
});

test('SIGHUP reaches both workers: a database added to the file is served by each', async (t) => {
  const { b, ctx } = await twoWorkers(t);
  const before = await new pg.Client({ connectionString: b.url('app', 'apppass', 'wk_hup') }).connect().then(() => null, (e: PgError) => e);
  assert.equal(before?.code, '3D000');
  writeFileSync(join(b.dir, 'pgbouncer.ini'), iniFor(ctx, {
    settings: { workers: 2, admin_users: 'app' },
    databases: entries(`wk_hup = host=127.0.0.1 port=${server.port} dbname=app`),
  }));
  const mark = b.log().length;
  b.signal('SIGHUP');
  await b.waitForLog(/LOG got SIGHUP, re-reading config/, 3000, mark);
  await sleep(200);
  for (const w of [1, 2]) {
    const [c] = await clientsOn(t, b, w, 1, 'wk_hup');
    assert.equal((await c!.query<{ d: string }>('SELECT current_database() AS d')).rows[0]!.d, 'app');
  }
});

/** Run a console command on a console connection of worker `w`; returns the rows. */
async function consoleOn(t: Ctx, b: Pgtide, w: number, sql: string): Promise<Record<string, string>[]> {
  const [c] = await clientsOn(t, b, w, 1, 'pgbouncer');
  try {
    return (await c!.query(sql)).rows as Record<string, string>[];
  } finally {
    await c!.end();
  }
}

const pausedOn = async (t: Ctx, b: Pgtide, w: number) => (await consoleOn(t, b, w, 'SHOW STATE')).find((r) => r.key === 'paused')!.value;
const poolSizeOn = async (t: Ctx, b: Pgtide, w: number) =>
  (await consoleOn(t, b, w, 'SHOW CONFIG')).find((r) => r.key === 'default_pool_size')!.value;

test('SIGUSR1/SIGUSR2 and the console\'s PAUSE, RESUME and SET reach every worker, and a worker started later too', async (t) => {
  const { b } = await twoWorkers(t);
  b.signal('SIGUSR1');
  await b.waitForLog(/LOG got SIGUSR1, pausing all activity/, 3000);
  await waitFor('both workers paused', async () => (await pausedOn(t, b, 1)) === 'yes' && (await pausedOn(t, b, 2)) === 'yes');
  b.signal('SIGUSR2');
  await waitFor('both workers resumed', async () => (await pausedOn(t, b, 1)) === 'no' && (await pausedOn(t, b, 2)) === 'no');
  // the console: one command, every worker
  await consoleOn(t, b, 1, 'PAUSE');
  await consoleOn(t, b, 1, 'SET default_pool_size = 9');
  assert.deepEqual([await pausedOn(t, b, 1), await pausedOn(t, b, 2)], ['yes', 'yes']);
  assert.deepEqual([await poolSizeOn(t, b, 1), await poolSizeOn(t, b, 2)], ['9', '9']);
  // a worker that starts now gets the same state
  const pid2 = Number((await consoleRows(b, 'SHOW WORKERS')).find((w) => Number(w.worker) === 2)!.pid);
  const mark = b.log().length;
  process.kill(pid2, 'SIGKILL');
  await b.waitForLog(/LOG worker 2 restarted/, 10_000, mark);
  await waitFor('the new worker 2 to have the state', async () => (await pausedOn(t, b, 2)) === 'yes' && (await poolSizeOn(t, b, 2)) === '9');
  await consoleOn(t, b, 2, 'RESUME');
  assert.deepEqual([await pausedOn(t, b, 1), await pausedOn(t, b, 2)], ['no', 'no']);
});

test('a killed worker is replaced, and the server slots it held are free for the others', async (t) => {
  const { b } = await twoWorkers(t, { default_pool_size: 2, query_wait_timeout: 5 });
  // session mode: each client keeps its server, so these two hold the pool's two slots
  const [a] = await clientsOn(t, b, 1, 1);
  const [c2] = await clientsOn(t, b, 2, 1);
  a!.on('error', () => {});
  for (const c of [a!, c2!]) await c.query('SELECT 1');
  const before = await consoleRows(b, 'SHOW WORKERS');
  const pid1 = Number(before.find((w) => Number(w.worker) === 1)!.pid);
  const mark = b.log().length;
  process.kill(pid1, 'SIGKILL');
  await b.waitForLog(/ERROR worker 1 \(pid \d+\) died \(signal SIGKILL\); its slots are free; starting a new one/, 5000, mark);
  await b.waitForLog(/LOG worker 1 restarted \(pid \d+\)/, 10_000, mark);
  // with the dead worker's slot leaked, this client would wait for query_wait_timeout (5 s) and fail
  const t0 = Date.now();
  const fresh = await waitFor('a client and a server', async () => {
    const c = new pg.Client({ connectionString: b.url('app', 'apppass', 'app') });
    await c.connect();
    const { rows } = await c.query<{ n: number }>('SELECT 7 AS n');
    return track(t, c) && rows[0]!.n;
  }, 5000);
  assert.equal(fresh, 7);
  assert.ok(Date.now() - t0 < 4000);
  const after = await consoleRows(b, 'SHOW WORKERS');
  const w1 = after.find((w) => Number(w.worker) === 1)!;
  assert.notEqual(Number(w1.pid), pid1);
  assert.equal(Number(w1.restarts), 1);
  assert.equal(Number(after[0]!.server_slots), 2, 'the primary counts two slots in use again');
  assert.equal((await c2!.query<{ n: number }>('SELECT 8 AS n')).rows[0]!.n, 8, 'the other worker was not disturbed');
});

test('SIGINT stops the primary and every worker, leaving no process', async (t) => {
  const { b } = await twoWorkers(t);
  const workers = await consoleRows(b, 'SHOW WORKERS');
  const pids = workers.map((w) => Number(w.pid));
  assert.equal(pids.length, 3);
  const [c] = await clientsOn(t, b, 2, 1);
  c!.on('error', () => {});
  b.signal('SIGINT');
  const code = await Promise.race([b.exited, sleep(10_000).then(() => 'timeout' as const)]);
  assert.equal(code, 0, b.log());
  assert.match(b.log(), /LOG all workers exited, exiting/);
  await waitFor('every pgtide process to be gone', () => pids.every((p) => !isAlive(p)), 3000);
});

test('with client TLS, a unix socket and LISTEN in transaction mode: every worker serves them', async (t) => {
  const certs = makeCerts();
  t.after(() => certs.cleanup());
  const { b, ctx } = await twoWorkers(t, {
    pool_mode: 'transaction',
    default_pool_size: 4,
    client_tls_sslmode: 'require',
    client_tls_key_file: certs.f('server.key'),
    client_tls_cert_file: certs.f('server.crt'),
  });
  const ca = readFileSync(certs.f('ca.crt'), 'utf8');
  // TLS on both workers (each loads the certificate itself): pg with the CA until a client of each worker is seen
  const seen = new Set<number>();
  for (let i = 0; i < 16 && seen.size < 2; i++) {
    const c = new pg.Client({ host: '127.0.0.1', port: b.port, user: 'app', password: 'apppass', database: 'app', ssl: { ca, servername: 'localhost' } }) as Keyed;
    await c.connect();
    try {
      const { rows } = await c.query<{ ssl: boolean; n: number }>('SELECT 6 * 7 AS n');
      assert.equal(rows[0]!.n, 42);
      assert.ok((c as unknown as { connection: { stream: { encrypted?: boolean } } }).connection.stream.encrypted, 'the client socket is TLS');
      seen.add(workerOf(c));
    } finally {
      await c.end();
    }
  }
  assert.deepEqual([...seen].sort(), [1, 2], 'TLS clients were served by both workers');
  // psql with sslmode=require over TCP, and over the unix socket (no TLS there, as in PgBouncer)
  for (let i = 0; i < 4; i++) {
    const tcp = await psqlThrough(b, 'sslmode=require', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    assert.equal(tcp.code, 0, tcp.err);
    const unix = await psqlThrough(b, '', 'SELECT 40 + 2', ctx.socketDir);
    assert.equal(unix.code, 0, unix.err);
    assert.equal(unix.out, '42');
  }
  assert.match(b.log(), /LOG \[w1\] C-\d+: app\/app@unix:0 login attempt/);
  assert.match(b.log(), /LOG \[w2\] C-\d+: app\/app@unix:0 login attempt/);

  // LISTEN in transaction mode on each worker; NOTIFY from either reaches every listener exactly once
  const listeners: Keyed[] = [];
  for (const w of [1, 2]) {
    for (let tries = 0; tries < 16 && !listeners.some((l) => workerOf(l) === w); tries++) {
      const c = new pg.Client({ host: '127.0.0.1', port: b.port, user: 'app', password: 'apppass', database: 'app', ssl: { ca, servername: 'localhost' } }) as Keyed;
      await c.connect();
      if (workerOf(c) === w) listeners.push(track(t, c));
      else await c.end();
    }
  }
  assert.equal(listeners.length, 2, 'a listener on each worker');
  const got: string[][] = listeners.map(() => []);
  listeners.forEach((l, i) => l.on('notification', (m) => got[i]!.push(m.payload ?? '')));
  for (const l of listeners) await l.query('LISTEN wk_chan');
  const sender = track(t, new pg.Client({ host: '127.0.0.1', port: b.port, user: 'app', password: 'apppass', database: 'app', ssl: { ca, servername: 'localhost' } }));
  await sender.connect();
  for (let i = 0; i < 5; i++) await sender.query(`NOTIFY wk_chan, 'm${i}'`);
  await waitFor('every listener got 5 notifications', () => got.every((g) => g.length >= 5) || null);
  await sleep(200);
  for (const g of got) assert.deepEqual(g, ['m0', 'm1', 'm2', 'm3', 'm4']);
});

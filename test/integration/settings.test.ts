// Pooler settings no other file covers, each in its own pgtide with small timeouts: connect_query,
// server_check_query / server_check_delay, server_reset_query_always, server_round_robin, FunctionCall pass-through,
// log_stats / stats_period, the unix socket (unix_socket_dir), autodb_idle_timeout, log_pooler_errors and busy_poll_us.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { sharedPostgres, pgBin, pgEnv, run, type PgServer } from '../harness/postgres.js';
import { pgtideWith, track, type Pgtide } from '../harness/pgtide.js';
import { appClient, consoleRows, sleep, stillServes, waitFor, type Ctx, type PgError } from '../harness/util.js';

/** Database whose statements PostgreSQL logs (log_statement = all), to see what the pooler sends before a query. */
const CHK_DB = 'settings_chk';
/** Table connect_query writes one row per new server connection into (in database app). */
const CQ_TABLE = 'settings_cq_log';

let server: PgServer;

before(async () => {
  server = await sharedPostgres();
  await server.psql(
    `DROP DATABASE IF EXISTS ${CHK_DB} WITH (FORCE);\nCREATE DATABASE ${CHK_DB} OWNER app;\nALTER DATABASE ${CHK_DB} SET log_statement = 'all';`,
  );
  await server.psql(`DROP TABLE IF EXISTS ${CQ_TABLE};\nCREATE TABLE ${CQ_TABLE} (pid int NOT NULL);\nALTER TABLE ${CQ_TABLE} OWNER TO app;`, 'app');
});

after(async () => {
  await server?.psql(`DROP DATABASE IF EXISTS ${CHK_DB} WITH (FORCE);\nDROP TABLE IF EXISTS ${CQ_TABLE};`, 'app');
});

const entry = (name: string, extra = '', dbname = name) => `${name} = host=127.0.0.1 port=${server.port} dbname=${dbname}${extra ? ' ' + extra : ''}`;

const pidOf = async (c: pg.Client): Promise<number> => (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;

// ---- connect_query ----

test('connect_query runs once on each new server connection; a failing one is only logged and the server still serves', async (t) => {
  const good = `connect_query='select set_config(''my.cq'', ''yes'', false); insert into ${CQ_TABLE} (pid) values (pg_backend_pid())'`;
  const bad = `connect_query='select settings_no_such_function()'`;
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, query_wait_timeout: 5 },
    [entry('cq', good, 'app'), entry('cqbad', bad, 'app')].join('\n')));

  // two servers: two clients hold a transaction each
  const [c1, c2] = [await appClient(t, b, { db: 'cq' }), await appClient(t, b, { db: 'cq' })];
  await c1.query('BEGIN');
  await c2.query('BEGIN');
  const pids = new Set([await pidOf(c1), await pidOf(c2)]);
  assert.equal(pids.size, 2);
  await c1.query('COMMIT');
  await c2.query('COMMIT');
  // many transactions on them: the session-level effect of connect_query is there every time, and it ran only once per server
  for (let i = 0; i < 10; i++) {
    const c = i % 2 ? c1 : c2;
    const { rows } = await c.query<{ pid: number; cq: string }>(`select pg_backend_pid() as pid, current_setting('my.cq', true) as cq`);
    assert.ok(pids.has(rows[0]!.pid), 'a third server was opened');
    assert.equal(rows[0]!.cq, 'yes');
  }
  const logged = await server.psql(`select pid || ':' || count(*) from ${CQ_TABLE} group by pid order by pid`, 'app');
  assert.equal(logged, [...pids].sort((x, y) => x - y).map((pid) => `${pid}:1`).join('\n'));

  // a failing connect_query: logged, and the server is used anyway
  const mark = b.log().length;
  const c3 = await appClient(t, b, { db: 'cqbad' });
  const pid3 = await pidOf(c3);
  assert.equal(pids.has(pid3), false, 'cqbad got a server of another database');
  await b.waitForLog(/connect_query failed: .*settings_no_such_function/, 3000, mark);
  assert.deepEqual((await c3.query('select 2 as two')).rows, [{ two: 2 }]);
  assert.equal(await pidOf(c3), pid3, 'the server was replaced');
  assert.doesNotMatch(b.log().slice(mark), /closing because/);
  await stillServes(b, { db: 'cq' });
});

// ---- server_check_query / server_check_delay ----

const CHECK_Q = `select set_config('my.checked', (coalesce(nullif(current_setting('my.checked', true), ''), '0')::int + 1)::text, false)`;

/** The statements PostgreSQL logged for backend `pid` after the one containing `from`, as short names (check / q2 / …). */
function statementsAfter(pid: number, from: string): string[] {
  const lines = readFileSync(server.logFile, 'utf8').split('\n').filter((l) => l.includes(`[${pid}] `) && l.includes('statement: '));
  const start = lines.findIndex((l) => l.includes(from));
  assert.ok(start >= 0, `no logged statement containing ${from} for backend ${pid}`);
  return lines.slice(start + 1).map((l) => {
    const m = /'(chk-q\d)'/.exec(l);
    if (m) return m[1]!.slice(4);
    return l.includes('my.checked') && l.includes('set_config') ? 'check' : l.slice(l.indexOf('statement: ') + 11);
  });
}

/** One client runs q1 and leaves; after `idleMs` the next client runs q2 and q3 on the same (only) server. */
async function checkScenario(t: Ctx, b: Pgtide, idleMs: number): Promise<{ pid: number; v2: string | null; v3: string | null }> {
  const q = (n: number) => `select pg_backend_pid() as pid, current_setting('my.checked', true) as v, 'chk-q${n}' as m`;
  const first = await appClient(t, b, { db: CHK_DB });
  const r1 = (await first.query<{ pid: number; v: string | null }>(q(1))).rows[0]!;
  assert.equal(r1.v, null, 'a fresh server was checked');
  await first.end();
  await sleep(idleMs); // the server must be idle longer than server_check_delay: this wait is the point of the test
  const next = await appClient(t, b, { db: CHK_DB });
  const r2 = (await next.query<{ pid: number; v: string | null }>(q(2))).rows[0]!;
  const r3 = (await next.query<{ pid: number; v: string | null }>(q(3))).rows[0]!;
  assert.equal(r2.pid, r1.pid);
  assert.equal(r3.pid, r1.pid);
  return { pid: r1.pid, v2: r2.v, v3: r3.v };
}

test('server_check_query runs on a server idle longer than server_check_delay (0.3 s), right before the next client query, on the same backend', async (t) => {
  const b = track(t, await pgtideWith(server, {
    pool_mode: 'transaction', default_pool_size: 1, server_check_delay: '0.3', server_check_query: CHECK_Q, query_wait_timeout: 5,
  }, entry(CHK_DB)));
  const { pid, v2, v3 } = await checkScenario(t, b, 1000);
  assert.equal(v2, '1', 'the check query did not run before the idle server was reused');
  assert.equal(v3, '1', 'the check ran again although the server had been used just before');
  const seen = await waitFor('q3 in the PostgreSQL log', () => {
    const s = statementsAfter(pid, "'chk-q1'");
    return s.includes('q3') ? s : null;
  }, 3000);
  assert.deepEqual(seen, ['check', 'q2', 'q3']);
  await stillServes(b, { db: CHK_DB });
});

test("server_check_query = '' turns the check off: an idle server is reused with no query before the client's", async (t) => {
  const b = track(t, await pgtideWith(server, {
    pool_mode: 'transaction', default_pool_size: 1, server_check_delay: '0.3', server_check_query: '', query_wait_timeout: 5,
  }, entry(CHK_DB)));
  const { pid, v2, v3 } = await checkScenario(t, b, 1000);
  assert.equal(v2, null);
  assert.equal(v3, null);
  const seen = await waitFor('q3 in the PostgreSQL log', () => {
    const s = statementsAfter(pid, "'chk-q1'");
    return s.includes('q3') ? s : null;
  }, 3000);
  assert.deepEqual(seen, ['q2', 'q3']);
  await stillServes(b, { db: CHK_DB });
});

// ---- server_reset_query_always ----

test('server_reset_query_always=1 (transaction mode): a SET does not leak to the next client of the server; with 0 it does (PgBouncer\'s behaviour, session_state_policy = allow)', async (t) => {
  const defaultWorkMem = await server.psql('show work_mem', 'app');
  assert.notEqual(defaultWorkMem, '7MB');

  for (const always of [1, 0]) {
    const b = track(t, await pgtideWith(server, {
      pool_mode: 'transaction', default_pool_size: 1, server_reset_query_always: always, query_wait_timeout: 5,
      session_state_policy: 'allow',
    }));
    const setter = await appClient(t, b);
    const pid = await pidOf(setter);
    await setter.query("SET work_mem = '7MB'");
    const next = await appClient(t, b);
    const { rows } = await next.query<{ pid: number; work_mem: string }>(`select pg_backend_pid() as pid, current_setting('work_mem') as work_mem`);
    assert.equal(rows[0]!.pid, pid, 'pool of 1: the same server');
    assert.equal(rows[0]!.work_mem, always ? defaultWorkMem : '7MB', `server_reset_query_always=${always}`);
    await stillServes(b);
  }
});

// ---- server_round_robin ----

/** Three warmed servers in a pool of 3, then six sequential queries from one client: the backends they ran on. */
async function sequentialPids(t: Ctx, roundRobin: number): Promise<{ warmed: Set<number>; used: number[] }> {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 3, server_round_robin: roundRobin, query_wait_timeout: 5 }));
  const clients = [await appClient(t, b), await appClient(t, b), await appClient(t, b)];
  for (const c of clients) await c.query('BEGIN');
  const warmed = new Set(await Promise.all(clients.map(pidOf)));
  assert.equal(warmed.size, 3);
  for (const c of clients) await c.query('COMMIT');
  const used: number[] = [];
  for (let i = 0; i < 6; i++) used.push(await pidOf(clients[0]!));
  for (const pid of used) assert.ok(warmed.has(pid), 'a fourth server was opened');
  return { warmed, used };
}

test('server_round_robin=1 spreads sequential transactions over the idle servers in turn; 0 reuses the same one (LIFO)', async (t) => {
  const rr = await sequentialPids(t, 1);
  assert.equal(new Set(rr.used).size, 3, `round robin used ${rr.used}`);
  for (let i = 0; i < 3; i++) assert.equal(rr.used[i], rr.used[i + 3], `not in turn: ${rr.used}`);

  const lifo = await sequentialPids(t, 0);
  assert.equal(new Set(lifo.used).size, 1, `LIFO used ${lifo.used}`);
});

// ---- FunctionCall ----

interface Msg { type: string; body: Buffer }

/** A minimal raw protocol client. */
class Raw {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private closed = false;
  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.wake?.(); });
    sock.on('close', () => { this.closed = true; this.wake?.(); });
    sock.on('error', () => {});
  }

  static open(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      sock.once('connect', () => resolve(new Raw(sock)));
      sock.once('error', reject);
    });
  }

  send(...msgs: Buffer[]): void { this.sock.write(Buffer.concat(msgs)); }

  /** The next message; throws on close or after ms. */
  async msg(ms = 3000): Promise<Msg> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.buf.length >= 5 && this.buf.length >= 1 + this.buf.readInt32BE(1)) {
        const len = this.buf.readInt32BE(1);
        const m = { type: String.fromCharCode(this.buf[0]!), body: Buffer.from(this.buf.subarray(5, 1 + len)) };
        this.buf = this.buf.subarray(1 + len);
        return m;
      }
      if (this.closed) throw new Error('raw: connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('raw: timed out waiting for a message');
      await new Promise<void>((r) => { const timer = setTimeout(r, left); this.wake = () => { clearTimeout(timer); r(); }; });
      this.wake = null;
    }
  }

  /** Messages up to and including ReadyForQuery. */
  async untilReady(ms = 3000): Promise<Msg[]> {
    const out: Msg[] = [];
    for (;;) {
      const m = await this.msg(ms);
      out.push(m);
      if (m.type === 'Z') return out;
    }
  }

  close(): void { this.sock.destroy(); }
}

function typed(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

function startupPacket(params: Record<string, string>): Buffer {
  const body = Buffer.from(Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('') + '\0');
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
}

const queryMsg = (sql: string) => typed('Q', Buffer.from(sql + '\0'));

/** FunctionCall: function OID, text arguments, text result. */
function functionCall(oid: number, args: string[]): Buffer {
  const parts: Buffer[] = [];
  const i32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
  const i16 = (n: number) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
  parts.push(i32(oid), i16(1), i16(0), i16(args.length));
  for (const a of args) parts.push(i32(Buffer.byteLength(a)), Buffer.from(a));
  parts.push(i16(0));
  return typed('F', Buffer.concat(parts));
}

/** The first column of the first DataRow, as text. */
function firstValue(msgs: Msg[]): string {
  const d = msgs.find((m) => m.type === 'D');
  assert.ok(d, `no DataRow in ${msgs.map((m) => m.type).join('')}`);
  const len = d.body.readInt32BE(2);
  return d.body.subarray(6, 6 + len).toString('utf8');
}

test('FunctionCall (F) passes through in transaction mode: FunctionCallResponse + ReadyForQuery, and the server goes back to the pool', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, auth_type: 'trust', query_wait_timeout: 5 }));
  const raw = await Raw.open(b.port);
  track(t, raw);
  raw.send(startupPacket({ user: 'trustuser', database: 'app' }));
  const login = await raw.untilReady();
  assert.equal(login[0]!.type, 'R');

  raw.send(queryMsg("select 'int4pl'::regproc::oid::int4 as oid, pg_backend_pid() as pid"));
  const res = await raw.untilReady();
  const oid = Number(firstValue(res));
  const d = res.find((m) => m.type === 'D')!;
  const pid = Number(d.body.subarray(6 + d.body.readInt32BE(2) + 4).toString('utf8'));
  assert.ok(oid > 0 && pid > 0);

  for (const [x, y, sum] of [['2', '3', '5'], ['40', '2', '42']] as const) {
    raw.send(functionCall(oid, [x, y]));
    const reply = await raw.untilReady();
    assert.deepEqual(reply.map((m) => m.type), ['V', 'Z']);
    const v = reply[0]!.body;
    assert.equal(v.subarray(4, 4 + v.readInt32BE(0)).toString('utf8'), sum);
    assert.equal(reply[1]!.body.toString('latin1'), 'I');

    // the raw client stays connected and idle: another client of the pool of 1 gets the same server
    const other = new pg.Client({ connectionString: b.url('trustuser', '', 'app') });
    await other.connect();
    try {
      assert.equal(await pidOf(other), pid);
    } finally {
      await other.end();
    }
  }
  // a FunctionCall error (division by zero) ends with ReadyForQuery too, and the server is still pooled
  raw.send(queryMsg("select 'int4div'::regproc::oid::int4"));
  const int4div = Number(firstValue(await raw.untilReady()));
  raw.send(functionCall(int4div, ['1', '0']));
  const errReply = await raw.untilReady();
  assert.deepEqual(errReply.map((m) => m.type), ['E', 'Z']);
  assert.match(errReply[0]!.body.toString('utf8'), /C22012/);
  await stillServes(b, { user: 'trustuser', password: '' });
  raw.send(typed('X', Buffer.alloc(0)));
});

// ---- log_stats / stats_period ----

const STATS_LINE = /stats: \d+ xacts\/s, \d+ queries\/s, in \d+ B\/s, out \d+ B\/s, xact \d+ us, query \d+ us, wait \d+ us/;

/** Run queries every 20 ms until stop() is called. */
function busyClient(c: pg.Client): { stop(): Promise<void> } {
  let running = true;
  const loop = (async () => {
    while (running) {
      await c.query('select 1');
      await sleep(20);
    }
  })();
  return { stop: async () => { running = false; await loop; } };
}

test('stats_period=1 with log_stats: a stats line with non-zero xacts/s every second; log_stats=0: none', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', stats_period: 1 }));
  const busy = busyClient(await appClient(t, b));
  let line: string;
  try {
    line = await b.waitForLog(/stats: [1-9]\d* xacts\/s.*/, 5000);
  } finally {
    await busy.stop();
  }
  assert.match(line, STATS_LINE);
  const m = /(\d+) queries\/s, in (\d+) B\/s, out (\d+) B\/s/.exec(line)!;
  assert.ok(Number(m[1]) > 0 && Number(m[2]) > 0 && Number(m[3]) > 0, line);

  const quiet = track(t, await pgtideWith(server, { pool_mode: 'transaction', stats_period: 1, log_stats: 0 }));
  const busy2 = busyClient(await appClient(t, quiet));
  await sleep(2500); // no line may appear: waiting is the test
  await busy2.stop();
  assert.doesNotMatch(quiet.log(), /stats:/);
  await stillServes(quiet);
});

// ---- unix socket ----

test('unix socket: psql and pg log in through <unix_socket_dir>/.s.PGSQL.<port>; unix_socket_dir = "" creates none', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction' }));
  const path = join(b.socketDir, `.s.PGSQL.${b.port}`);
  assert.ok(existsSync(path), `${path} missing`);
  await b.waitForLog(new RegExp(`listening on unix:${path.replace(/[.]/g, '\\.')}`), 3000);

  const out = await run(pgBin('psql'), ['-XAtq', '-h', b.socketDir, '-p', String(b.port), '-U', 'app', '-d', 'app', '-w', '-c', 'select 6 * 7'],
    { env: pgEnv({ PGPASSWORD: 'apppass' }), timeoutMs: 15_000 });
  assert.equal(out.trim(), '42');

  const c = track(t, new pg.Client({ host: b.socketDir, port: b.port, user: 'app', password: 'apppass', database: 'app' }));
  await c.connect();
  assert.deepEqual((await c.query<{ u: string; db: string }>('select current_user as u, current_database() as db')).rows, [{ u: 'app', db: 'app' }]);
  await b.waitForLog(/C-\d+: app\/app@unix:0 login attempt/, 3000);

  const noSock = track(t, await pgtideWith(server, { pool_mode: 'transaction', unix_socket_dir: '' }));
  assert.equal(existsSync(join(noSock.socketDir, `.s.PGSQL.${noSock.port}`)), false);
  assert.doesNotMatch(noSock.log(), /listening on unix:/);
  await stillServes(noSock);
});

// ---- autodb_idle_timeout ----

test('autodb_idle_timeout=1: an auto-database is freed once it has no clients and no servers, and comes back for a new client', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', autodb_idle_timeout: 1, server_idle_timeout: 1 },
    `* = host=127.0.0.1 port=${server.port}`));
  const c = await appClient(t, b);
  assert.deepEqual((await c.query('select current_database() as db')).rows, [{ db: 'app' }]);
  await b.waitForLog(/registered new auto-database: app/, 3000);
  // a connected client keeps it, even after its idle server is gone
  await b.waitForLog(/closing because: server idle timeout/, 5000);
  await sleep(1500);
  assert.doesNotMatch(b.log(), /dropping database 'app' as it does not exist anymore or inactive auto-database/);
  assert.deepEqual((await c.query('select 1 as one')).rows, [{ one: 1 }]);
  const mark = b.log().length;
  await c.end();

  await b.waitForLog(/closing because: server idle timeout/, 5000, mark);
  await b.waitForLog(/dropping database 'app' as it does not exist anymore or inactive auto-database/, 5000, mark);

  const again = await appClient(t, b);
  assert.deepEqual((await again.query('select current_database() as db')).rows, [{ db: 'app' }]);
  assert.equal(b.log().match(/registered new auto-database: app/g)?.length, 2);
});

// ---- log_pooler_errors ----

test('log_pooler_errors: 1 (default) logs "pooler error:" for an error sent to a client, 0 does not', async (t) => {
  for (const setting of [undefined, 0] as const) {
    const b = track(t, await pgtideWith(server, setting === undefined ? {} : { log_pooler_errors: setting }));
    const c = new pg.Client({ connectionString: b.url('app', 'apppass', 'settings_nosuchdb') });
    await assert.rejects(c.connect(), (err: PgError) => {
      assert.equal(err.code, '3D000');
      assert.match(err.message, /no such database: settings_nosuchdb/);
      return true;
    });
    await c.end().catch(() => {});
    await b.waitForLog(/closing because: no such database: settings_nosuchdb/, 3000);
    if (setting === undefined) assert.match(b.log(), /WARNING C-\d+: \(nodb\)\/app@127\.0\.0\.1:\d+ pooler error: no such database: settings_nosuchdb/);
    else assert.doesNotMatch(b.log(), /pooler error:/);
    await stillServes(b);
  }
});

// ---- busy_poll_us ----

test('busy_poll_us = 50: 8 clients through 2 servers get every named-statement answer right; SET changes it live, out of range is refused', async (t) => {
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, busy_poll_us: 50, admin_users: 'app' }));
  const configValue = async () => (await consoleRows(b, 'SHOW CONFIG')).find((r) => r.key === 'busy_poll_us')?.value;
  assert.equal(await configValue(), '50');

  const clients = await Promise.all(Array.from({ length: 8 }, () => appClient(t, b)));
  await Promise.all(clients.map(async (c, ci) => {
    for (let i = 0; i < 100; i++) {
      const { rows } = await c.query<{ n: number }>({ name: 'bp_sum', text: 'select $1::int + $2::int as n', values: [ci, i] });
      assert.equal(rows[0]!.n, ci + i);
    }
  }));

  const admin = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'pgbouncer') }));
  await admin.connect();
  assert.equal((await admin.query('SET busy_poll_us = 0')).command, 'SET');
  assert.equal(await configValue(), '0');
  await assert.rejects(admin.query('SET busy_poll_us = 5000'), (e: PgError & { detail?: string }) =>
    e.message === 'SET failed' && /busy_poll_us/.test(e.detail ?? ''));
  assert.equal(await configValue(), '0');
  const { rows } = await clients[0]!.query<{ n: number }>({ name: 'bp_sum', text: 'select $1::int + $2::int as n', values: [40, 2] });
  assert.equal(rows[0]!.n, 42);
});

// Tracked parameters (PgBouncer's varcache) with real drivers: two clients with different startup settings share one
// server in transaction mode and each always sees its own; SETs follow the client; the welcome ParameterStatus set;
// unsupported startup parameters, ignore_startup_parameters and `options=-c …`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import postgres from 'postgres';
import { sharedPostgres } from '../harness/postgres.js';
import { pgtideWith, track, type Pgtide } from '../harness/pgtide.js';
import { stillServes, type Ctx, type PgError } from '../harness/util.js';

/** A pg client that records every ParameterStatus it receives, welcome included. */
function recordingClient(t: Ctx, b: Pgtide, extra: Partial<pg.ClientConfig> = {}): { client: pg.Client; params: Map<string, string>; log: [string, string][] } {
  const client = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app'), ...extra }));
  const params = new Map<string, string>();
  const log: [string, string][] = [];
  client.connection.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) => {
    params.set(m.parameterName, m.parameterValue);
    log.push([m.parameterName, m.parameterValue]);
  });
  return { client, params, log };
}

const SETTINGS_SQL = `select current_setting('TimeZone') as tz, current_setting('DateStyle') as ds,
  current_setting('application_name') as app, current_setting('client_encoding') as enc,
  current_setting('IntervalStyle') as ivs, pg_backend_pid() as pid`;

test('transaction mode, one server: two clients with different startup settings each see their own on every query', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, query_wait_timeout: 5 }));
  const opts = { max: 1, prepare: false, onnotice: () => {} } as const;
  const a = track(t, postgres(b.url('app', 'apppass', 'app'), {
    ...opts,
    connection: { TimeZone: 'Europe/Paris', DateStyle: 'SQL, DMY', application_name: 'client_a', client_encoding: 'LATIN1', IntervalStyle: 'iso_8601' },
  }));
  const c = track(t, postgres(b.url('app', 'apppass', 'app'), {
    ...opts,
    // lower-case keys are matched case-insensitively, like PostgreSQL does
    connection: { timezone: 'Asia/Kolkata', datestyle: 'German', application_name: 'client_b' },
  }));
  type Row = { tz: string; ds: string; app: string; enc: string; ivs: string; pid: number };
  const wantA = { tz: 'Europe/Paris', ds: 'SQL, DMY', app: 'client_a', enc: 'LATIN1', ivs: 'iso_8601' };
  const wantB = { tz: 'Asia/Kolkata', ds: 'German, DMY', app: 'client_b', enc: 'UTF8', ivs: 'postgres' };
  const pids = new Set<number>();
  const check = async (sql: typeof a, want: typeof wantA, i: number) => {
    const [r] = (await sql.unsafe(SETTINGS_SQL)) as unknown as Row[];
    pids.add(r!.pid);
    const { pid: _pid, ...got } = r!;
    assert.deepEqual(got, want, `query ${i}`);
  };
  // interleaved and concurrent: the one server is handed back and forth between the two
  await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? check(a, wantA, i) : check(c, wantB, i))));
  for (let i = 0; i < 5; i++) {
    await check(a, wantA, i);
    await check(c, wantB, i);
  }
  assert.equal(pids.size, 1, 'the two clients should share the single server');
  // values visible in query results, not just in SHOW
  const [ra] = await a.unsafe("select to_char(timestamptz '2024-01-01 12:00:00+00', 'HH24:MI TZ') as t, interval '1 day' :: text as i");
  const [rb] = await c.unsafe("select to_char(timestamptz '2024-01-01 12:00:00+00', 'HH24:MI TZ') as t, date '2024-03-05' :: text as d");
  assert.deepEqual({ ...ra }, { t: '13:00 CET', i: 'P1D' });
  assert.deepEqual({ ...rb }, { t: '17:30 IST', d: '05.03.2024' });
  await stillServes(b);
});

test('SET of a tracked parameter follows the client: ParameterStatus reaches it and later queries on a shared server keep it', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, query_wait_timeout: 5 }));
  const A = recordingClient(t, b, { application_name: 'app_a' });
  const B = recordingClient(t, b, { application_name: 'app_b' });
  await A.client.connect();
  await B.client.connect();
  const tz = async (c: pg.Client) => (await c.query<{ tz: string; app: string }>("select current_setting('TimeZone') as tz, current_setting('application_name') as app")).rows[0]!;

  assert.deepEqual(await tz(A.client), { tz: 'UTC', app: 'app_a' });
  const mark = A.log.length;
  await A.client.query("SET TimeZone = 'Asia/Tokyo'");
  assert.deepEqual(A.log.slice(mark), [['TimeZone', 'Asia/Tokyo']], 'the ParameterStatus of the SET reaches the client');
  await B.client.query("SET application_name = 'app_b2'");
  assert.equal(B.params.get('application_name'), 'app_b2');
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(await tz(A.client), { tz: 'Asia/Tokyo', app: 'app_a' });
    assert.deepEqual(await tz(B.client), { tz: 'UTC', app: 'app_b2' });
  }

  // a SET rolled back is undone for the client too
  await A.client.query('BEGIN');
  await A.client.query("SET TimeZone = 'America/New_York'");
  assert.equal((await tz(A.client)).tz, 'America/New_York');
  await A.client.query('ROLLBACK');
  assert.equal(A.params.get('TimeZone'), 'Asia/Tokyo');
  assert.deepEqual(await tz(B.client), { tz: 'UTC', app: 'app_b2' });
  assert.deepEqual(await tz(A.client), { tz: 'Asia/Tokyo', app: 'app_a' });

  // SET LOCAL lasts for the transaction only
  await B.client.query('BEGIN');
  await B.client.query("SET LOCAL TimeZone = 'Australia/Sydney'");
  assert.equal((await tz(B.client)).tz, 'Australia/Sydney');
  await B.client.query('COMMIT');
  assert.equal((await tz(B.client)).tz, 'UTC');
  assert.equal((await tz(A.client)).tz, 'Asia/Tokyo');

  // RESET goes back to the server default, for this client only
  await A.client.query('RESET TimeZone');
  assert.equal((await tz(A.client)).tz, 'UTC');
  await stillServes(b);
});

test('the welcome carries the server parameters and the client\'s own tracked values', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, query_wait_timeout: 5 }));
  // the first client makes the pool's first server connection; the second gets the welcome without one
  const first = recordingClient(t, b, { options: '-c TimeZone=Europe/Berlin -c DateStyle=ISO,YMD' });
  await first.client.connect();
  const second = recordingClient(t, b, { application_name: 'second' });
  await second.client.connect();
  const serverVersion = await server.psql('SHOW server_version');
  for (const [who, rec] of [['first', first], ['second', second]] as const) {
    const p = rec.params;
    for (const name of ['server_version', 'server_encoding', 'client_encoding', 'DateStyle', 'TimeZone', 'integer_datetimes',
      'standard_conforming_strings', 'application_name', 'IntervalStyle', 'is_superuser', 'session_authorization'])
      assert.ok(p.has(name), `${who}: no ParameterStatus ${name} in the welcome (got ${[...p.keys()].join(', ')})`);
    assert.equal(p.get('server_version'), serverVersion);
    assert.equal(p.get('server_encoding'), 'UTF8');
    assert.equal(p.get('integer_datetimes'), 'on');
    assert.equal(p.get('standard_conforming_strings'), 'on');
    assert.equal(p.get('session_authorization'), 'app');
    // each name once
    assert.equal(rec.log.length, new Set(rec.log.map(([k]) => k)).size, `${who}: duplicate ParameterStatus`);
  }
  assert.equal(first.params.get('TimeZone'), 'Europe/Berlin');
  assert.equal(first.params.get('DateStyle'), 'ISO,YMD');
  assert.equal(first.params.get('application_name'), '');
  assert.equal(second.params.get('TimeZone'), 'UTC');
  assert.equal(second.params.get('DateStyle'), 'ISO, MDY');
  assert.equal(second.params.get('application_name'), 'second');
  const { rows } = await first.client.query<{ tz: string; ds: string }>("select current_setting('TimeZone') as tz, current_setting('DateStyle') as ds");
  assert.deepEqual(rows, [{ tz: 'Europe/Berlin', ds: 'ISO, YMD' }]);
  await stillServes(b);
});

test('unsupported startup parameters are refused unless listed in ignore_startup_parameters; options=-c only for tracked ones', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', query_wait_timeout: 5 }));
  const refused = async (cfg: Partial<pg.ClientConfig>, message: string) => {
    const c = new pg.Client({ connectionString: b.url('app', 'apppass', 'app'), ...cfg });
    c.on('error', () => {});
    try {
      await assert.rejects(c.connect(), (e: PgError) => {
        assert.equal(e.message, message);
        assert.equal(e.code, '08P01');
        assert.equal(e.severity, 'FATAL');
        return true;
      });
    } finally {
      await c.end().catch(() => {});
    }
  };
  await refused({ options: '-c geqo=off' }, 'unsupported startup parameter in options: geqo');
  await refused({ options: '-X' }, "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed");

  // postgres.js puts arbitrary keys in the startup packet
  const pjs = postgres(b.url('app', 'apppass', 'app'), { max: 1, prepare: false, connection: { geqo: 'off' }, onnotice: () => {} });
  await assert.rejects(pjs`select 1`, (e: PgError) => e.message === 'unsupported startup parameter: geqo' && e.code === '08P01');
  await pjs.end({ timeout: 1 });
  await b.waitForLog(/unsupported startup parameter: geqo/);

  // settings in track_set_parameters are refused when the list leaves them out (PgBouncer refuses them all)
  const b0 = track(t, await pgtideWith(server, { pool_mode: 'transaction', query_wait_timeout: 5, track_set_parameters: '' }));
  const refused0 = async (cfg: Partial<pg.ClientConfig>, message: string) => {
    const c = new pg.Client({ connectionString: b0.url('app', 'apppass', 'app'), ...cfg });
    c.on('error', () => {});
    try {
      await assert.rejects(c.connect(), (e: PgError) => e.message === message && e.code === '08P01');
    } finally {
      await c.end().catch(() => {});
    }
  };
  await refused0({ statement_timeout: 1000 }, 'unsupported startup parameter: statement_timeout');
  await refused0({ options: '-c search_path=x' }, 'unsupported startup parameter in options: search_path');

  // tracked ones through options are fine, with -c and with --
  const ok = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app'), options: '-c TimeZone=UTC -c DateStyle=Postgres,DMY --application_name=via_options' }));
  await ok.connect();
  const { rows } = await ok.query<{ tz: string; ds: string; app: string }>(
    "select current_setting('TimeZone') as tz, current_setting('DateStyle') as ds, current_setting('application_name') as app");
  assert.deepEqual(rows, [{ tz: 'UTC', ds: 'Postgres, DMY', app: 'via_options' }]);
  await stillServes(b);

  // listed in ignore_startup_parameters: accepted and ignored (not passed to the server)
  const b2 = track(t, await pgtideWith(server, { pool_mode: 'transaction', query_wait_timeout: 5, ignore_startup_parameters: 'search_path, statement_timeout, options' }));
  const sql = track(t, postgres(b2.url('app', 'apppass', 'app'), { max: 1, prepare: false, connection: { search_path: 'x' }, onnotice: () => {} }));
  const [r] = await sql`select current_setting('search_path') as sp`;
  assert.equal(r!.sp, '"$user", public');
  const c2 = track(t, new pg.Client({ connectionString: b2.url('app', 'apppass', 'app'), statement_timeout: 1000, options: '-c work_mem=1MB' }));
  await c2.connect();
  const { rows: r2 } = await c2.query<{ st: string; wm: string }>("select current_setting('statement_timeout') as st, current_setting('work_mem') as wm");
  assert.deepEqual(r2, [{ st: '0', wm: '4MB' }]);
  await stillServes(b2);
});

test('startup settings in track_set_parameters (node-postgres statement_timeout, PGOPTIONS -c, postgres.js keys) follow the client on a shared server', async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 1, query_wait_timeout: 5 }));
  const url = b.url('app', 'apppass', 'app');
  const timed = track(t, new pg.Client({ connectionString: url, statement_timeout: 200 }));
  const opts = track(t, new pg.Client({ connectionString: url, options: '-c search_path=pg_catalog -c lock_timeout=3s' }));
  const pjs = track(t, postgres(url, { max: 1, prepare: false, connection: { work_mem: '2MB' }, onnotice: () => {} }));
  const plain = track(t, new pg.Client({ connectionString: url }));
  await Promise.all([timed.connect(), opts.connect(), plain.connect()]);
  const SQL = "select current_setting('statement_timeout') as st, current_setting('search_path') as sp, current_setting('lock_timeout') as lt, current_setting('work_mem') as wm, pg_backend_pid() as pid";
  const DEF = { st: '0', sp: '"$user", public', lt: '0', wm: '4MB' };
  const pids = new Set<number>();
  // interleaved on the one server connection: each client sees only its own settings, every time
  for (let i = 0; i < 3; i++) {
    const [a, o, [p], n] = await Promise.all([timed.query(SQL), opts.query(SQL), pjs.unsafe(SQL), plain.query(SQL)]);
    for (const r of [a.rows[0], o.rows[0], p, n.rows[0]]) pids.add(Number(r.pid));
    assert.deepEqual({ ...a.rows[0], pid: 0 }, { ...DEF, st: '200ms', pid: 0 });
    assert.deepEqual({ ...o.rows[0], pid: 0 }, { ...DEF, sp: 'pg_catalog', lt: '3s', pid: 0 });
    assert.deepEqual({ ...p, pid: 0 }, { ...DEF, wm: '2MB', pid: 0 });
    assert.deepEqual({ ...n.rows[0], pid: 0 }, { ...DEF, pid: 0 });
  }
  assert.equal(pids.size, 1, 'all four clients shared one server connection');
  // and the timeout works
  await assert.rejects(timed.query('select pg_sleep(2)'), (e: PgError) => e.code === '57014');
  assert.equal((await plain.query('select 1 as one from pg_sleep(0.3)')).rows[0].one, 1);

  // a value PostgreSQL rejects: the login succeeds (the value is checked when applied), the first query fails
  // with PostgreSQL's error, and the pooler serves everyone else
  const bad = new pg.Client({ connectionString: url, options: '-c statement_timeout=soon' });
  bad.on('error', () => {});
  await bad.connect();
  await assert.rejects(bad.query('select 1'), (e: PgError) => {
    assert.equal(e.code, '22023', e.message);
    assert.match(e.message, /statement_timeout/);
    return true;
  });
  await bad.end().catch(() => {});
  await b.waitForLog(/varcache_apply failed: invalid value for parameter "statement_timeout"/);
  assert.equal((await plain.query('select 1 as one')).rows[0].one, 1);
  await stillServes(b);
});

// Admin console (database `pgbouncer`): access rules, the read-only SHOW commands with PgBouncer's columns, counts
// that match the connections the test opened, statistics, and the seed's psql monitoring command.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { sharedPostgres, pgBin, pgEnv, run, type PgServer } from '../harness/postgres.js';
import { startPgtide, iniFor, track, DEFAULT_USERLIST, type Pgtide } from '../harness/pgtide.js';
import { sleep, waitFor, type PgError } from '../harness/util.js';

type Row = Record<string, unknown>;

// ---- PgBouncer master's columns, in order (docs/admin.md) ----

const CLIENT_COLUMNS = [
  'type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time',
  'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls', 'application_name',
  'prepared_statements', 'id',
];

const EXPECTED_COLUMNS: Record<string, string[]> = {
  POOLS: [
    'database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active',
    'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us',
    'pool_mode', 'load_balance_hosts',
  ],
  CLIENTS: [...CLIENT_COLUMNS, 'pinned'], // pgtide adds `pinned` at the end (docs/admin.md)
  SERVERS: CLIENT_COLUMNS,
  SOCKETS: [...CLIENT_COLUMNS, 'recv_pos', 'pkt_pos', 'pkt_remain', 'send_pos', 'send_remain', 'pkt_avail', 'send_avail'],
  ACTIVE_SOCKETS: [...CLIENT_COLUMNS, 'recv_pos', 'pkt_pos', 'pkt_remain', 'send_pos', 'send_remain', 'pkt_avail', 'send_avail'],
  STATS: [
    'database', 'total_server_assignment_count', 'total_xact_count', 'total_query_count', 'total_received',
    'total_sent', 'total_xact_time', 'total_query_time', 'total_wait_time', 'total_client_parse_count',
    'total_server_parse_count', 'total_bind_count', 'total_client_login_count', 'avg_server_assignment_count',
    'avg_xact_count', 'avg_query_count', 'avg_recv', 'avg_sent', 'avg_xact_time', 'avg_query_time', 'avg_wait_time',
    'avg_client_parse_count', 'avg_server_parse_count', 'avg_bind_count', 'avg_client_login_count',
  ],
  STATS_TOTALS: [
    'database', 'server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time',
    'query_time', 'wait_time', 'client_parse_count', 'server_parse_count', 'bind_count', 'client_login_count',
  ],
  STATS_AVERAGES: [
    'database', 'server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time',
    'query_time', 'wait_time', 'avg_client_parse_count', 'avg_server_parse_count', 'avg_bind_count',
    'avg_client_login_count',
  ],
  TOTALS: ['name', 'value'],
  LISTS: ['list', 'items'],
  DATABASES: [
    'name', 'host', 'port', 'database', 'force_user', 'pool_size', 'min_pool_size', 'reserve_pool_size',
    'server_lifetime', 'pool_mode', 'load_balance_hosts', 'max_connections', 'current_connections',
    'max_client_connections', 'current_client_connections', 'paused', 'disabled',
  ],
  USERS: [
    'name', 'pool_size', 'reserve_pool_size', 'pool_mode', 'max_user_connections', 'current_connections',
    'max_user_client_connections', 'current_client_connections',
  ],
  CONFIG: ['key', 'value', 'default', 'changeable'],
  MEM: ['name', 'size', 'used', 'free', 'memtotal'],
  FDS: [
    'fd', 'task', 'user', 'database', 'addr', 'port', 'cancel', 'link', 'client_encoding', 'std_strings', 'datestyle',
    'timezone', 'password', 'scram_client_key', 'scram_server_key',
  ],
  DNS_HOSTS: ['hostname', 'ttl', 'addrs'],
  DNS_ZONES: ['zonename', 'serial', 'count'],
  STATE: ['key', 'value'],
  VERSION: ['version'],
  PEERS: ['peer_id', 'host', 'port', 'pool_size'],
  PEER_POOLS: ['peer_id', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active_cancel', 'sv_login'],
};

/** Type OIDs PgBouncer 1.18 reports (checked against the installed binary): int4, numeric stats, text. */
const EXPECTED_TYPES: Record<string, Record<string, number>> = {
  POOLS: { database: 25, cl_active: 23, maxwait_us: 23, pool_mode: 25 },
  CLIENTS: { port: 23, ptr: 25, remote_pid: 23, id: 20 },
  STATS: { database: 25, total_xact_count: 1700, avg_wait_time: 1700 },
  TOTALS: { value: 1700 },
  LISTS: { items: 23 },
  FDS: { cancel: 20, scram_client_key: 17 },
  DNS_HOSTS: { ttl: 20 },
};

let server: PgServer;
let bouncer: Pgtide;
let admin: pg.Client;
const USERLIST = `${DEFAULT_USERLIST}"pgbouncer" "adminpass"\n"statuser" "statpass"\n`;

async function adminClient(user = 'pgbouncer', password = 'adminpass'): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: bouncer.port, user, password, database: 'pgbouncer' });
  await c.connect();
  return c;
}

async function show(what: string, c: pg.Client = admin): Promise<Row[]> {
  return (await c.query<Row>(`SHOW ${what};`)).rows;
}

function appClient(app?: string): pg.Client {
  return new pg.Client({ connectionString: bouncer.url('app', 'apppass', 'app'), application_name: app });
}

before(async () => {
  server = await sharedPostgres();
  bouncer = await startPgtide({
    pg: server,
    files: { 'userlist.txt': USERLIST },
    ini: (ctx) =>
      iniFor(ctx, {
        databases: `app = host=127.0.0.1 port=${ctx.pg.port} dbname=app pool_size=1`,
        settings: {
          admin_users: 'pgbouncer',
          stats_users: 'statuser',
          pool_mode: 'transaction',
          default_pool_size: 7,
          stats_period: 1,
        },
      }),
  });
  admin = await adminClient();
});

after(async () => {
  await admin?.end().catch(() => {});
  await bouncer?.stop();
});

test('every SHOW returns PgBouncer master column list', async () => {
  for (const [what, cols] of Object.entries(EXPECTED_COLUMNS)) {
    const r = await admin.query({ text: `SHOW ${what}`, rowMode: 'array' });
    assert.deepEqual(r.fields.map((f) => f.name), cols, `SHOW ${what}`);
    for (const [name, oid] of Object.entries(EXPECTED_TYPES[what] ?? {})) {
      assert.equal(r.fields.find((f) => f.name === name)?.dataTypeID, oid, `SHOW ${what}: type of ${name}`);
    }
  }
  // lower case, SELECT alias, trailing semicolon
  assert.deepEqual((await admin.query('select version;')).rows, (await admin.query('SHOW VERSION')).rows);
});

test('SHOW VERSION, HELP, STATE and the fake settings', async () => {
  const { rows } = await admin.query<{ version: string }>('SHOW VERSION');
  const cli = await run(process.execPath, [new URL('../../dist/cli.js', import.meta.url).pathname, '--version']);
  assert.equal(rows[0]!.version, cli.split('\n')[0]);
  const notices: string[] = [];
  const onNotice = (n: { message?: string }) => void notices.push(n.message ?? "");
  admin.on('notice', onNotice);
  const help = await admin.query('SHOW HELP');
  admin.off('notice', onNotice);
  assert.equal(help.command, 'SHOW');
  assert.deepEqual(notices, ['Console usage']);
  assert.deepEqual(await show('STATE'), [
    { key: 'active', value: 'yes' },
    { key: 'paused', value: 'no' },
    { key: 'suspended', value: 'no' },
  ]);
  assert.deepEqual(await show('client_encoding'), [{ client_encoding: 'UTF-8' }]);
  assert.deepEqual(await show('TimeZone'), [{ timezone: 'GMT' }]);
  const set = await admin.query('SET client_encoding = utf8');
  assert.equal(set.command, 'SET');
});

test('users outside admin_users/stats_users are refused before any password request', async () => {
  for (const password of ['apppass', 'wrong']) {
    const c = new pg.Client({ host: '127.0.0.1', port: bouncer.port, user: 'app', password, database: 'pgbouncer' });
    await assert.rejects(c.connect(), (e: PgError) => e.message === 'not allowed' && e.code === '28000' && e.severity === 'FATAL');
  }
  // an admin user still needs the right password
  const bad = new pg.Client({ host: '127.0.0.1', port: bouncer.port, user: 'pgbouncer', password: 'nope', database: 'pgbouncer' });
  await assert.rejects(bad.connect(), (e: PgError) => /password authentication failed/.test(e.message));
});

test('stats_users may SHOW but not run admin commands; errors keep the connection', async (t) => {
  const c = track(t, await adminClient('statuser', 'statpass'));
  assert.ok((await show('POOLS', c)).length > 0);
  await assert.rejects(c.query('SHOW FDS'), (e: PgError) => e.message === 'admin access needed' && e.severity === 'ERROR');
  await assert.rejects(c.query('PAUSE'), (e: PgError) => e.message === 'admin access needed');
  await assert.rejects(c.query('NO SUCH THING'), (e: PgError) => e.message === "invalid command 'NO SUCH THING', use SHOW HELP;");
  await assert.rejects(c.query('SHOW NOTHING'), (e: PgError) => e.message === "invalid command 'SHOW NOTHING', use SHOW HELP;");
  // extended protocol is refused with an ERROR, then the connection goes on
  await assert.rejects(c.query({ text: 'SHOW POOLS', values: [1] }), (e: PgError) => /extended query protocol/.test(e.message));
  assert.equal((await show('VERSION', c)).length, 1);
  // the admin user gets the same clear error for an unknown command
  await assert.rejects(admin.query('FROB'), (e: PgError) => e.message === "invalid command 'FROB', use SHOW HELP;");
  assert.equal((await show('VERSION')).length, 1);
});

test('SHOW POOLS, CLIENTS and SERVERS match the connections opened', async (t) => {
  const holder = track(t, appClient('holder'));
  const idle = track(t, appClient('idler'));
  const waiter = track(t, appClient('waiter'));
  await holder.connect();
  await idle.connect();
  await waiter.connect();
  await holder.query('BEGIN');
  const { rows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const pid = rows[0]!.pid;
  const waiting = waiter.query('SELECT 1 AS one');

  const pool = await waitFor('a waiting client in SHOW POOLS', async () =>
    (await show('POOLS')).find((r) => r.database === 'app' && r.user === 'app' && r.cl_waiting === 1),
  );
  assert.equal(pool.cl_active, 2); // the holder (linked) and the idle client
  assert.equal(pool.cl_waiting, 1);
  assert.equal(pool.sv_active, 1);
  assert.equal(pool.sv_idle, 0);
  assert.equal(pool.sv_used, 0);
  assert.equal(pool.sv_login, 0);
  assert.equal(pool.pool_mode, 'transaction');
  assert.ok((pool.maxwait as number) >= 0 && (pool.maxwait_us as number) >= 0);
  await sleep(30);
  const later = (await show('POOLS')).find((r) => r.database === 'app')!;
  assert.ok((later.maxwait as number) * 1e6 + (later.maxwait_us as number) > 0, 'maxwait grows while the client waits');

  const clients = (await show('CLIENTS')).filter((r) => r.database === 'app');
  const byApp = new Map(clients.map((r) => [r.application_name, r]));
  assert.equal(clients.length, 3);
  assert.equal(byApp.get('holder')!.state, 'active');
  assert.equal(byApp.get('idler')!.state, 'idle');
  assert.equal(byApp.get('waiter')!.state, 'waiting');
  for (const r of clients) {
    assert.equal(r.type, 'C');
    assert.equal(r.user, 'app');
    assert.equal(r.addr, '127.0.0.1');
    assert.equal(r.local_port, bouncer.port);
    assert.match(r.connect_time as string, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    assert.match(r.ptr as string, /^0x[0-9a-f]+$/);
  }
  assert.equal(byApp.get('idler')!.link, '');

  const servers = (await show('SERVERS')).filter((r) => r.database === 'app');
  assert.equal(servers.length, 1);
  const s = servers[0]!;
  assert.equal(s.type, 'S');
  assert.equal(s.state, 'active');
  assert.equal(s.remote_pid, pid);
  assert.equal(s.port, server.port);
  assert.equal(s.link, byApp.get('holder')!.ptr);
  assert.equal(byApp.get('holder')!.link, s.ptr);
  const admins = (await show('CLIENTS')).filter((r) => r.database === 'pgbouncer');
  assert.ok(admins.length >= 1, 'the console client itself is listed');

  await holder.query('COMMIT');
  assert.deepEqual((await waiting).rows, [{ one: 1 }]);
  const after = await waitFor('the pool to settle', async () =>
    (await show('POOLS')).find((r) => r.database === 'app' && r.cl_waiting === 0 && r.sv_idle === 1),
  );
  assert.equal(after.sv_active, 0);
});

test('SHOW CONFIG, DATABASES, USERS and LISTS reflect the configuration', async () => {
  const config = await show('CONFIG');
  const row = (key: string) => config.find((r) => r.key === key);
  assert.deepEqual(row('default_pool_size'), { key: 'default_pool_size', value: '7', default: '20', changeable: 'yes' });
  assert.deepEqual(row('admin_users'), { key: 'admin_users', value: 'pgbouncer', default: '', changeable: 'yes' });
  assert.equal(row('auth_file')!.default, null);
  assert.equal(row('listen_port')!.changeable, 'no');
  const keys = config.map((r) => r.key as string);
  assert.deepEqual(keys, [...keys].sort(), 'table (alphabetical) order');

  const dbs = await show('DATABASES');
  const app = dbs.find((r) => r.name === 'app')!;
  assert.equal(app.host, '127.0.0.1');
  assert.equal(app.port, server.port);
  assert.equal(app.database, 'app');
  assert.equal(app.force_user, null);
  assert.equal(app.pool_size, 1);
  assert.equal(app.paused, 0);
  assert.equal(app.disabled, 0);
  const console = dbs.find((r) => r.name === 'pgbouncer')!;
  assert.equal(console.pool_mode, 'statement');

  const users = await show('USERS');
  assert.ok(users.some((r) => r.name === 'statuser'));
  const lists = new Map((await show('LISTS')).map((r) => [r.list, r.items]));
  assert.deepEqual([...lists.keys()], [
    'databases', 'users', 'peers', 'pools', 'peer_pools', 'free_clients', 'used_clients', 'login_clients',
    'free_servers', 'used_servers', 'dns_names', 'dns_zones', 'dns_queries', 'dns_pending',
  ]);
  assert.ok((lists.get('used_clients') as number) >= 1);
});

test('SHOW STATS totals grow with queries, averages follow stats_period', async (t) => {
  const stat = async () => (await show('STATS')).find((r) => r.database === 'app');
  const before = (await stat()) ?? { total_xact_count: '0', total_query_count: '0' };
  const c = track(t, appClient());
  await c.connect();
  for (let i = 0; i < 10; i++) await c.query('SELECT 1');
  await c.query('BEGIN');
  await c.query('SELECT 1');
  await c.query('COMMIT');
  const now = (await stat())!;
  assert.ok(Number(now.total_xact_count) >= Number(before.total_xact_count) + 11, `xacts: ${JSON.stringify(now)}`);
  assert.ok(Number(now.total_query_count) >= Number(before.total_query_count) + 13, `queries: ${JSON.stringify(now)}`);
  assert.ok(Number(now.total_received) > 0 && Number(now.total_sent) > 0);
  const totals = new Map((await show('STATS_TOTALS')).map((r) => [r.database, r]));
  assert.equal(totals.get('app')!.xact_count, now.total_xact_count);

  // keep querying until a stats_period (1 s) has averaged some of it
  let done = false;
  const load = (async () => {
    while (!done) await c.query('SELECT 1');
  })();
  try {
    const avg = await waitFor('non-zero averages', async () => {
      const r = (await show('STATS_AVERAGES')).find((x) => x.database === 'app');
      return r && Number(r.query_count) > 0 ? r : undefined;
    }, 5000, 100);
    assert.ok(Number(avg.xact_count) > 0);
    const totalsRows = new Map((await show('TOTALS')).map((r) => [r.name, r.value]));
    assert.ok(Number(totalsRows.get('total_query_count')) >= Number(now.total_query_count));
    assert.ok(totalsRows.has('avg_query_count'));
  } finally {
    done = true;
    await load;
  }
});

test("the seed's monitoring command: psql -U pgbouncer -d pgbouncer -c 'SHOW POOLS;'", async () => {
  const out = await run(pgBin('psql'), ['-h', '127.0.0.1', '-p', String(bouncer.port), '-U', 'pgbouncer', '-d', 'pgbouncer', '-c', 'SHOW POOLS;'], {
    env: pgEnv({ PGPASSWORD: 'adminpass' }),
  });
  const header = out.split('\n')[0]!.split('|').map((s) => s.trim());
  assert.deepEqual(header, EXPECTED_COLUMNS.POOLS);
  assert.match(out, /\bapp\s*\|\s*app\s*\|/);
  for (const cmd of ['SHOW CLIENTS;', 'SHOW SERVERS;']) {
    const o = await run(pgBin('psql'), ['-h', '127.0.0.1', '-p', String(bouncer.port), '-U', 'pgbouncer', '-d', 'pgbouncer', '-c', cmd], {
      env: pgEnv({ PGPASSWORD: 'adminpass' }),
    });
    assert.match(o, /^ type \|\s+user\s+\|/);
  }
});

test('auth_type=any lets any user in with read-only rights unless in admin_users', async (t) => {
  const b = track(t, await startPgtide({
    pg: server,
    ini: (ctx) => iniFor(ctx, {
      databases: `app = host=127.0.0.1 port=${ctx.pg.port} dbname=app user=app password=apppass`,
      settings: { auth_type: 'any', admin_users: 'boss' },
    }),
  }));
  const c = track(t, new pg.Client({ host: '127.0.0.1', port: b.port, user: 'anyone', database: 'pgbouncer' }));
  await c.connect();
  assert.equal((await c.query('SHOW VERSION')).rows.length, 1);
  await assert.rejects(c.query('SHOW FDS'), (e: PgError) => e.message === 'admin access needed');
  const boss = track(t, new pg.Client({ host: '127.0.0.1', port: b.port, user: 'boss', database: 'pgbouncer' }));
  await boss.connect();
  assert.equal((await boss.query('SHOW FDS')).rows.length, 0);
});

// The Prometheus endpoint (metrics_port): GET /metrics answers with the console's figures under
// pgbouncer_exporter's metric names and pgtide's own (pins and refusals by reason), agrees with SHOW POOLS and
// SHOW STATS_TOTALS, sums every worker's figures with workers = 2, answers bad requests with 404/405/400 while the
// pooler goes on serving, and a metrics port that cannot be bound stops the start with a clear error.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { freePort, sharedPostgres } from '../harness/postgres.js';
import { iniFor, startPgtide, track, type Pgtide } from '../harness/pgtide.js';
import { appClient, consoleRows, stillServes, waitFor, type Ctx, type PgError } from '../harness/util.js';
import { Pooler } from '../../src/index.js';

/** One sample of the text format: name, labels, value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the sample with this name whose labels include `labels`; fails unless exactly one matches. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.equal(hits.length, 1, `${name}${JSON.stringify(labels)}: ${hits.length} samples`);
  return hits[0]!.value;
}

async function scrape(port: number, path = '/metrics', init: RequestInit = {}): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}${path}`, init);
}

async function metrics(port: number): Promise<Sample[]> {
  const res = await scrape(port);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parse(await res.text());
}

/** pgtide in transaction mode with the metrics endpoint on a free port. */
async function withMetrics(t: Ctx, settings: Record<string, string | number> = {}): Promise<{ b: Pgtide; port: number }> {
  const server = await sharedPostgres();
  const port = await freePort();
  const b = track(t, await startPgtide({
    pg: server,
    ini: (ctx) => iniFor(ctx, { settings: { pool_mode: 'transaction', admin_users: 'app', default_pool_size: 4, metrics_port: port, ...settings } }),
  }));
  return { b, port };
}

/** A raw HTTP exchange: what the server answers to `request` before it closes or 2 s pass. */
function rawHttp(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve(got);
    }, 2000);
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.on('error', reject);
    s.write(request);
  });
}

test('GET /metrics: pool, stats, database and list figures under pgbouncer_exporter names, equal to the console', { timeout: 60_000 }, async (t) => {
  const { b, port } = await withMetrics(t);
  const clients = await Promise.all([appClient(t, b), appClient(t, b), appClient(t, b)]);
  for (const c of clients) for (let i = 0; i < 5; i++) await c.query('select 1');
  await clients[0]!.query('begin');
  await clients[0]!.query('select 2');
  await clients[0]!.query('commit');

  const s = await metrics(port);
  const pools = (await consoleRows(b, 'SHOW POOLS')).find((r) => r.database === 'app')!;
  const totals = (await consoleRows(b, 'SHOW STATS_TOTALS')).find((r) => r.database === 'app')!;
  const app = { database: 'app', user: 'app' };
  assert.equal(value(s, 'pgbouncer_up'), 1);
  assert.equal(value(s, 'pgbouncer_pools_client_active_connections', app), 3);
  for (const [col, name] of [
    ['cl_active', 'client_active_connections'], ['cl_waiting', 'client_waiting_connections'], ['sv_active', 'server_active_connections'],
    ['sv_idle', 'server_idle_connections'], ['sv_used', 'server_used_connections'], ['sv_login', 'server_login_connections'],
  ] as const)
    assert.equal(value(s, `pgbouncer_pools_${name}`, app), Number(pools[col]), col);
  // the console's query ran after the scrape but counts in the admin pool, not in app's
  assert.equal(value(s, 'pgbouncer_stats_queries_pooled_total', { database: 'app' }), Number(totals.query_count));
  assert.equal(value(s, 'pgbouncer_stats_sql_transactions_pooled_total', { database: 'app' }), Number(totals.xact_count));
  assert.ok(Number(totals.query_count) >= 18, `query_count ${String(totals.query_count)}`);
  assert.equal(value(s, 'pgbouncer_stats_received_bytes_total', { database: 'app' }), Number(totals.bytes_received));
  assert.equal(value(s, 'pgbouncer_stats_queries_duration_seconds_total', { database: 'app' }), Number(totals.query_time) / 1e6);
  assert.equal(value(s, 'pgtide_client_logins_total', { database: 'app' }), 3);
  assert.equal(value(s, 'pgbouncer_databases_pool_size', { name: 'app', pool_mode: '' }), 4);
  assert.equal(value(s, 'pgbouncer_databases_current_connections', { name: 'app' }), Number(pools.sv_active) + Number(pools.sv_idle) + Number(pools.sv_used) + Number(pools.sv_tested) + Number(pools.sv_login));
  assert.equal(value(s, 'pgbouncer_used_clients'), 3);
  assert.equal(value(s, 'pgbouncer_config_max_client_connections'), 100);
  assert.match(s.find((x) => x.name === 'pgbouncer_version_info')!.labels.version!, /^pgtide /);
  // a single process adds its own process metrics
  assert.ok(value(s, 'process_cpu_user_seconds_total') > 0);
  assert.equal(value(s, 'pgtide_session_state_pinned_clients', app), 0);

  // a client that leaves takes its series' value with it at the next scrape
  await clients[2]!.end();
  await waitFor('the client to be gone', async () => value(await metrics(port), 'pgbouncer_pools_client_active_connections', app) === 2 || null);
  const typeLines = (await (await scrape(port)).text()).split('\n').filter((l) => l.startsWith('# TYPE pgbouncer_stats_queries_pooled_total'));
  assert.deepEqual(typeLines, ['# TYPE pgbouncer_stats_queries_pooled_total counter']);
});

test('pins and refusals show their reason in the metrics (advisory lock, SET, temporary table), as in SHOW SESSION_STATE_REASONS', { timeout: 60_000 }, async (t) => {
  const { b, port } = await withMetrics(t);
  const app = { database: 'app', user: 'app' };
  const locker = await appClient(t, b);
  const before = await metrics(port);
  // every category of a pool is there from its first client on, at 0
  for (const reason of ['set', 'advisory_lock', 'with_hold_cursor', 'sql_prepare', 'temp_table', 'listen', 'load']) {
    assert.equal(value(before, 'pgtide_session_state_pin_reasons_total', { ...app, reason }), 0, reason);
    assert.equal(value(before, 'pgtide_session_state_refusal_reasons_total', { ...app, reason }), 0, reason);
  }

  await locker.query('select pg_advisory_lock(7301)');
  const setter = await appClient(t, b);
  await setter.query('SET enable_seqscan = off');
  await waitFor('both clients pinned', async () => value(await metrics(port), 'pgtide_session_state_pinned_clients', app) === 2 || null);

  const admin = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'pgbouncer') }));
  await admin.connect();
  await admin.query("SET session_state_policy = 'refuse'");
  const refused = await appClient(t, b);
  const err = await refused.query('CREATE TEMP TABLE tmp_metrics (x int)').then(() => null, (e: PgError) => e);
  assert.equal(err?.code, '0A000');
  assert.match(err!.message, /CREATE TEMP is not allowed in transaction pooling/);

  const s = await metrics(port);
  assert.equal(value(s, 'pgtide_session_state_pins_total', app), 2);
  assert.equal(value(s, 'pgtide_session_state_pin_reasons_total', { ...app, reason: 'advisory_lock' }), 1);
  assert.equal(value(s, 'pgtide_session_state_pin_reasons_total', { ...app, reason: 'set' }), 1);
  assert.equal(value(s, 'pgtide_session_state_pin_reasons_total', { ...app, reason: 'temp_table' }), 0);
  assert.equal(value(s, 'pgtide_session_state_refusals_total', app), 1);
  assert.equal(value(s, 'pgtide_session_state_refusal_reasons_total', { ...app, reason: 'temp_table' }), 1);
  assert.equal(value(s, 'pgtide_session_state_refusal_reasons_total', { ...app, reason: 'set' }), 0);

  const rows = (await admin.query('SHOW SESSION_STATE_REASONS')).rows.filter((r) => r.database === 'app');
  assert.deepEqual(
    rows.map((r) => `${r.action} ${r.reason} ${r.count}`).sort(),
    ['pin advisory_lock 1', 'pin set 1', 'refuse temp_table 1'],
  );
  await locker.query('select pg_advisory_unlock(7301)');
});

test('bad requests to the metrics port get 404, 405 or 400, and the pooler goes on serving', { timeout: 30_000 }, async (t) => {
  const { b, port } = await withMetrics(t);
  assert.equal((await scrape(port, '/')).status, 404);
  assert.equal((await scrape(port, '/metricsx')).status, 404);
  const post = await scrape(port, '/metrics', { method: 'POST', body: 'x' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  const head = await scrape(port, '/metrics', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), '');
  assert.equal((await scrape(port, '/metrics?name[]=x')).status, 200);
  assert.match(await rawHttp(port, 'NOT HTTP AT ALL\r\n\r\n'), /^HTTP\/1\.1 400 /);
  assert.match(await rawHttp(port, `GET /metrics HTTP/1.1\r\nHost: x\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`), /^HTTP\/1\.1 431 /);
  // the PostgreSQL protocol on the metrics port is not HTTP either
  assert.match(await rawHttp(port, '\x00\x00\x00\x08\x04\xd2\x16\x2f'), /^HTTP\/1\.1 400 /);
  await stillServes(b);
  assert.equal(value(await metrics(port), 'pgbouncer_up'), 1);
});

test('a metrics_port that cannot be bound stops the start with an error naming it', { timeout: 30_000 }, async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => blocker.close(() => r())));
  const taken = (blocker.address() as net.AddressInfo).port;
  const server = await sharedPostgres();
  const b = track(t, await startPgtide({ pg: server, expectExit: true, ini: (ctx) => iniFor(ctx, { settings: { metrics_port: taken } }) }));
  assert.equal(await b.exited, 1);
  assert.match(b.log(), new RegExp(`cannot listen for metrics on 127\\.0\\.0\\.1:${taken}: .*EADDRINUSE`));
});

test('workers = 2: one scrape answers for both workers (figures summed as in SHOW POOLS)', { timeout: 60_000 }, async (t) => {
  const { b, port } = await withMetrics(t, { workers: 2 });
  await b.waitForLog(/LOG process up: .*, 2 workers/, 10_000);
  type Keyed = pg.Client & { processID: number };
  const clients: Keyed[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < 40 && (seen.size < 2 || clients.length < 6); i++) {
    const c = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app') })) as Keyed;
    await c.connect();
    await c.query('select 1');
    seen.add(c.processID >>> 24);
    clients.push(c);
  }
  assert.deepEqual([...seen].sort(), [1, 2], 'clients on both workers');
  const app = { database: 'app', user: 'app' };
  // whichever worker answers a scrape, it counts every worker's clients and queries
  for (let i = 0; i < 6; i++) {
    const s = await metrics(port);
    assert.equal(value(s, 'pgbouncer_pools_client_active_connections', app), clients.length);
    assert.equal(value(s, 'pgbouncer_stats_queries_pooled_total', { database: 'app' }), clients.length);
    assert.equal(value(s, 'pgbouncer_used_clients'), clients.length);
    // per-process metrics would depend on which worker answered: left out
    assert.equal(s.filter((x) => x.name.startsWith('process_')).length, 0);
  }
  // a client pinned on each worker: the reasons are summed too
  const w1 = clients.find((c) => c.processID >>> 24 === 1)!;
  const w2 = clients.find((c) => c.processID >>> 24 === 2)!;
  await w1.query('select pg_advisory_lock(7401)');
  await w2.query('select pg_advisory_lock(7402)');
  await waitFor('both pinned', async () => value(await metrics(port), 'pgtide_session_state_pinned_clients', app) === 2 || null);
  for (let i = 0; i < 4; i++) {
    const s = await metrics(port);
    assert.equal(value(s, 'pgtide_session_state_pin_reasons_total', { ...app, reason: 'advisory_lock' }), 2);
    assert.equal(value(s, 'pgtide_session_state_pin_reasons_total', { ...app, reason: 'set' }), 0);
  }
  await w1.query('select pg_advisory_unlock(7401)');
  await w2.query('select pg_advisory_unlock(7402)');
});

test('library: pooler.metrics() gives the same text without an endpoint; listen() names the metrics listeners', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const pooler = track(t, new Pooler({
    databases: { app: { host: '127.0.0.1', port: server.port, dbname: 'app' } },
    settings: { listen_addr: '127.0.0.1', listen_port: 0, unix_socket_dir: '', pool_mode: 'transaction', auth_type: 'md5' },
    auth: { users: [{ name: 'app', password: 'apppass' }] },
  }));
  const info = await pooler.listen();
  assert.deepEqual(info.metrics, []);
  const c = track(t, new pg.Client({ connectionString: pooler.url('app', 'apppass', 'app') }));
  await c.connect();
  await c.query('select 1');
  const s = parse(await pooler.metrics());
  assert.equal(value(s, 'pgbouncer_pools_client_active_connections', { database: 'app', user: 'app' }), 1);
  assert.equal(value(s, 'pgbouncer_stats_queries_pooled_total', { database: 'app' }), 1);
  assert.equal(s.filter((x) => x.name.startsWith('process_')).length, 0);
  // docs/metrics.md's tables name exactly the metrics there are
  const exposed = (await pooler.metrics()).split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]!).sort();
  const doc = readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8');
  const documented = [...new Set([...doc.matchAll(/^\| `((?:pgbouncer|pgtide)_[a-z_]+)` \|/gm)].map((m) => m[1]!))].sort();
  assert.deepEqual(documented, exposed);

  const port = await freePort();
  const withPort = track(t, new Pooler({
    databases: { app: { host: '127.0.0.1', port: server.port, dbname: 'app' } },
    settings: { listen_addr: '127.0.0.1', listen_port: 0, unix_socket_dir: '', metrics_port: port },
    auth: { users: [{ name: 'app', password: 'apppass' }] },
  }));
  assert.deepEqual((await withPort.listen()).metrics, [`127.0.0.1:${port}`]);
  assert.equal(value(await metrics(port), 'pgbouncer_up'), 1);
  await withPort.close();
  await assert.rejects(scrape(port), 'closed with the pooler');
});

test('a metrics client that sends nothing, or never ends its headers, is answered 408 and dropped after 10 s', { timeout: 40_000 }, async (t) => {
  const { b, port } = await withMetrics(t);
  const t0 = Date.now();
  const dropped = (write: string) =>
    new Promise<{ ms: number; got: string }>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      s.on('connect', () => { if (write) s.write(write); });
      s.on('data', (d) => (got += d.toString('latin1')));
      s.on('close', () => resolve({ ms: Date.now() - t0, got }));
      s.on('error', reject);
    });
  const silent = dropped('');
  const slow = dropped('GET /metrics HTTP/1.1\r\nHost: x\r\n');
  // meanwhile the endpoint and the pooler serve everyone else
  assert.equal(value(await metrics(port), 'pgbouncer_up'), 1);
  await stillServes(b);
  for (const r of await Promise.all([silent, slow])) {
    assert.match(r.got, /^HTTP\/1\.1 408 /);
    assert.ok(r.ms >= 9_500 && r.ms < 20_000, `dropped after ${r.ms} ms`);
  }
});

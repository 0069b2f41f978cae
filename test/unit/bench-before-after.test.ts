/* pgtide bench --before-after, the pure parts: arguments, the URL, pgbench's output and logs, the temporary pgtide's
 * files (read back by pgtide's own config loader), and the report's rows and Markdown. */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { UsageError } from '../../src/cli/args.js';
import { DEFAULT_LEVELS, parseBenchArgs } from '../../src/cli/bench-args.js';
import { parseConfigText } from '../../src/config/loader.js';
import { parseProgress, parseSummary, percentile, readLatencies, summarizeErrors } from '../../src/bench/pgbench.js';
import { comparisonPoint, gain, markdownTable, renderReport, seedRows, servedUsers, type StepResult } from '../../src/bench/report.js';
import { isLocalAddress, parseTarget, redact, TargetError } from '../../src/bench/target.js';
import { poolerIni, userlistLine } from '../../src/bench/temp-pooler.js';

const tmp = mkdtempSync(join(tmpdir(), 'pgtide-bench-unit-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('pgtide bench arguments', () => {
  it('defaults: the levels 10…1000, 10 s, the seed pool size and md5', () => {
    const a = parseBenchArgs(['--before-after', 'postgres://u:p@h/d']);
    assert.equal(a.beforeAfter, true);
    assert.equal(a.url, 'postgres://u:p@h/d');
    assert.deepEqual(a.clients, DEFAULT_LEVELS);
    assert.deepEqual(DEFAULT_LEVELS, [10, 50, 100, 200, 500, 1000]);
    assert.equal(a.seconds, 10);
    assert.equal(a.poolSize, 25);
    assert.equal(a.authType, 'md5');
    assert.equal(a.afterClients, 100);
  });

  it('options in both --name value and --name=value forms; levels sorted and deduplicated', () => {
    const a = parseBenchArgs(['--clients', '50,10,50', '--seconds=1', '--warmup', '0', '--json', 'out.json', '--before-after',
      '--pooled-url=postgres://u:p@h:6432/d', '--pooler-pid', '42', '--auth-type', 'scram-sha-256', '--protocol=extended', 'postgres://u:p@h/d']);
    assert.deepEqual(a.clients, [10, 50]);
    assert.equal(a.seconds, 1);
    assert.equal(a.warmup, 0);
    assert.equal(a.json, 'out.json');
    assert.equal(a.pooledUrl, 'postgres://u:p@h:6432/d');
    assert.equal(a.poolerPid, 42);
    assert.equal(a.authType, 'scram-sha-256');
    assert.equal(a.protocol, 'extended');
  });

  it('bad usage is a UsageError naming the problem', () => {
    for (const [argv, re] of [
      [['--bogus'], /unknown option for pgtide bench: --bogus/],
      [['-x'], /unknown option/],
      [['--seconds', '0'], /--seconds: expected an integer from 1/],
      [['--clients', '10,abc'], /--clients/],
      [['--clients'], /needs a value/],
      [['--auth-type', 'trust'], /expected one of md5, scram-sha-256/],
      [['a', 'b'], /only one PostgreSQL URL/],
      [['--pooler-pid', '5', 'x'], /only goes with --pooled-url/],
    ] as const) {
      assert.throws(() => parseBenchArgs([...argv]), (e: unknown) => e instanceof UsageError && re.test(e.message), argv.join(' '));
    }
    assert.equal(parseBenchArgs(['--help']).help, true);
    assert.equal(parseBenchArgs([]).beforeAfter, false);
  });
});

describe('the PostgreSQL URL', () => {
  it('takes user, password, host, port, database and sslmode; percent-decodes', () => {
    const t = parseTarget('postgresql://app%40x:p%2Fw%40d@db.example:6543/my%20db?sslmode=require&schema=public');
    assert.deepEqual(t, { host: 'db.example', port: 6543, user: 'app@x', password: 'p/w@d', database: 'my db', sslmode: 'require', ignored: [] });
  });

  it('defaults: port 5432, database = user, sslmode prefer; PGPASSWORD as a fallback; sockets via ?host=', () => {
    const t = parseTarget('postgres://app@127.0.0.1', 'secret');
    assert.equal(t.port, 5432);
    assert.equal(t.database, 'app');
    assert.equal(t.password, 'secret');
    assert.equal(t.sslmode, 'prefer');
    const s = parseTarget('postgres://app:pw@/app?host=/var/run/postgresql&port=5433&foo=1');
    assert.equal(s.host, '/var/run/postgresql');
    assert.equal(s.port, 5433);
    assert.deepEqual(s.ignored, ['foo']);
    assert.equal(parseTarget('postgres://app:pw@[::1]:5432/app').host, '::1');
    assert.equal(parseTarget('postgresql:///app?host=/tmp&user=u&password=p').host, '/tmp');
    assert.throws(() => parseTarget('postgres://app:pw@/app'), /names no host/);
  });

  it('refuses what it cannot use, with a clear message', () => {
    for (const [url, re] of [
      ['not a url', /not a URL/],
      ['http://app:pw@h/app', /not a PostgreSQL URL/],
      ['postgres://app@h/app', /no password for user "app"/],
      ['postgres://:pw@h/app', /names no user/],
      ['postgres://app:pw@h:99999/app', /port|not a URL/],
      ['postgres://app:pw@h/app?sslmode=verify-full', /sslmode=verify-full is not supported/],
    ] as const) {
      assert.throws(() => parseTarget(url), (e: unknown) => e instanceof TargetError && re.test(e.message), url);
    }
  });

  it('redacts passwords in messages; knows local addresses', () => {
    assert.equal(redact('postgres://app:s3cret@h:5432/app'), 'postgres://app:***@h:5432/app');
    assert.equal(redact('postgres://app@h/app?password=s3cret&x=1'), 'postgres://app@h/app?password=***&x=1');
    assert.ok(isLocalAddress('127.0.0.1') && isLocalAddress('localhost') && isLocalAddress('::1') && isLocalAddress('/tmp'));
    assert.ok(!isLocalAddress('10.0.0.5') && !isLocalAddress('db.example'));
  });
});

describe("pgbench's output", () => {
  const summary = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: request.sql
scaling factor: 1
query mode: simple
number of clients: 100
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 437
number of failed transactions: 0 (0.000%)
latency average = 860.381 ms
average connection time = 12.169 ms
tps = 139.473130 (including reconnection times)
`;

  it('the summary with -C', () => {
    assert.deepEqual(parseSummary(summary), { tps: 139.47313, tpsNoConnect: undefined, requests: 437, failed: 0, avgConnMs: 12.169, latencyAvgMs: 860.381 });
    assert.deepEqual(parseSummary(''), { tps: undefined, tpsNoConnect: undefined, requests: undefined, failed: undefined, avgConnMs: undefined, latencyAvgMs: undefined });
  });

  it('progress lines', () => {
    assert.deepEqual(parseProgress('progress: 5.0 s, 1811.2 tps, lat 5.521 ms stddev 1.234, 0 failed'), { seconds: 5, tps: 1811.2 });
    assert.equal(parseProgress('pgbench (15.18)'), undefined);
  });

  it('aborted clients and their errors, most frequent first', () => {
    const stderr = [
      'pgbench: error: connection to server at "127.0.0.1", port 26388 failed: FATAL:  remaining connection slots are reserved for non-replication superuser connections',
      'pgbench: error: client 116 aborted while establishing connection',
      'pgbench: error: connection to server at "127.0.0.1", port 26388 failed: FATAL:  remaining connection slots are reserved for non-replication superuser connections',
      'pgbench: error: client 55 aborted while establishing connection',
      'pgbench: error: connection to server at "127.0.0.1", port 26388 failed: FATAL:  sorry, too many clients already',
      'pgbench: error: client 57 aborted while establishing connection',
      'pgbench: error: Run was aborted; the above results are incomplete.',
    ].join('\n');
    assert.deepEqual(summarizeErrors(stderr), {
      aborted: 3,
      messages: ['FATAL: remaining connection slots are reserved for non-replication superuser connections (×2)', 'FATAL: sorry, too many clients already'],
    });
    assert.deepEqual(summarizeErrors(''), { aborted: 0, messages: [] });
  });

  it('per-request latencies from -l files (only the given prefix), and nearest-rank percentiles', () => {
    writeFileSync(join(tmp, 'direct-10-m.123'), '0 0 1500 0 1700000000 1\n1 0 500 0 1700000000 2\n');
    writeFileSync(join(tmp, 'direct-10-m.123.1'), '2 0 2500 0 1700000000 3\n3 0 failed 0 1700000000 4\n\n');
    writeFileSync(join(tmp, 'pooled-10-m.124'), '0 0 99999 0 1700000000 1\n');
    const lat = readLatencies(tmp, 'direct-10-m');
    assert.deepEqual([...lat], [500, 1500, 2500]);
    assert.equal(percentile(lat, 50), 1500);
    assert.equal(percentile(lat, 99), 2500);
    assert.equal(percentile(new Float64Array(0), 99), undefined);
  });
});

describe("the temporary pgtide's files", () => {
  it("pgtide's own loader reads the generated pgbouncer.ini and userlist.txt: the seed's pool settings, no warnings", () => {
    const target = parseTarget('postgres://app%22x:pa%22ss%20word@127.0.0.1:5433/my-db?sslmode=disable');
    writeFileSync(join(tmp, 'userlist.txt'), userlistLine(target.user, target.password));
    const cfg = parseConfigText(poolerIni(tmp, 16432, target, { poolSize: 25, authType: 'md5' }), join(tmp, 'pgbouncer.ini'));
    assert.deepEqual(cfg.warnings, []);
    const s = cfg.settings;
    assert.equal(s.pool_mode, 'transaction');
    assert.equal(s.default_pool_size, 25);
    assert.equal(s.min_pool_size, 5);
    assert.equal(s.reserve_pool_size, 5);
    assert.equal(s.max_client_conn, 2000);
    assert.deepEqual(s.listen_addr, ['127.0.0.1']);
    assert.equal(s.listen_port, 16432);
    assert.equal(s.auth_type, 'md5');
    assert.equal(s.server_tls_sslmode, 'disable');
    const db = cfg.databases.get('my-db');
    assert.equal(db?.host, '127.0.0.1');
    assert.equal(db?.port, 5433);
    assert.equal(db?.dbname, 'my-db');
    assert.equal(cfg.authFile.get('app"x'), 'pa"ss word');
  });
});

function step(mode: 'direct' | 'pooled', clients: number, extra: Partial<StepResult> = {}): StepResult {
  return { mode, clients, seconds: 10, ok: true, samples: 20, ...extra };
}

describe('the report', () => {
  const steps: StepResult[] = [
    step('direct', 10, { xactPerSec: 300, avgConnMs: 20, p99Ms: 100, backendsPeak: 10, memoryKb: 10 * 2048 }),
    step('pooled', 10, { xactPerSec: 1800, avgConnMs: 1, p99Ms: 50, backendsPeak: 10, memoryKb: 10 * 3072 }),
    step('direct', 50, { xactPerSec: 150, avgConnMs: 40, p99Ms: 1000, backendsPeak: 50, memoryKb: 50 * 2048 }),
    step('pooled', 50, { xactPerSec: 2400, avgConnMs: 2, p99Ms: 150, backendsPeak: 25, memoryKb: 50 * 1024, memoryBackends: 25, backendPssKb: 38_400, poolerGrowthKb: 12_800 }),
    step('direct', 100, { ok: false, problem: '4 of 100 clients aborted: FATAL: sorry, too many clients already', xactPerSec: 160, avgConnMs: 30, p99Ms: 2000, backendsPeak: 96 }),
    step('pooled', 100, { xactPerSec: 1500, avgConnMs: 3, p99Ms: 280, backendsPeak: 25, memoryKb: 100 * 512 }),
  ];

  it('users served, the comparison point, gains in the seed\'s style', () => {
    assert.equal(servedUsers(steps, 'direct'), 50);
    assert.equal(servedUsers(steps, 'pooled'), 100);
    assert.equal(comparisonPoint(steps), 50);
    assert.equal(comparisonPoint(steps.filter((s) => s.mode === 'pooled')), undefined);
    assert.equal(gain(50, 5, 'lower'), '-90%');
    assert.equal(gain(3000, 8100, 'higher'), '+2.7x');
    assert.equal(gain(10, 100, 'higher'), '+10x');
    assert.equal(gain(100, 95, 'higher'), '-5.0%');
    assert.equal(gain(100, 130, 'lower'), '+30%');
    assert.equal(gain(undefined, 1, 'lower'), 'n/a');
    assert.equal(gain(0, 1, 'lower'), 'n/a');
  });

  it("the seed's six rows at one concurrency, from the measured values", () => {
    const notes: string[] = [];
    const rows = seedRows(steps, 50, [10, 50, 100], notes);
    assert.deepEqual(rows.map((r) => r.metric), ['Connections per user', 'Connection setup time', 'Concurrent users', 'Memory per connection', 'Query latency p99', 'Throughput']);
    assert.deepEqual(rows.map((r) => [r.before, r.after, r.gain]), [
      ['1.00', '0.500', '-50%'],
      ['40.0 ms', '2.00 ms', '-95%'],
      ['50', '100 (highest tested)', '+2.0x'],
      ['2.00 MB', '1.00 MB', '-50%'],
      ['1,000 ms', '150 ms', '-85%'],
      ['150/sec', '2,400/sec', '+16x'],
    ]);
    assert.deepEqual(notes, ["memory after: 25 backends' PSS 37.5 MB + the pooler's RSS growth 12.5 MB, ÷ 50 clients"]);
    assert.equal(markdownTable(rows).split('\n')[2], '| **Connections per user** | 1.00 | 0.500 | **-50%** |');
  });

  it('a side with errors is marked †, with a note; memory without a figure is n/a with its reason', () => {
    const notes: string[] = [];
    const rows = seedRows(steps.map((s) => (s.mode === 'direct' && s.clients === 100 ? { ...s, memoryNote: 'PostgreSQL is not on this machine' } : s)), 100, [10, 50, 100], notes);
    assert.equal(rows[5]!.before, '160/sec †');
    assert.equal(rows[5]!.after, '1,500/sec');
    assert.equal(rows[3]!.before, 'n/a');
    assert.equal(rows[3]!.gain, 'n/a');
    assert.deepEqual(notes, [
      'memory before: n/a: PostgreSQL is not on this machine',
      '† before (direct) at 100 clients did not complete without errors: 4 of 100 clients aborted: FATAL: sorry, too many clients already',
    ]);
  });

  it('the whole report: the comparison point, the "after" load, every step, methods', () => {
    const { comparisonClients, markdown } = renderReport(steps, {
      date: '2026-01-01T00:00:00Z', pgtide: 'pgtide 0.1.0', direct: 'pgbench → PostgreSQL', pooled: 'pgbench → pgtide → PostgreSQL',
      postgres: 'PostgreSQL 15.18', maxConnections: 100, levels: [10, 50, 100], seconds: 10, afterClients: 100,
      transactionsPerRequest: 3, protocol: 'simple', notes: ['a note'],
    });
    assert.equal(comparisonClients, 50);
    assert.match(markdown, /^## At 50 clients \(the highest concurrency both served without errors\)$/m);
    assert.match(markdown, /^## At 100 clients \(the seed's "after" load\)$/m);
    assert.match(markdown, /^\| 100 \| direct \| 4 of 100 clients aborted: FATAL: sorry, too many clients already \| n\/a \| 160 \|/m);
    assert.match(markdown, /^## How each row is measured$/m);
    assert.match(markdown, /^- a note$/m);
    assert.equal(markdown.match(/^\| \*\*Throughput\*\* /gm)?.length, 2);
  });
});

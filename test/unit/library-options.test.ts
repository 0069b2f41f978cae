/* The library's options object without a server: what it builds (settings, databases, users, auth users), each kind
 * of bad option as a ConfigError naming the setting or entry, library-only refusals, warnings, fromIniText, and url(). */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, Pooler, PoolerProblem, type PoolerOptions } from '../../src/index.js';
import { engineOf } from '../../src/api/cli.js';
import { log } from '../../src/util/log.js';

/** The ConfigError messages of `new Pooler(options)`; fails when it does not throw one. */
function errorsOf(options: unknown): string[] {
  try {
    void new Pooler(options as PoolerOptions).close();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `a ConfigError, not ${String(err)}`);
    assert.equal(err.name, 'ConfigError');
    assert.ok(err.message.startsWith('invalid configuration:\n'), err.message);
    return err.errors.map((e) => e.message);
  }
  assert.fail(`no ConfigError for ${JSON.stringify(options)}`);
}

const base = { listen_addr: '127.0.0.1', listen_port: 6432, unix_socket_dir: '' } as const;

test('options build the same settings the ini would, with lists as arrays or strings and entries as objects or strings', async () => {
  const p = new Pooler({
    databases: {
      app: { host: '127.0.0.1', port: 5433, dbname: 'appdb', pool_size: 7, pool_mode: 'session' },
      other: "host=/var/run/postgresql dbname=other application_name='my app'",
    },
    users: { app: { pool_mode: 'statement', max_user_connections: 3 }, bob: 'pool_size=4' },
    settings: { ...base, pool_mode: 'transaction', default_pool_size: 25, query_timeout: 2.5, log_connections: false, admin_users: 'app, bob', ignore_startup_parameters: ['extra_float_digits'] },
    auth: { users: [{ name: 'app', password: 'apppass' }, { name: 'bob', secret: 'md5' + '0'.repeat(32) }] },
  });
  const st = p.settings;
  assert.equal(st.pool_mode, 'transaction');
  assert.equal(st.default_pool_size, 25);
  assert.equal(st.query_timeout, 2.5);
  assert.equal(st.log_connections, false);
  assert.deepEqual(st.admin_users, ['app', 'bob']);
  assert.deepEqual(st.ignore_startup_parameters, ['extra_float_digits']);
  assert.equal(st.max_client_conn, 100, 'a setting left out keeps its default');
  assert.deepEqual(p.warnings, []);
  assert.equal(p.listening, false);
  await p.close();
});

test('a bad option is a ConfigError that names the setting or entry', () => {
  const cases: [unknown, RegExp][] = [
    [{ databases: {}, settings: { ...base, defualt_pool_size: 5 } }, /^settings\.defualt_pool_size: unknown setting; closest settings: default_pool_size/],
    [{ databases: {}, settings: { ...base, default_pool_size: '25' } }, /^settings\.default_pool_size: expected an integer \(number\), got the string "25"$/],
    [{ databases: {}, settings: { ...base, default_pool_size: 2.5 } }, /^settings\.default_pool_size: invalid value "2\.5" for default_pool_size: expected an integer/],
    [{ databases: {}, settings: { ...base, listen_port: 70000 } }, /^settings\.listen_port: invalid value "70000" for listen_port: expected an integer from 0 to 65535$/],
    [{ databases: {}, settings: { ...base, pool_mode: 'txn' } }, /^settings\.pool_mode: invalid value "txn" for pool_mode: expected one of: session, transaction, statement$/],
    [{ databases: {}, settings: { ...base, log_connections: 1 } }, /^settings\.log_connections: expected true or false, got number 1$/],
    [{ databases: {}, settings: { ...base, server_lifetime: -1 } }, /^settings\.server_lifetime: invalid value "-1" for server_lifetime: expected a number of seconds/],
    [{ databases: {}, settings: { ...base, admin_users: ['a,b'] } }, /^settings\.admin_users: a list item cannot contain a comma$/],
    [{ databases: { app: { port: 0 } }, settings: base }, /^databases\.app: invalid value "0" for port: expected a port number from 1 to 65535/],
    [{ databases: { app: { hots: 'x' } }, settings: base }, /^databases\.app: unknown key "hots"; closest: host/],
    [{ databases: { app: { port: '5432' } }, settings: base }, /^databases\.app: port: expected a number, got the string "5432"$/],
    [{ databases: { app: 'host=x port' }, settings: base }, /^databases\.app: syntax error in the settings of database app/],
    [{ databases: { pgbouncer: { host: 'x' } }, settings: base }, /database name "pgbouncer" is reserved/],
    [{ databases: {}, users: { bob: { pool_mode: 'x' } }, settings: base }, /^users\.bob: invalid value "x" for pool_mode/],
    [{ databases: {}, settings: base, auth: { users: [{ name: 'a', secret: 'plain' }] } }, /^auth\.users\[0\]: the secret of "a" is neither md5/],
    [{ databases: {}, settings: base, auth: { users: [{ name: 'a', password: 'x' }, { name: 'a', password: 'y' }] } }, /^auth\.users\[1\]: user "a" is listed twice$/],
    [{ databases: {}, settings: base, auth: { users: [{ name: 'a' }] } }, /^auth\.users\[0\]: give either password or secret/],
    [{ databases: {}, settings: { ...base, auth_file: 'u.txt' }, auth: { file: 'v.txt' } }, /^auth\.file: give auth\.file or settings\.auth_file, not both$/],
    [{ databases: {}, settings: base, pool_mode: 'transaction' }, /^pool_mode: unknown option/],
    [{ databases: {}, settings: { ...base, workers: 2 } }, /^settings\.workers: workers = 2: the library serves from this one process/],
    [{ databases: {}, settings: { listen_addr: '127.0.0.1', listen_port: 0 } }, /^settings\.listen_port: listen_port 0 \(any free port\) would name the unix socket \/tmp\/\.s\.PGSQL\.0/],
    [{ databases: {}, settings: { ...base, auth_type: 'ldap' } }, /^settings\.auth_type: auth_type ldap is not supported by pgtide yet/],
  ];
  for (const [options, re] of cases) {
    const errors = errorsOf(options);
    assert.ok(errors.some((e) => re.test(e)), `${JSON.stringify(options)}: expected ${re}, got:\n${errors.join('\n')}`);
  }
  // every problem is reported at once
  assert.equal(errorsOf({ databases: {}, settings: { ...base, pool_mode: 'x', default_pool_size: 'y' } }).length, 2);
});

test('a setting pgtide accepts but does not implement is a warning, not an error', async () => {
  const p = new Pooler({ databases: {}, settings: { ...base, syslog: true } });
  assert.deepEqual(p.warnings, ['settings.syslog: syslog is accepted but not implemented by pgtide yet; it has no effect']);
  await p.close();
});

test('fromIniText: the ini way, with file:line in errors and the same library checks', async () => {
  const p = Pooler.fromIniText('[databases]\napp = host=127.0.0.1\n[pgbouncer]\nlisten_port = 6432\nunix_socket_dir =\npool_mode = statement\n', { file: 'x.ini', cwd: '/tmp' });
  assert.equal(p.settings.pool_mode, 'statement');
  await p.close();
  assert.throws(
    () => Pooler.fromIniText('[pgbouncer]\nlisten_port = 6432\npool_mode = txn\n', { file: 'x.ini', cwd: '/tmp' }),
    (e: unknown) => e instanceof ConfigError && /^\/tmp\/x\.ini:3: invalid value "txn" for pool_mode/.test(e.errors[0]!.message),
  );
  assert.throws(
    () => Pooler.fromIniText('[pgbouncer]\nworkers = 3\nlisten_port = 6432\n', { cwd: '/tmp' }),
    (e: unknown) => e instanceof ConfigError && /^\/tmp\/pgbouncer\.ini:2: workers = 3: the library serves/.test(e.errors[0]!.message),
  );
});

test('url(): TCP address, wildcard addresses, IPv6, unix socket', async () => {
  const url = (settings: PoolerOptions['settings'], ...args: [string, string?, string?]) => {
    const p = new Pooler({ databases: {}, settings });
    try {
      return p.url(...args);
    } finally {
      void p.close();
    }
  };
  assert.equal(url(base, 'app', 'p@ss/w', 'my db'), 'postgresql://app:p%40ss%2Fw@127.0.0.1:6432/my%20db?sslmode=disable');
  assert.equal(url({ ...base, listen_addr: '*' }, 'app'), 'postgresql://app@127.0.0.1:6432/app?sslmode=disable');
  assert.equal(url({ ...base, listen_addr: ['::'] }, 'app', '', 'db'), 'postgresql://app@[::1]:6432/db?sslmode=disable');
  assert.equal(url({ ...base, listen_addr: '' , unix_socket_dir: '/tmp' }, 'app', 'x', 'db'), 'postgresql://app:x@/db?host=%2Ftmp&port=6432&sslmode=disable');
  assert.throws(() => url({ ...base, listen_port: 0 }, 'app'), /listen\(\) first/);
});

test("'log' events: each pooler gets its own lines; 'error' only while someone listens, and never throws", async () => {
  const settings = { listen_addr: '127.0.0.1', listen_port: 0, unix_socket_dir: '' } as const;
  const p1 = new Pooler({ databases: {}, settings });
  const p2 = new Pooler({ databases: {}, settings });
  const lines1: string[] = [];
  const lines2: string[] = [];
  p1.on('log', (r) => lines1.push(r.message));
  p2.on('log', (r) => lines2.push(r.message));
  try {
    await p1.listen();
    await p2.listen();
    assert.deepEqual(lines1, [`listening on 127.0.0.1:${p1.port}`]);
    assert.deepEqual(lines2, [`listening on 127.0.0.1:${p2.port}`]);

    // an ERROR line of p1's: no 'error' listener, nothing thrown; with one, a PoolerProblem
    log.error('something broke', engineOf(p1).own);
    const problems: PoolerProblem[] = [];
    p1.on('error', (e) => problems.push(e));
    log.error('something else broke', engineOf(p1).own);
    assert.equal(problems.length, 1);
    assert.ok(problems[0] instanceof PoolerProblem);
    assert.equal(problems[0]!.message, 'something else broke');
    assert.equal(problems[0]!.level, 'ERROR');
    assert.match(problems[0]!.line, / ERROR something else broke$/);
    assert.equal(lines2.length, 1, "p2 does not get p1's lines");
  } finally {
    await p1.close();
    await p2.close();
  }
  const n = lines1.length;
  log.log('after close', engineOf(p1).own);
  assert.equal(lines1.length, n, 'a closed pooler gets no more lines');
});

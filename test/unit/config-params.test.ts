/* The [pgbouncer] settings table: defaults, value parsing per kind, SHOW CONFIG formatting, suggestions. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_AUTH_QUERY,
  InvalidValueError,
  PARAMS,
  closestNames,
  defaultSettings,
  findParam,
  formatG,
  formatSettingValue,
  parseSettingValue,
  suggestSettings,
  type Settings,
} from '../../src/config/params.js';
import type { AuthType, PoolMode } from '../../src/config/types.js';

/** Defaults as listed in shared/reference/pgbouncer-features.md §1.2 (PgBouncer master). */
const REFERENCE_DEFAULTS: Record<string, string> = {
  logfile: '', pidfile: '', listen_addr: '', listen_port: '6432', unix_socket_dir: '/tmp', unix_socket_mode: '0777',
  unix_socket_group: '', user: '', service_name: 'pgbouncer', job_name: 'pgbouncer', stats_period: '60',
  disable_pqexec: '0', application_name_add_host: '0',
  pool_mode: 'session', default_pool_size: '20', min_pool_size: '0', reserve_pool_size: '0', reserve_pool_timeout: '5',
  server_round_robin: '0', track_extra_parameters: 'IntervalStyle', ignore_startup_parameters: '',
  max_client_conn: '100', max_db_connections: '0', max_db_client_connections: '0', max_user_connections: '0',
  max_user_client_connections: '0', max_packet_size: '2147483647',
  server_lifetime: '3600', server_idle_timeout: '600', server_connect_timeout: '15', server_login_retry: '15',
  client_login_timeout: '60', autodb_idle_timeout: '3600', pool_idle_timeout: '0', dns_max_ttl: '15',
  dns_nxdomain_ttl: '15', dns_zone_check_period: '0', resolv_conf: '', query_timeout: '0', query_wait_timeout: '120',
  query_wait_notify: '5', cancel_wait_timeout: '10', client_idle_timeout: '0', idle_transaction_timeout: '0',
  transaction_timeout: '0', suspend_timeout: '10',
  auth_type: 'md5', auth_file: '', auth_hba_file: '', auth_ident_file: '', auth_user: '', auth_query: DEFAULT_AUTH_QUERY,
  auth_dbname: '', auth_ldap_options: '', scram_iterations: '4096',
  client_tls_sslmode: 'disable', client_tls_key_file: '', client_tls_cert_file: '', client_tls_ca_file: '',
  client_tls_protocols: 'secure', client_tls_ciphers: 'default', client_tls13_ciphers: '', client_tls_ecdhcurve: 'auto',
  client_tls_dheparams: 'auto',
  server_tls_sslmode: 'prefer', server_tls_ca_file: '', server_tls_key_file: '', server_tls_cert_file: '',
  server_tls_protocols: 'secure', server_tls_ciphers: 'default', server_tls13_ciphers: '',
  syslog: '0', syslog_ident: 'pgbouncer', syslog_facility: 'daemon', log_connections: '1', log_disconnections: '1',
  log_pooler_errors: '1', log_stats: '1', verbose: '0',
  admin_users: '', stats_users: '',
  server_reset_query: 'DISCARD ALL', server_reset_query_always: '0', server_check_delay: '30',
  server_check_query: '<empty>', server_fast_close: '0', login_notify_message: '',
  pkt_buf: '4096', listen_backlog: '128', sbuf_loopcnt: '5', so_reuseport: '0', tcp_defer_accept: '1',
  tcp_socket_buffer: '0', tcp_keepalive: '1', tcp_keepcnt: '0', tcp_keepidle: '0', tcp_keepintvl: '0',
  tcp_user_timeout: '0',
  max_prepared_statements: '200', peer_id: '0',
  conffile: '',
};

const NOT_RELOADABLE = [
  'disable_pqexec', 'job_name', 'listen_addr', 'listen_backlog', 'listen_port', 'pidfile', 'pkt_buf', 'resolv_conf',
  'service_name', 'so_reuseport', 'track_extra_parameters', 'unix_socket_dir', 'unix_socket_group', 'unix_socket_mode',
  'user', 'workers', 'metrics_listen_addr', 'metrics_port',
];

const SUPPORTED = [
  'workers', 'metrics_listen_addr', 'metrics_port', 'busy_poll_us', 'listen_addr', 'max_prepared_statements', 'max_concurrent_logins_per_host', 'client_tls13_ciphers', 'client_tls_dheparams', 'client_tls_ecdhcurve', 'server_tls13_ciphers', 'auth_hba_file', 'auth_user', 'auth_query', 'auth_dbname', 'server_tls_sslmode', 'server_tls_ca_file', 'server_tls_key_file', 'server_tls_cert_file', 'server_tls_protocols', 'server_tls_ciphers', 'session_state_policy', 'track_set_parameters', 'listen_port', 'unix_socket_dir', 'unix_socket_mode', 'auth_type', 'auth_file', 'admin_users',
  'stats_users', 'pool_mode', 'max_client_conn', 'default_pool_size', 'min_pool_size', 'reserve_pool_size',
  'reserve_pool_timeout', 'max_db_connections', 'max_user_connections', 'server_reset_query',
  'server_reset_query_always', 'server_check_query', 'server_check_delay', 'server_round_robin',
  'ignore_startup_parameters', 'application_name_add_host', 'logfile', 'pidfile', 'log_connections',
  'log_disconnections', 'log_pooler_errors', 'log_stats', 'stats_period', 'verbose', 'server_connect_timeout',
  'server_login_retry', 'server_idle_timeout', 'server_lifetime', 'query_wait_timeout', 'client_login_timeout',
  'client_idle_timeout', 'idle_transaction_timeout', 'query_timeout', 'max_packet_size', 'pkt_buf', 'tcp_keepalive',
  'track_extra_parameters', 'conffile', 'cancel_wait_timeout', 'autodb_idle_timeout', 'listen_backlog',
  'client_tls_sslmode', 'client_tls_key_file', 'client_tls_cert_file', 'client_tls_ca_file', 'client_tls_protocols',
  'client_tls_ciphers',
];

describe('settings table', () => {
  it('has exactly the reference settings, in byte order, each once', () => {
    const names = PARAMS.map((p) => p.name);
    // pgtide's own settings are marked as such; every other one is PgBouncer's
    assert.deepEqual(PARAMS.filter((p) => !('pgtide' in p && p.pgtide)).map((p) => p.name).sort(), Object.keys(REFERENCE_DEFAULTS).sort());
    const sorted = [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    assert.deepEqual(names, sorted);
    assert.equal(new Set(names).size, names.length);
  });

  it('has the reference defaults', () => {
    for (const p of PARAMS) if (!('pgtide' in p && p.pgtide)) assert.equal(p.default, REFERENCE_DEFAULTS[p.name], p.name);
  });

  it('marks the not-changeable settings and the supported ones', () => {
    for (const p of PARAMS) {
      assert.equal(p.reloadable, !NOT_RELOADABLE.includes(p.name), `reloadable ${p.name}`);
      assert.equal(p.status, SUPPORTED.includes(p.name) ? 'supported' : 'accepted', `status ${p.name}`);
      assert.ok(p.doc.length > 10 && !p.doc.includes('\n'), `doc ${p.name}`);
      if (p.kind === 'enum') assert.ok(p.values && p.values.length > 0, p.name);
    }
  });

  it('every default parses, and formats back to the same text', () => {
    for (const p of PARAMS) {
      const v = parseSettingValue(p, p.default);
      if (p.name === 'unix_socket_mode') continue; // octal 0777 shows as 511, like PgBouncer's %d
      assert.equal(formatSettingValue(p, v), p.default, p.name);
    }
  });

  it('findParam is exact', () => {
    assert.equal(findParam('pool_mode')?.kind, 'enum');
    assert.equal(findParam('POOL_MODE'), undefined);
    assert.equal(findParam('timeout'), undefined);
  });
});

describe('defaultSettings', () => {
  it('gives typed values', () => {
    const s: Settings = defaultSettings();
    const size: number = s.default_pool_size;
    const mode: PoolMode = s.pool_mode;
    const auth: AuthType = s.auth_type;
    const admins: string[] = s.admin_users;
    const logConn: boolean = s.log_connections;
    assert.equal(size, 20);
    assert.equal(mode, 'session');
    assert.equal(auth, 'md5');
    assert.deepEqual(admins, []);
    assert.equal(logConn, true);
    assert.equal(s.server_idle_timeout, 600);
    assert.equal(s.reserve_pool_timeout, 5);
    assert.deepEqual(s.track_extra_parameters, ['IntervalStyle']);
    assert.equal(s.unix_socket_mode, 0o777);
    assert.equal(s.max_packet_size, 2147483647);
    assert.equal(s.server_check_query, '<empty>');
    assert.equal(s.job_name, 'pgbouncer');
  });

  it('returns independent copies', () => {
    const a = defaultSettings();
    a.track_extra_parameters.push('search_path');
    a.default_pool_size = 1;
    const b = defaultSettings();
    assert.deepEqual(b.track_extra_parameters, ['IntervalStyle']);
    assert.equal(b.default_pool_size, 20);
  });
});

describe('parseSettingValue', () => {
  it('int: decimal, sign, hex, octal', () => {
    assert.equal(parseSettingValue('default_pool_size', '25'), 25);
    assert.equal(parseSettingValue('default_pool_size', '+7'), 7);
    assert.equal(parseSettingValue('peer_id', '-3'), -3);
    assert.equal(parseSettingValue('pkt_buf', '0x1000'), 4096);
    assert.equal(parseSettingValue('unix_socket_mode', '0700'), 0o700);
    assert.equal(parseSettingValue('default_pool_size', '0'), 0);
    assert.equal(parseSettingValue('max_packet_size', '4294967295'), 4294967295);
  });

  it('int: rejects junk, floats, empty and out of range', () => {
    for (const bad of ['lots', '25x', '2.5', '', '08', '0x', '1e3', '2147483648']) {
      assert.throws(() => parseSettingValue('default_pool_size', bad), InvalidValueError, bad);
    }
    assert.throws(() => parseSettingValue('max_packet_size', '-1'), /from 0 to 4294967295/);
    assert.throws(() => parseSettingValue('listen_port', '70000'), /from 0 to 65535/);
  });

  it('int: the message says what is accepted', () => {
    assert.throws(
      () => parseSettingValue('default_pool_size', 'lots'),
      (err: Error) => {
        assert.match(err.message, /^invalid value "lots" for default_pool_size: expected an integer/);
        return true;
      },
    );
  });

  it('bool: integers only, non-zero is on', () => {
    assert.equal(parseSettingValue('log_connections', '0'), false);
    assert.equal(parseSettingValue('log_connections', '1'), true);
    assert.equal(parseSettingValue('log_connections', '2'), true);
    for (const bad of ['yes', 'true', 'on', '', '1.0']) {
      assert.throws(() => parseSettingValue('log_connections', bad), /expected 0 or 1/, bad);
    }
  });

  it('time: seconds, fractions, truncated to microseconds', () => {
    assert.equal(parseSettingValue('query_timeout', '600'), 600);
    assert.equal(parseSettingValue('query_timeout', '2.5'), 2.5);
    assert.equal(parseSettingValue('query_timeout', '.5'), 0.5);
    assert.equal(parseSettingValue('query_timeout', '1e3'), 1000);
    assert.equal(parseSettingValue('query_timeout', '0.0000001'), 0);
    for (const bad of ['-1', 'ten', '5s', '', 'inf', 'nan', '1,5']) {
      assert.throws(() => parseSettingValue('query_timeout', bad), /expected a number of seconds/, bad);
    }
  });

  it('enum: case-insensitive, canonical spelling, list of values on error', () => {
    assert.equal(parseSettingValue('pool_mode', 'Transaction'), 'transaction');
    assert.equal(parseSettingValue('auth_type', 'SCRAM-SHA-256'), 'scram-sha-256');
    assert.equal(parseSettingValue('server_tls_sslmode', 'verify-full'), 'verify-full');
    assert.throws(
      () => parseSettingValue('pool_mode', 'foo'),
      /invalid value "foo" for pool_mode: expected one of: session, transaction, statement/,
    );
    for (const t of ['any', 'trust', 'plain', 'md5', 'scram-sha-256', 'cert', 'hba', 'pam', 'ldap']) {
      assert.equal(parseSettingValue('auth_type', t), t);
    }
    assert.throws(() => parseSettingValue('auth_type', 'password'), /expected one of/);
  });

  it('list: comma-separated, trimmed, empties dropped', () => {
    assert.deepEqual(parseSettingValue('admin_users', ' alice , bob,,carol ,'), ['alice', 'bob', 'carol']);
    assert.deepEqual(parseSettingValue('admin_users', ''), []);
    assert.deepEqual(parseSettingValue('listen_addr', '*'), ['*']);
  });

  it('string: kept as written', () => {
    assert.equal(parseSettingValue('server_reset_query', "'DISCARD ALL'"), "'DISCARD ALL'");
    assert.equal(parseSettingValue('logfile', ''), '');
  });

  it('unknown setting name throws', () => {
    assert.throws(() => parseSettingValue('nope' as 'pool_mode', '1'), /unknown setting "nope"/);
  });
});

describe('formatSettingValue', () => {
  it('formats like SHOW CONFIG', () => {
    assert.equal(formatSettingValue('log_connections', true), '1');
    assert.equal(formatSettingValue('log_connections', false), '0');
    assert.equal(formatSettingValue('query_timeout', 2.5), '2.5');
    assert.equal(formatSettingValue('server_lifetime', 3600), '3600');
    assert.equal(formatSettingValue('admin_users', ['a', 'b']), 'a,b');
    assert.equal(formatSettingValue('unix_socket_mode', 0o777), '511');
    assert.equal(formatSettingValue('pool_mode', 'transaction'), 'transaction');
  });

  it('formatG matches printf %g', () => {
    assert.equal(formatG(0), '0');
    assert.equal(formatG(600), '600');
    assert.equal(formatG(0.5), '0.5');
    assert.equal(formatG(123456), '123456');
    assert.equal(formatG(1234567), '1.23457e+06');
    assert.equal(formatG(0.0001), '0.0001');
    assert.equal(formatG(0.00001), '1e-05');
    assert.equal(formatG(1 / 3), '0.333333');
  });
});

describe('suggestions', () => {
  it('uses the hand map for well-known foreign names', () => {
    assert.deepEqual(suggestSettings('timeout'), ['query_timeout', 'server_idle_timeout', 'client_idle_timeout']);
    assert.deepEqual(suggestSettings('idle_in_transaction_session_timeout'), ['idle_transaction_timeout']);
    assert.deepEqual(suggestSettings('statement_timeout'), ['query_timeout']);
    assert.deepEqual(suggestSettings('max_connections'), ['max_client_conn', 'max_db_connections']);
    assert.deepEqual(suggestSettings('pool_size'), ['default_pool_size']);
  });

  it('finds typos and shared words', () => {
    assert.equal(suggestSettings('listen_adress')[0], 'listen_addr');
    assert.equal(suggestSettings('server_idle_timout')[0], 'server_idle_timeout');
    assert.equal(suggestSettings('Pool_Mode')[0], 'pool_mode');
    assert.ok(suggestSettings('max_client_connections').includes('max_client_conn'));
    assert.deepEqual(suggestSettings('zzzzqqqq'), []);
  });

  it('closestNames limits and orders', () => {
    assert.deepEqual(closestNames('pol_size', ['pool_size', 'port', 'dbname'], 1), ['pool_size']);
  });
});

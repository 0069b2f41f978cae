/* Loader: the seed's pgbouncer.ini, warnings for unknown keys/sections, ConfigError for bad values, includes, auth_file. */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, loadConfig, parseConfigText } from '../../src/config/loader.js';
import { SEED_INI } from '../harness/seed.js';


const tmp = mkdtempSync(join(tmpdir(), 'pgtide-loader-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError');
}

describe("the seed's pgbouncer.ini", () => {
  const file = join(tmp, 'pgbouncer.ini');
  writeFileSync(file, SEED_INI);
  const cfg = loadConfig(file);

  it('loads with exactly two warnings, each naming file, line and the right setting', () => {
    assert.equal(cfg.warnings.length, 2, cfg.warnings.map((w) => w.message).join('\n'));
    const [timeout, idle] = cfg.warnings;
    assert.equal(timeout?.file, file);
    assert.equal(timeout?.line, 10);
    assert.equal(
      timeout?.message,
      `${file}:10: unknown setting "timeout" ignored (pgtide goes on; PgBouncer refuses to start on it); ` +
        'closest settings: query_timeout, server_idle_timeout, client_idle_timeout',
    );
    assert.equal(idle?.file, file);
    assert.equal(idle?.line, 11);
    assert.match(idle?.message ?? '', /unknown setting "idle_in_transaction_session_timeout" ignored/);
    assert.match(idle?.message ?? '', /closest settings: idle_transaction_timeout$/);
  });

  it('has the settings', () => {
    const s = cfg.settings;
    assert.equal(cfg.file, file);
    assert.equal(s.pool_mode, 'transaction');
    assert.equal(s.default_pool_size, 25);
    assert.equal(s.min_pool_size, 5);
    assert.equal(s.reserve_pool_size, 5);
    assert.equal(s.reserve_pool_timeout, 3);
    assert.equal(s.listen_port, 6432);
    assert.deepEqual(s.listen_addr, ['0.0.0.0']);
    assert.equal(s.logfile, '/var/log/pgbouncer/pgbouncer.log');
    assert.equal(s.pidfile, '/var/run/pgbouncer/pgbouncer.pid');
    assert.equal(s.query_timeout, 0);
    assert.equal(s.idle_transaction_timeout, 0);
    assert.equal(s.max_client_conn, 100);
    assert.equal(s.conffile, file);
  });

  it('records where settings were set', () => {
    assert.deepEqual(cfg.explicit.get('default_pool_size'), { file, line: 6 });
    assert.deepEqual(cfg.explicit.get('pidfile'), { file, line: 17 });
    assert.equal(cfg.explicit.has('max_client_conn'), false);
    assert.equal(cfg.explicit.has('timeout'), false);
  });

  it('has the database and no auth file', () => {
    assert.deepEqual([...cfg.databases.keys()], ['tracking']);
    const db = cfg.databases.get('tracking');
    assert.equal(db?.host, 'postgres');
    assert.equal(db?.port, 5432);
    assert.equal(db?.dbname, 'tracking');
    assert.equal(db?.user, 'postgres');
    assert.equal(db?.password, 'your_password');
    assert.deepEqual(db?.source, { file, line: 2 });
    assert.equal(cfg.users.size, 0);
    assert.equal(cfg.authFile.size, 0);
  });
});

describe('invalid values', () => {
  it('default_pool_size = lots throws ConfigError naming file, line and key', () => {
    const err = configError(() => parseConfigText('[pgbouncer]\n\ndefault_pool_size = lots\n', 'bad.ini'));
    assert.equal(err.errors.length, 1);
    assert.equal(err.errors[0]?.file, 'bad.ini');
    assert.equal(err.errors[0]?.line, 3);
    assert.match(err.errors[0]?.message ?? '', /^bad\.ini:3: invalid value "lots" for default_pool_size: expected an integer/);
    assert.match(err.message, /bad\.ini:3: invalid value "lots" for default_pool_size/);
  });

  it('collects every error before throwing', () => {
    const text = [
      '[pgbouncer]',
      'pool_mode = sometimes',
      'log_connections = yes',
      'query_timeout = -5',
      'pool_mode = session ; trailing comment is part of the value',
      '[databases]',
      'app = pool_size=abc',
      'pgbouncer = host=x',
      '[users]',
      'bob = pool_mode=foo',
      'this line is not ini',
    ].join('\n');
    const err = configError(() => parseConfigText(text, 'many.ini'));
    assert.deepEqual(
      err.errors.map((e) => e.line).sort((a, b) => a - b),
      [2, 3, 4, 5, 7, 8, 10, 11],
    );
    for (const e of err.errors) assert.ok(err.message.includes(e.message));
  });

  it('a missing config file is a ConfigError', () => {
    const err = configError(() => loadConfig(join(tmp, 'nope.ini')));
    assert.match(err.message, /cannot read config file/);
  });

  it('a missing %include is a ConfigError at the %include line', () => {
    const err = configError(() => parseConfigText('[pgbouncer]\n%include /nonexistent/pgtide.ini\n', 'inc.ini'));
    assert.equal(err.errors[0]?.line, 2);
  });
});

describe('warnings', () => {
  it('unknown section: one warning, its keys ignored', () => {
    const cfg = parseConfigText('[pgbouncer]\n[pgbouncr]\nlisten_port = 1\nfoo = 2\n', 'w.ini');
    assert.equal(cfg.settings.listen_port, 6432);
    assert.equal(cfg.warnings.length, 1);
    assert.match(cfg.warnings[0]?.message ?? '', /^w\.ini:2: unknown section \[pgbouncr\] ignored/);
  });

  it('keys before any section', () => {
    const cfg = parseConfigText('listen_port = 1\n[pgbouncer]\n', 'w.ini');
    assert.equal(cfg.settings.listen_port, 6432);
    assert.match(cfg.warnings[0]?.message ?? '', /^w\.ini:1: "listen_port" appears before any \[section\]/);
  });

  it('no [pgbouncer] section', () => {
    const cfg = parseConfigText('[databases]\nfoo =\n', 'w.ini');
    assert.equal(cfg.warnings.length, 1);
    assert.match(cfg.warnings[0]?.message ?? '', /no \[pgbouncer\] section/);
    assert.ok(cfg.databases.has('foo'));
  });

  it('accepted-but-unimplemented settings warn only when not at their default', () => {
    const cfg = parseConfigText('[pgbouncer]\nclient_tls_sslmode = disable\ntcp_user_timeout = 1000\nmax_prepared_statements = 200\nso_reuseport = 1\n', 'w.ini');
    assert.deepEqual(
      cfg.warnings.map((w) => w.message),
      [
        'w.ini:3: tcp_user_timeout is accepted but not implemented by pgtide yet; it has no effect',
        'w.ini:5: so_reuseport is accepted but not implemented by pgtide yet; it has no effect',
      ],
    );
    assert.equal(cfg.settings.tcp_user_timeout, 1000);
  });

  it('a value of two quote characters', () => {
    const cfg = parseConfigText('[pgbouncer]\nunix_socket_dir = ""\n', 'w.ini');
    assert.equal(cfg.settings.unix_socket_dir, '""');
    assert.match(cfg.warnings[0]?.message ?? '', /two characters "", not to an empty value/);
  });

  it('[peers] entries warn once', () => {
    const cfg = parseConfigText('[pgbouncer]\n[peers]\n1 = host=/tmp/a\n2 = host=/tmp/b\n', 'w.ini');
    assert.equal(cfg.warnings.length, 1);
    assert.match(cfg.warnings[0]?.message ?? '', /^w\.ini:3: \[peers\] is accepted but not implemented/);
  });

  it('comments and blank lines produce nothing', () => {
    const cfg = parseConfigText('; top\n#x = 1\n[pgbouncer]\n  ; indented\n\n# pool_mode = nonsense\n', 'w.ini');
    assert.deepEqual(cfg.warnings, []);
    assert.equal(cfg.explicit.size, 0);
  });
});

describe('sections and entries', () => {
  it('databases incl. * and quoted names, users, last value wins, aliases', () => {
    const cfg = parseConfigText(
      [
        '[databases]',
        '* = host=fallback',
        '"my db" = host=x dbname=real',
        '[users]',
        'alice = pool_mode=statement max_user_connections=3',
        '[pgbouncer]',
        'pool_mode = statement',
        'pool_mode = session',
        'job_name = svc',
        'admin_users = alice, bob',
        'auth_type = scram-sha-256',
      ].join('\n'),
      'e.ini',
    );
    assert.deepEqual(cfg.warnings.map((w) => w.message), ['e.ini:9: job_name is accepted but not implemented by pgtide yet; it has no effect']);
    assert.equal(cfg.databases.get('*')?.host, 'fallback');
    assert.equal(cfg.databases.get('my db')?.dbname, 'real');
    assert.equal(cfg.users.get('alice')?.pool_mode, 'statement');
    assert.equal(cfg.users.get('alice')?.max_user_connections, 3);
    assert.equal(cfg.settings.pool_mode, 'session');
    assert.deepEqual(cfg.explicit.get('pool_mode'), { file: 'e.ini', line: 8 });
    assert.equal(cfg.settings.job_name, 'svc');
    assert.equal(cfg.settings.service_name, 'svc');
    assert.deepEqual(cfg.settings.admin_users, ['alice', 'bob']);
    assert.equal(cfg.settings.auth_type, 'scram-sha-256');
  });

  it('%include with temp files', () => {
    const dbs = join(tmp, 'dbs.ini');
    writeFileSync(dbs, '[databases]\nincluded = host=inc\n');
    const main = join(tmp, 'main-inc.ini');
    writeFileSync(main, `[pgbouncer]\nmax_client_conn = 500\n%include ${dbs}\n[pgbouncer]\nlisten_port = 7000\n`);
    const cfg = loadConfig(main);
    assert.deepEqual(cfg.warnings, []);
    assert.equal(cfg.settings.max_client_conn, 500);
    assert.equal(cfg.settings.listen_port, 7000);
    assert.deepEqual(cfg.databases.get('included')?.source, { file: dbs, line: 2 });
  });

  it('an unknown key inside an include names the included file', () => {
    const part = join(tmp, 'part-unknown.ini');
    writeFileSync(part, '\nstatement_timeout = 5\n');
    const cfg = parseConfigText(`[pgbouncer]\n%include ${part}\n`, 'main.ini');
    assert.equal(cfg.warnings.length, 1);
    assert.match(cfg.warnings[0]?.message ?? '', new RegExp(`^${part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: unknown setting "statement_timeout".*closest settings: query_timeout$`));
  });
});

describe('auth_file', () => {
  it('is read, relative to the working directory', () => {
    writeFileSync(join(tmp, 'userlist.txt'), '"alice" "secret"\n"bob" "md545f2603610af569b6155c45067268c6b"\nbroken\n');
    const cfg = parseConfigText('[pgbouncer]\nauth_file = userlist.txt\n', 'a.ini', { cwd: tmp });
    assert.equal(cfg.authFile.get('alice'), 'secret');
    assert.equal(cfg.authFile.size, 2);
    assert.equal(cfg.warnings.length, 1);
    assert.match(cfg.warnings[0]?.message ?? '', /userlist\.txt:3: malformed auth_file line/);
  });

  it('missing auth_file is a warning at the auth_file line and an empty map', () => {
    const cfg = parseConfigText('[pgbouncer]\n\nauth_file = /nonexistent/pgtide/userlist.txt\n', 'a.ini');
    assert.equal(cfg.authFile.size, 0);
    assert.equal(cfg.warnings.length, 1);
    assert.match(cfg.warnings[0]?.message ?? '', /^a\.ini:3: cannot read auth_file "\/nonexistent\/pgtide\/userlist\.txt"/);
  });
});

/* [databases] / [users] values: tokenizing, quoting, typed entries, unknown keys, invalid values. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ConnStringSyntaxError,
  DATABASE_KEYS,
  USER_KEYS,
  parseDatabaseEntry,
  parseUserEntry,
  quoteConnValue,
  quoteDatabaseName,
  tokenizeConnString,
} from '../../src/config/connstring.js';

const SRC = { file: 'pgbouncer.ini', line: 7 };

describe('tokenizeConnString', () => {
  it('splits on blanks, allows blanks around =', () => {
    assert.deepEqual(tokenizeConnString('  host=a   port = 5433\tdbname=x '), [
      { key: 'host', value: 'a' },
      { key: 'port', value: '5433' },
      { key: 'dbname', value: 'x' },
    ]);
    assert.deepEqual(tokenizeConnString(''), []);
    assert.deepEqual(tokenizeConnString('   '), []);
  });

  it("single-quoted values keep blanks; '' is a quote; backslash is plain", () => {
    assert.deepEqual(tokenizeConnString("connect_query='SET x = 1; SELECT ''a''' password='p w\\'"), [
      { key: 'connect_query', value: "SET x = 1; SELECT 'a'" },
      { key: 'password', value: 'p w\\' },
    ]);
    assert.deepEqual(tokenizeConnString('password="quoted"'), [{ key: 'password', value: '"quoted"' }]);
  });

  it('rejects broken input', () => {
    for (const bad of ["host='x", 'host', '=x', 'host=', "host=''", "host='a'b", 'host port=1']) {
      assert.throws(() => tokenizeConnString(bad), ConnStringSyntaxError, bad);
    }
  });

  it('quoting helpers round-trip', () => {
    for (const v of ['plain', 'has space', "it's", '']) {
      const quoted = quoteConnValue(v);
      if (v === '') continue;
      assert.deepEqual(tokenizeConnString(`k=${quoted}`), [{ key: 'k', value: v }]);
    }
    assert.equal(quoteDatabaseName('app_1'), 'app_1');
    assert.equal(quoteDatabaseName('*'), '*');
    assert.equal(quoteDatabaseName('my-db'), '"my-db"');
    assert.equal(quoteDatabaseName('say "hi"'), '"say ""hi"""');
  });
});

describe('parseDatabaseEntry', () => {
  it('parses the seed entry with defaults', () => {
    const r = parseDatabaseEntry('tracking', 'host=postgres port=5432 dbname=tracking user=postgres password=your_password', SRC);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.warnings, []);
    assert.deepEqual(r.entry, {
      name: 'tracking',
      host: 'postgres',
      port: 5432,
      dbname: 'tracking',
      user: 'postgres',
      password: 'your_password',
      source: SRC,
    });
  });

  it('empty value: unix socket, same name, port 5432', () => {
    const r = parseDatabaseEntry('foodb', '', SRC);
    assert.deepEqual(r.entry, { name: 'foodb', port: 5432, source: SRC });
  });

  it('parses every typed key', () => {
    const r = parseDatabaseEntry(
      'app',
      "host=/var/run/postgresql port=6000 pool_size=10 min_pool_size=2 reserve_pool=3 pool_mode=Transaction " +
        "max_db_connections=50 server_lifetime=1.5 client_encoding=UTF8 datestyle=ISO timezone=UTC " +
        "application_name=app connect_query='SET search_path = app'",
      SRC,
    );
    assert.deepEqual(r.errors, []);
    const e = r.entry;
    assert.ok(e);
    assert.equal(e.host, '/var/run/postgresql');
    assert.equal(e.port, 6000);
    assert.equal(e.pool_size, 10);
    assert.equal(e.min_pool_size, 2);
    assert.equal(e.reserve_pool_size, 3);
    assert.equal(e.pool_mode, 'transaction');
    assert.equal(e.max_db_connections, 50);
    assert.equal(e.server_lifetime, 1.5);
    assert.equal(e.client_encoding, 'UTF8');
    assert.equal(e.datestyle, 'ISO');
    assert.equal(e.timezone, 'UTC');
    assert.equal(e.application_name, 'app');
    assert.equal(e.connect_query, 'SET search_path = app');
  });

  it('warns for accepted-but-unimplemented keys', () => {
    const r = parseDatabaseEntry('app', "auth_user=pgb auth_query='SELECT 1' load_balance_hosts=disable", SRC);
    assert.deepEqual(r.errors, []);
    assert.equal(r.entry?.auth_user, 'pgb');
    assert.equal(r.entry?.load_balance_hosts, 'disable');
    // auth_user and auth_query are implemented; load_balance_hosts is not
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0]!.message, /load_balance_hosts \(database app\) is accepted but not implemented by pgtide yet; it has no effect$/);
  });

  it('unknown key: warning with file, line, key and a suggestion; entry still made', () => {
    const r = parseDatabaseEntry('app', 'host=x pol_size=5', SRC);
    assert.deepEqual(r.errors, []);
    assert.ok(r.entry);
    assert.equal(r.warnings.length, 1);
    const w = r.warnings[0];
    assert.equal(w?.file, 'pgbouncer.ini');
    assert.equal(w?.line, 7);
    assert.match(w?.message ?? '', /^pgbouncer\.ini:7: unknown parameter "pol_size" for database app ignored .*closest: pool_size/);
  });

  it('invalid values are errors naming file, line, key and what is accepted', () => {
    const cases: Array<[string, RegExp]> = [
      ['pool_size=abc', /invalid value "abc" for pool_size: expected an integer/],
      ['pool_mode=foo', /invalid value "foo" for pool_mode: expected one of: session, transaction, statement/],
      ['port=0', /invalid value "0" for port: expected a port number/],
      ['port=http', /for port/],
      ['server_lifetime=-1', /invalid value "-1" for server_lifetime: expected a number of seconds/],
      ['load_balance_hosts=random', /expected one of: round-robin, disable/],
    ];
    for (const [text, re] of cases) {
      const r = parseDatabaseEntry('app', text, SRC);
      assert.equal(r.entry, undefined, text);
      assert.equal(r.errors.length, 1, text);
      assert.match(r.errors[0]?.message ?? '', /^pgbouncer\.ini:7: /, text);
      assert.match(r.errors[0]?.message ?? '', re, text);
    }
  });

  it('syntax errors are errors', () => {
    const r = parseDatabaseEntry('app', "host='unterminated", SRC);
    assert.equal(r.entry, undefined);
    assert.match(r.errors[0]?.message ?? '', /syntax error in the settings of database app: unterminated quoted value/);
  });

  it('* is the fallback entry; pgbouncer is reserved', () => {
    const r = parseDatabaseEntry('*', 'host=foo', SRC);
    assert.equal(r.entry?.name, '*');
    assert.equal(r.entry?.host, 'foo');
    const bad = parseDatabaseEntry('pgbouncer', 'host=foo', SRC);
    assert.equal(bad.entry, undefined);
    assert.match(bad.errors[0]?.message ?? '', /"pgbouncer" is reserved/);
  });

  it('quotes odd database names in messages', () => {
    const r = parseDatabaseEntry('my db', 'nope=1', SRC);
    assert.match(r.warnings[0]?.message ?? '', /for database "my db" ignored/);
  });
});

describe('parseUserEntry', () => {
  it('parses every key', () => {
    const r = parseUserEntry(
      'alice',
      'pool_mode=session pool_size=4 reserve_pool_size=1 max_user_connections=9 query_timeout=30 ' +
        'idle_transaction_timeout=5 client_idle_timeout=60 query_wait_timeout=10',
      SRC,
    );
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.warnings, []);
    assert.deepEqual(r.entry, {
      name: 'alice',
      pool_mode: 'session',
      pool_size: 4,
      reserve_pool_size: 1,
      max_user_connections: 9,
      query_timeout: 30,
      idle_transaction_timeout: 5,
      client_idle_timeout: 60,
      query_wait_timeout: 10,
      source: SRC,
    });
  });

  it('accepted keys warn, unknown keys warn, bad values error', () => {
    const ok = parseUserEntry('bob', 'max_user_client_connections=3 transaction_timeout=9 host=x', SRC);
    assert.equal(ok.entry?.max_user_client_connections, 3);
    assert.equal(ok.entry?.transaction_timeout, 9);
    assert.equal(ok.warnings.length, 3);
    assert.match(ok.warnings[2]?.message ?? '', /unknown parameter "host" for user "bob"/);
    const bad = parseUserEntry('bob', 'pool_mode=sometimes', SRC);
    assert.equal(bad.entry, undefined);
    assert.match(bad.errors[0]?.message ?? '', /invalid value "sometimes" for pool_mode/);
  });
});

describe('key tables', () => {
  it('have unique names, docs and entry fields', () => {
    for (const keys of [DATABASE_KEYS, USER_KEYS]) {
      const names = keys.map((k) => k.name);
      assert.equal(new Set(names).size, names.length);
      for (const k of keys) assert.ok(k.doc.length > 5 && k.field.length > 0, k.name);
    }
    assert.equal(DATABASE_KEYS.find((k) => k.name === 'reserve_pool')?.field, 'reserve_pool_size');
  });
});

// The cheap look at statements in transaction pooling (src/pool/session-state.ts) and the LISTEN parser (notify.ts).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classify, classifyQuery, Hazard, readStateCheck, readsSequenceState, startsTransactionOnly, applySql, REASONS, STATE_CHECK_SQL } from '../../src/pool/session-state.js';
import { parseListen } from '../../src/pool/notify.js';

const TRACKED = new Set(['statement_timeout', 'search_path']);
const look = (sql: string) => {
  const b = Buffer.from(sql);
  return classify(b, 0, b.length, TRACKED);
};

describe('classify', () => {
  const cases: [string, Hazard, string?][] = [
    ['select 1', Hazard.None],
    ['SELECT abalance FROM pgbench_accounts WHERE aid = 1;', Hazard.None],
    ['update t set a = 1', Hazard.None],
    ['insert into t values (1)', Hazard.None],
    ['SET statement_timeout = 5', Hazard.Check, 'SET statement_timeout'],
    ['  /* c */ -- x\n set SESSION search_path to a', Hazard.Check, 'SET search_path'],
    ['SET application_name = x', Hazard.Check, 'SET application_name'],
    ['SET TIME ZONE UTC', Hazard.Check, 'SET timezone'],
    ['SET LOCAL work_mem = 1', Hazard.None],
    ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', Hazard.None],
    ['set enable_seqscan = off', Hazard.State, 'SET enable_seqscan'],
    ['SET ROLE x', Hazard.State, 'SET role'],
    ['SET SESSION AUTHORIZATION x', Hazard.State, 'SET SESSION AUTHORIZATION'],
    ['RESET ALL', Hazard.Check],
    ['PREPARE p AS select 1', Hazard.State, 'PREPARE'],
    ['SELECT 42 AS x INTO TEMP t', Hazard.State, 'SELECT … INTO TEMP'],
    ['select * into temporary table t from s', Hazard.State, 'SELECT … INTO TEMP'],
    ['WITH a AS (select 1) SELECT * INTO LOCAL TEMP t FROM a', Hazard.State, 'SELECT … INTO TEMP'],
    ['select * from temp', Hazard.None],
    ['select temp, tempo into t from x', Hazard.None],
    ['select * into temp_results from x', Hazard.None],
    ['insert into temp select 1', Hazard.None],
    ["DO $$ BEGIN EXECUTE 'SET work_mem = 1'; END $$", Hazard.Check],
    ['call refresh_things()', Hazard.Check],
    ['declare c cursor With\n  Hold for select 1', Hazard.State, 'DECLARE … WITH HOLD'],
    ['DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1', Hazard.None],
    ['declare c cursor for select holdings from t', Hazard.None],
    ['delete from t', Hazard.None],
    ['create table pg_temp.t (x int)', Hazard.Check],
    ['create table t (x int)', Hazard.None],
    ['LISTEN x', Hazard.State, 'LISTEN'],
    ['UNLISTEN *', Hazard.Check],
    ['LOAD \'auto_explain\'', Hazard.Lasting, 'LOAD'],
    ['CREATE TEMP TABLE t (a int)', Hazard.State, 'CREATE TEMP'],
    ['create local temporary table t (a int)', Hazard.State, 'CREATE TEMP'],
    ['CREATE TEMP TABLE t (a int) ON COMMIT DROP', Hazard.None],
    ['CREATE TABLE t (a int)', Hazard.None],
    ['DECLARE c CURSOR WITH HOLD FOR select 1', Hazard.State],
    ['DECLARE c CURSOR FOR select 1', Hazard.None],
    ['select pg_advisory_lock(1)', Hazard.State, 'advisory lock'],
    ['SELECT PG_TRY_ADVISORY_LOCK(1)', Hazard.State, 'advisory lock'],
    ['select pg_advisory_xact_lock(1)', Hazard.None],
    ['select pg_advisory_unlock(1)', Hazard.Check],
    ["select set_config('search_path', 'x', false)", Hazard.Check],
    ['with x as (select pg_advisory_lock(2)) select * from x', Hazard.State],
    ['DISCARD ALL', Hazard.Check],
    ['', Hazard.None],
  ];
  for (const [sql, hazard, what] of cases) {
    it(JSON.stringify(sql), () => {
      const c = look(sql);
      assert.equal(c.hazard, hazard);
      if (what) assert.equal(c.what, what);
    });
  }
});

describe('classifyQuery', () => {
  const q = (sql: string) => {
    const b = Buffer.from(sql);
    return classifyQuery(b, 0, b.length, TRACKED);
  };
  it('looks at every statement of a multi-statement query', () => {
    assert.equal(q('select 1; SET enable_seqscan = off').hazard, Hazard.State);
    assert.equal(q('select 1;\n  set statement_timeout = 5;').hazard, Hazard.Check);
    assert.equal(q('SELECT abalance FROM pgbench_accounts WHERE aid = 1;').hazard, Hazard.None);
    assert.equal(q("select 'a;b'").hazard, Hazard.None);
    assert.equal(q('set statement_timeout = 1; listen x').hazard, Hazard.State);
    // a LOAD after a statement that pins is still seen: it pins for good
    assert.equal(q("PREPARE p AS select 1; LOAD 'auto_explain'").hazard, Hazard.Lasting);
  });
});

describe('readsSequenceState', () => {
  const reads = (sql: string) => {
    const b = Buffer.from(`xx${sql}yy`);
    return readsSequenceState(b, 2, b.length - 2);
  };
  it('finds currval() and lastval() calls in any case, not other words', () => {
    for (const sql of ["select currval('s')", 'SELECT LASTVAL()', "select pg_catalog.currval ('s')", 'select LastVal\n()',
      "insert into t values (1); select lastval()", "select nextval('s'), currval('s')"])
      assert.equal(reads(sql), true, sql);
    for (const sql of ['select 1', "select nextval('s')", 'select mycurrval(1)', 'select lastval_x()', "select 'currval'",
      'insert into t (a) values (1)', 'select lastval', '(', 'currval'])
      assert.equal(reads(sql), false, sql);
  });
  it('stays inside its range', () => {
    const b = Buffer.from("lastval() select 1 currval(");
    assert.equal(readsSequenceState(b, 10, 18), false);
    assert.equal(readsSequenceState(b, 0, 9), true);
  });
});

describe('startsTransactionOnly', () => {
  const only = (sql: string) => {
    const b = Buffer.from(`xx${sql}yy`);
    return startsTransactionOnly(b, 2, b.length - 2);
  };
  it('is BEGIN or START TRANSACTION with options and nothing after', () => {
    for (const sql of ['BEGIN', 'begin', 'begin ', 'BEGIN;', ' /* x */ begin isolation level serializable ; ', 'START TRANSACTION READ ONLY', 'begin; -- done'])
      assert.equal(only(sql), true, sql);
    for (const sql of ['', 'select 1', 'BEGIN; select 1', "begin; select currval('s')", 'beginx', 'COMMIT', 'begin;;insert into t values (1)'])
      assert.equal(only(sql), false, sql);
  });
});

describe('readStateCheck and applySql', () => {
  it('keeps tracked settings, pins for the rest, ignores the varcache', () => {
    const r = readStateCheck(
      [['statement_timeout', '5000'], ['TimeZone', 'UTC'], ['#advisory locks', '0'], ['#LISTEN', '0']],
      TRACKED, new Set(['timezone']),
    );
    assert.deepEqual([...r.tracked], [['statement_timeout', '5000']]);
    assert.equal(r.pin, null);
    const p = readStateCheck([['enable_seqscan', 'off'], ['#advisory locks', '2']], TRACKED, new Set());
    assert.equal(p.pin, 'SET enable_seqscan, advisory locks: 2');
    assert.equal(r.reasons, 0);
    assert.equal(p.reasons, (1 << REASONS.indexOf('set')) | (1 << REASONS.indexOf('advisory_lock')));
  });
  it('names the category of every count the check asks for', () => {
    const counts = [...STATE_CHECK_SQL.matchAll(/'(#[^']+)'/g)].map((m) => m[1]!);
    assert.equal(counts.length, 6);
    const names = counts.map((n) => REASONS[Math.log2(readStateCheck([[n, '1']], TRACKED, new Set()).reasons)]);
    assert.deepEqual(names, ['advisory_lock', 'with_hold_cursor', 'sql_prepare', 'temp_table', 'temp_table', 'listen']);
  });
  it('gives each refusable statement its category', () => {
    const reason = (sql: string) => REASONS[look(sql).reason];
    assert.equal(reason('set enable_seqscan = off'), 'set');
    assert.equal(reason('select pg_advisory_lock(1)'), 'advisory_lock');
    assert.equal(reason('DECLARE c CURSOR WITH HOLD FOR select 1'), 'with_hold_cursor');
    assert.equal(reason('PREPARE p AS select 1'), 'sql_prepare');
    assert.equal(reason('create temporary table t (x int)'), 'temp_table');
    assert.equal(reason('LISTEN ch'), 'listen');
    assert.equal(reason("LOAD 'auto_explain'"), 'load');
  });
  it('sets what differs and resets what the client lacks', () => {
    assert.equal(
      applySql(new Map([['search_path', 'a, "b c"']]), new Map([['statement_timeout', '1'], ['search_path', 'x']])),
      `select pg_catalog.set_config('search_path', 'a, "b c"', false);RESET "statement_timeout";`,
    );
    assert.equal(applySql(new Map([['a', '1']]), new Map([['a', '1']])), '');
  });
});

describe('parseListen', () => {
  it('reads one LISTEN/UNLISTEN and folds the channel name', () => {
    assert.deepEqual(parseListen('LISTEN Jobs'), { listen: true, channel: 'jobs' });
    assert.deepEqual(parseListen(' listen "My ""Chan"""; '), { listen: true, channel: 'My "Chan"' });
    assert.deepEqual(parseListen('UNLISTEN *'), { listen: false, channel: null });
    assert.equal(parseListen('LISTEN *'), undefined);
    assert.equal(parseListen('LISTEN a; select 1'), undefined);
    assert.equal(parseListen('select 1'), undefined);
  });
});

/* The bench's pure helpers: pgbench -l parsing with the CPU window, the poolers' userlist.txt, idle-memory medians and ratios. */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readLog, workloadArgs } from '../../bench/pgbench.js';
import { userlist } from '../../bench/poolers.js';
import { summarizeIdle } from '../../bench/report.js';
import type { IdleRecord } from '../../bench/idle.js';
import { parseAuthFile, secretKind } from '../../src/config/auth-file.js';

describe('readLog', () => {
  it('keeps the latencies of successful transactions and counts those completed inside the window', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgtide-readlog-'));
    try {
      // client_id transaction_no time script_no time_epoch time_us
      writeFileSync(join(dir, 'x.1'), [
        '0 1 120 0 1700000000 500000', // 1700000000500 ms: before the window
        '1 1 failed 0 1700000001 0', //   failed: no latency, not counted
        '0 2 80 0 1700000001 900000', //  1700000001900 ms: inside
        '0 3 100 0 1700000003 1', //      1700000003000.001 ms: after
        '',
      ].join('\n'));
      writeFileSync(join(dir, 'x.1.1'), '3 7 50 0 1700000002 0'); // exactly at the end (inclusive), no final newline
      const r = readLog(dir, { fromMs: 1700000000600, toMs: 1700000002000 });
      assert.deepEqual([...r.latencies], [50, 80, 100, 120]);
      assert.equal(r.inWindow, 2);
      assert.equal(readLog(dir).inWindow, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('workloadArgs', () => {
  it('builds the TPC-B-like, connect and -t variants', () => {
    assert.deepEqual(workloadArgs({ id: 't', kind: 'tpcb', clients: 50, label: '' }, 10),
      ['-n', '-b', 'tpcb-like', '-T', '10', '-c', '50', '-j', '2', '-M', 'simple']);
    assert.deepEqual(workloadArgs({ id: 'c', kind: 'connect', clients: 10, label: '' }, 5),
      ['-n', '-S', '-T', '5', '-c', '10', '-j', '2', '-M', 'simple', '-C']);
    assert.deepEqual(workloadArgs({ id: 's', kind: 'prepared', clients: 1000, label: '' }, 0, 1),
      ['-n', '-S', '-t', '1', '-c', '1000', '-j', '2', '-M', 'prepared']);
  });
});

describe('userlist', () => {
  it('writes entries the auth_file parser reads back, a SCRAM secret as a SCRAM secret', () => {
    const scram = 'SCRAM-SHA-256$4096:3H07EFaVnKAR1U8++HVsAA==$Blms+NqDxbduBMZk33r7XxoE0szVCANOmbXfM3Tywc8=:ytE+u3r9Ce4sUENLEennWUxbQoWQkf9cnP6UEW4tlK8=';
    const text = userlist([{ name: 'app', secret: 'apppass' }, { name: 'app_scram', secret: scram }, { name: 'q"uote', secret: 'p"w' }]);
    const r = parseAuthFile(text, 'userlist.txt');
    assert.deepEqual(r.warnings, []);
    assert.deepEqual([...r.users], [['app', 'apppass'], ['app_scram', scram], ['q"uote', 'p"w']]);
    assert.equal(secretKind(scram), 'scram');
  });
});

describe('summarizeIdle', () => {
  it('takes medians over the rounds and divides by the bare Node.js server and PgBouncer', () => {
    const rec = (round: number, target: IdleRecord['target'], perClient: number, error?: string): IdleRecord => ({
      round, clients: 1000, target, position: 0, rssPerClientKiB: perClient, pssPerClientKiB: perClient, closedByServer: 0, error,
      before: { rssKiB: 1024 }, after: { rssKiB: 1024 + perClient * 1000 },
    });
    const s = summarizeIdle([
      rec(1, 'bare-node', 4), rec(2, 'bare-node', 5), rec(3, 'bare-node', 6),
      rec(1, 'pgbouncer', 1), rec(2, 'pgbouncer', 1), rec(3, 'pgbouncer', 100, 'failed'),
      rec(1, 'pgtide', 6), rec(2, 'pgtide', 8), rec(3, 'pgtide', 7),
    ], [1000], ['bare-node', 'pgbouncer', 'pgtide']);
    const tide = s.find((x) => x.target === 'pgtide')!;
    assert.equal(tide.rssPerClientKiB, 7);
    assert.equal(tide.vsBareNode, 7 / 5);
    assert.equal(tide.vsPgbouncer, 7);
    const bouncer = s.find((x) => x.target === 'pgbouncer')!;
    assert.deepEqual([bouncer.runs, bouncer.okRuns, bouncer.rssPerClientKiB], [3, 2, 1]);
  });
});

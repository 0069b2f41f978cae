/* Per-pool counters (PgBouncer's SHOW STATS figures), updated on the hot path with plain additions. */

import { performance } from 'node:perf_hooks';
import { TxStatus } from '../protocol/codes.js';
import { REASONS } from '../pool/session-state.js';

/** Times are in microseconds, as PgBouncer reports them. */
export class PoolStats {
  serverAssignCount = 0;
  xactCount = 0;
  queryCount = 0;
  bytesReceived = 0;
  bytesSent = 0;
  xactTimeUs = 0;
  queryTimeUs = 0;
  waitTimeUs = 0;
  clientLoginCount = 0;
  /** Parse of a named statement by a client, Parse sent to a server for one, Bind of one (prepared statements). */
  clientParseCount = 0;
  serverParseCount = 0;
  bindCount = 0;
  /** Batches retried after a shared prepared statement failed (pgtide's own counter). */
  stmtRetries = 0;
  /** A client's unnamed statement prepared again on a server that held another one (pgtide's own counter). */
  unnamedReprepares = 0;
  /** Statement messages of pipelining clients that waited for the answer to an earlier batch. */
  pipelineWaits = 0;
  /** Session-state checks run, clients pinned to their server, statements refused (session_state_policy). */
  stateChecks = 0;
  statePins = 0;
  stateRefusals = 0;
  /** Servers made to forget their sequence values before a client's currval()/lastval() (DISCARD SEQUENCES). */
  sequenceResets = 0;
  /** Pins and refusals by category, indexed by Reason (session-state.ts); a pin counts once for each it had. */
  readonly pinReasons: number[] = new Array<number>(REASONS.length).fill(0);
  readonly refusalReasons: number[] = new Array<number>(REASONS.length).fill(0);

  received(n: number): void {
    this.bytesReceived += n;
  }

  sent(n: number): void {
    this.bytesSent += n;
  }

  /** A server was linked to a client; waitStartMs is when the client began waiting (0 = it did not). */
  onAssign(waitStartMs: number): void {
    this.serverAssignCount++;
    if (waitStartMs > 0) this.waitTimeUs += Math.round((performance.now() - waitStartMs) * 1000);
  }

  /**
   * A ReadyForQuery arrived. `since` is when the request started; `xact` holds the transaction start
   * (0 = none) and the new value is returned.
   */
  onReady(since: number, xact: number, status: number): number {
    const now = performance.now();
    this.queryCount++;
    if (since > 0) this.queryTimeUs += Math.round((now - since) * 1000);
    if (status === TxStatus.Idle) {
      this.xactCount++;
      const start = xact > 0 ? xact : since;
      if (start > 0) this.xactTimeUs += Math.round((now - start) * 1000);
      return 0;
    }
    return xact > 0 ? xact : since;
  }
}

/** Sum of every pool's counters (the periodic stats line, SHOW TOTALS). */
export function sumStats(all: Iterable<PoolStats>): PoolStats {
  const t = new PoolStats();
  for (const s of all) {
    t.serverAssignCount += s.serverAssignCount;
    t.xactCount += s.xactCount;
    t.queryCount += s.queryCount;
    t.bytesReceived += s.bytesReceived;
    t.bytesSent += s.bytesSent;
    t.xactTimeUs += s.xactTimeUs;
    t.queryTimeUs += s.queryTimeUs;
    t.waitTimeUs += s.waitTimeUs;
    t.clientLoginCount += s.clientLoginCount;
    t.clientParseCount += s.clientParseCount;
    t.serverParseCount += s.serverParseCount;
    t.bindCount += s.bindCount;
    t.stmtRetries += s.stmtRetries;
    t.unnamedReprepares += s.unnamedReprepares;
    t.pipelineWaits += s.pipelineWaits;
    t.stateChecks += s.stateChecks;
    t.statePins += s.statePins;
    t.stateRefusals += s.stateRefusals;
    t.sequenceResets += s.sequenceResets;
    for (let i = 0; i < REASONS.length; i++) {
      t.pinReasons[i]! += s.pinReasons[i]!;
      t.refusalReasons[i]! += s.refusalReasons[i]!;
    }
  }
  return t;
}

/** PgBouncer's periodic line: rates over the period and average times per transaction/query/assignment. */
export function statsLine(prev: PoolStats, cur: PoolStats, seconds: number): string {
  const d = (k: keyof PoolStats) => (cur[k] as number) - (prev[k] as number);
  const per = (n: number) => Math.round(n / (seconds > 0 ? seconds : 1));
  const avg = (total: number, count: number) => (count > 0 ? Math.round(total / count) : 0);
  return (
    `stats: ${per(d('xactCount'))} xacts/s, ${per(d('queryCount'))} queries/s, ` +
    `in ${per(d('bytesReceived'))} B/s, out ${per(d('bytesSent'))} B/s, ` +
    `xact ${avg(d('xactTimeUs'), d('xactCount'))} us, query ${avg(d('queryTimeUs'), d('queryCount'))} us, ` +
    `wait ${avg(d('waitTimeUs'), d('serverAssignCount'))} us`
  );
}

/**
 * Averages over one stats_period, as PgBouncer's stats.c computes them: counts and bytes per second,
 * xact_time per transaction, query_time per query, wait_time per server assignment (µs, rounded down).
 */
export function averages(prev: PoolStats, cur: PoolStats, seconds: number): PoolStats {
  const a = new PoolStats();
  if (seconds <= 0) return a;
  const d = (k: keyof PoolStats) => (cur[k] as number) - (prev[k] as number);
  const per = (n: number) => Math.floor(n / seconds);
  const avg = (total: number, count: number) => (count > 0 ? Math.floor(total / count) : 0);
  a.serverAssignCount = per(d('serverAssignCount'));
  a.xactCount = per(d('xactCount'));
  a.queryCount = per(d('queryCount'));
  a.bytesReceived = per(d('bytesReceived'));
  a.bytesSent = per(d('bytesSent'));
  a.clientLoginCount = per(d('clientLoginCount'));
  a.clientParseCount = per(d('clientParseCount'));
  a.serverParseCount = per(d('serverParseCount'));
  a.bindCount = per(d('bindCount'));
  a.xactTimeUs = avg(d('xactTimeUs'), d('xactCount'));
  a.queryTimeUs = avg(d('queryTimeUs'), d('queryCount'));
  a.waitTimeUs = avg(d('waitTimeUs'), d('serverAssignCount'));
  return a;
}

/* Periodic maintenance: one tick (3 per second, like PgBouncer) checks every timeout against a cached
 * clock, keeps min_pool_size filled, opens the reserve pool, and retries failed server logins. */

import { performance } from 'node:perf_hooks';
import { SqlState } from '../protocol/sqlstate.js';
import { PoolerError } from '../util/errors.js';
import { clock } from '../util/clock.js';
import { log } from '../util/log.js';
import type { Pooler } from '../pooler.js';
import type { Pool } from './pool.js';
import { TxStatus } from '../protocol/codes.js';
import { ServerState } from './states.js';
import { averages, PoolStats, statsLine, sumStats } from '../stats/stats.js';
import { GROWTH_HOLD_MS, youngGeneration } from '../util/heap.js';

export const TICK_MS = 333;

export class Janitor {
  private timer: NodeJS.Timeout | null = null;
  private statsAt = clock.now;
  private statsPrev = new PoolStats();
  /** Per-database totals at the last stats_period tick, and the averages over that period (SHOW STATS). */
  private dbPrev = new Map<string, PoolStats>();
  readonly dbAverages = new Map<string, PoolStats>();
  /** Averages of all databases together over the last stats_period (SHOW TOTALS). */
  totalAverages = new PoolStats();

  constructor(private readonly pooler: Pooler) {}

  start(): void {
    if (!this.timer) this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  tick(): void {
    const now = clock.refresh();
    const st = this.pooler.settings;
    // logins that take too long
    const loginLimit = st.client_login_timeout * 1000;
    if (loginLimit > 0) {
      for (let c = this.pooler.loginClients.head; c; ) {
        const next = c.next as typeof c | null;
        if (now - c.connectTime > loginLimit) c.fail(new PoolerError(SqlState.ProtocolViolation, 'client_login_timeout'));
        c = next;
      }
    }
    let waiting = 0;
    for (const pool of [...this.pooler.pools()]) {
      waiting += pool.waitingClients.count;
      this.pool(pool, now);
    }
    const grow = youngGeneration.tick(now, waiting);
    if (grow !== null) {
      log.debug(grow ? `young generation may grow: ${waiting} clients wait for a server` : `young generation kept at its initial size: no queue for ${GROWTH_HOLD_MS / 1000} s`, this.pooler.own);
    }
    this.pooler.checkWaiters();
    if (st.stats_period > 0 && now - this.statsAt >= st.stats_period * 1000) {
      const cur = sumStats([...this.pooler.pools()].map((p) => p.stats));
      const seconds = (now - this.statsAt) / 1000;
      if (st.log_stats) log.log(statsLine(this.statsPrev, cur, seconds), this.pooler.own);
      this.totalAverages = averages(this.statsPrev, cur, seconds);
      this.statsPrev = cur;
      const byDb = this.databaseTotals();
      this.dbAverages.clear();
      for (const [name, totals] of byDb) this.dbAverages.set(name, averages(this.dbPrev.get(name) ?? new PoolStats(), totals, seconds));
      this.dbPrev = byDb;
      this.statsAt = now;
    }
    for (const [name, db] of this.pooler.databases) {
      if (!db.auto) continue;
      if (db.clientCount > 0 || db.serverCount > 0) db.lastUsed = now;
      else if (now - db.lastUsed > st.autodb_idle_timeout * 1000) {
        this.pooler.databases.delete(name);
        log.log(`dropping database '${name}' as it does not exist anymore or inactive auto-database`, this.pooler.own);
      }
    }
  }

  /** Counters summed per database (SHOW STATS, SHOW STATS_TOTALS). */
  databaseTotals(): Map<string, PoolStats> {
    const out = new Map<string, PoolStats>();
    for (const [name, db] of this.pooler.databases) out.set(name, sumStats([...db.pools.values()].map((p) => p.stats)));
    return out;
  }

  private pool(pool: Pool, now: number): void {
    const st = this.pooler.settings;
    const user = pool.user.entry;
    const perfNow = performance.now();

    // clients waiting for a server
    const waitLimit = st.query_wait_timeout * 1000;
    const reserveAfter = st.reserve_pool_timeout * 1000;
    const waitQueryLimit = (user?.query_timeout ?? st.query_timeout) * 1000; // PgBouncer applies it to waiting too
    for (let c = pool.waitingClients.head; c; ) {
      const next = c.next as typeof c | null;
      const waited = perfNow - c.waitStart;
      if (waitQueryLimit > 0 && waited > waitQueryLimit) {
        c.fail(new PoolerError(SqlState.QueryCanceled, 'query_timeout'));
      } else if (waitLimit > 0 && waited > waitLimit) {
        c.fail(new PoolerError(SqlState.ConnectionFailure, 'query_wait_timeout'));
      } else if (!pool.reserveActive && pool.reserveSize() > 0 && waited > reserveAfter) {
        pool.openReserve();
      }
      c = next;
    }
    for (let c = pool.loginWaitClients.head; c; ) {
      const next = c.next as typeof c | null;
      if (waitLimit > 0 && perfNow - c.waitStart > waitLimit)
        c.fail(new PoolerError(SqlState.ConnectionFailure, 'query_wait_timeout'));
      c = next;
    }
    if (pool.waitingClients.count === 0) pool.reserveActive = false;
    if (pool.slotRequests > 0 && pool.waitingClients.count === 0 && pool.loginWaitClients.count === 0) pool.withdrawSlots();

    // logged-in clients: idle, idle in transaction, long queries
    const clientIdle = (user?.client_idle_timeout ?? st.client_idle_timeout) * 1000;
    const idleTx = (user?.idle_transaction_timeout ?? st.idle_transaction_timeout) * 1000;
    const queryLimit = (user?.query_timeout ?? st.query_timeout) * 1000;
    if (clientIdle > 0 || idleTx > 0 || queryLimit > 0) {
      for (let c = pool.activeClients.head; c; ) {
        const next = c.next as typeof c | null;
        const s = c.server;
        if (!s) {
          if (clientIdle > 0 && now - c.lastActivity > clientIdle)
            c.fail(new PoolerError(SqlState.IdleSessionTimeout, 'client_idle_timeout'));
        } else if (s.outstanding > 0) {
          if (queryLimit > 0 && perfNow - s.requestStart > queryLimit) {
            s.sendCancel(); // closing alone leaves the query running in PostgreSQL until it next writes
            s.close('query timeout', false, SqlState.QueryCanceled);
          }
        } else if (s.txStatus !== TxStatus.Idle) {
          if (idleTx > 0 && now - c.lastActivity > idleTx)
            s.close('idle transaction timeout', false, SqlState.IdleInTransactionSessionTimeout);
        }
        c = next;
      }
    }

    // servers
    const connectLimit = st.server_connect_timeout * 1000;
    for (let s = pool.loginServers.head; s; ) {
      const next = s.next as typeof s | null;
      if (connectLimit > 0 && now - s.connectTime > connectLimit) {
        pool.connectFailed(new PoolerError(SqlState.ConnectionFailure, 'server connect timeout'));
        s.close('connect timeout');
      }
      s = next;
    }
    const idleLimit = st.server_idle_timeout * 1000;
    const lifetime = pool.serverLifetimeMs();
    const checkDelay = st.server_check_delay * 1000;
    const checking = this.pooler.checkQuery() !== null;
    const min = pool.minPoolSize();
    for (let s = pool.idleServers.head; s; ) {
      const next = s.next as typeof s | null;
      const idle = now - s.idleSince;
      if (s.closeNeeded) s.close('database configuration changed');
      else if (this.pooler.isPaused(pool.db)) s.close('pause mode');
      else if (lifetime > 0 && now - s.connectTime > lifetime) s.close('server lifetime over'); // min_pool_size refills
      else if (idleLimit > 0 && idle > idleLimit && pool.serverCount() > min) s.close('server idle timeout');
      else if (checking && idle > checkDelay) pool.setServerState(s, ServerState.Used);
      s = next;
    }
    for (let s = pool.usedServers.head; s; ) {
      const next = s.next as typeof s | null;
      if (idleLimit > 0 && now - s.idleSince > idleLimit && pool.serverCount() > min) s.close('server idle timeout');
      else if (lifetime > 0 && now - s.connectTime > lifetime) s.close('server lifetime over');
      s = next;
    }
    // pool size lowered by a reload: close unused servers above it, checked-later ones first (PgBouncer's check_pool_size)
    if (pool.poolSize() > 0) {
      for (let many = pool.serverCount() - (pool.poolSize() + pool.reserveSize()); many > 0; many--) {
        const s = pool.usedServers.head ?? pool.idleServers.head;
        if (!s) break;
        s.close('too many servers in the pool');
      }
    }

    // keep the pool filled and retry logins for waiting clients
    pool.fillMinPool();
    if (pool.waitingClients.count > 0 || pool.loginWaitClients.count > 0) {
      pool.launchIfNeeded();
      pool.failWaitersIfDown();
    }
  }
}

/* The primary's account of global limits (workers > 1): client slots leased to each worker (max_client_conn) and
 * server slots per worker and pool (pool_size + reserve, max_db_connections, max_user_connections). Pure bookkeeping: the
 * primary (cluster/primary.ts) turns its answers into messages. Workers are keyed by their cluster worker id, which a
 * restarted worker does not reuse, so a late message of a dead worker cannot count for its replacement. */

import type { SlotAsk } from './messages.js';

/** A worker's request for one server slot of a pool. Limits are the worker's own view of the config (0 = none). */
export interface SlotRequest extends SlotAsk {
  worker: number;
  id: number;
}

/** What a pool slot belongs to. */
export interface SlotOwner {
  pool: string;
  db: string;
  user: string;
}

/**
 * Tell a worker to give up `n` more server slots of a pool (idle servers close at once, the others when released
 * instead of serving the worker's next client), or with `reset` to stop giving them up.
 */
export interface Surrender extends SlotOwner {
  worker: number;
  n: number;
  reset: boolean;
}

/** Ask a worker to close one idle server of the database or user (not of pool `except`) for a waiting request. */
export interface Eviction {
  worker: number;
  db: string | null;
  user: string | null;
  except: string | null;
}

/** A worker that asked for a slot of a pool within this long still counts as wanting that pool (fair shares). */
export const DEMAND_MEMORY_MS = 1000;

function inc(m: Map<string, number>, k: string, by: number): void {
  const n = (m.get(k) ?? 0) + by;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

export class SlotTable {
  /** Client slots (max_client_conn) leased to each worker: its logged-in clients plus a few spare ones. */
  private readonly leased = new Map<number, number>();
  private leasedTotal = 0;
  /** Server slots per worker, by pool. */
  private readonly held = new Map<number, Map<string, SlotOwner & { n: number }>>();
  private readonly poolHeld = new Map<string, number>();
  private readonly dbHeld = new Map<string, number>();
  private readonly userHeld = new Map<string, number>();
  /** Requests waiting for a slot, oldest first. */
  private queue: SlotRequest[] = [];
  /** When each worker last asked for a slot of a pool (`worker\0pool`). */
  private readonly demandAt = new Map<string, number>();
  /** Slots asked back from each worker for each pool (`worker\0pool`) and not returned yet. */
  private readonly asked = new Map<string, Surrender>();

  // ---- clients (max_client_conn) ----

  /**
   * Lease up to `want` client slots to a worker, within max over all workers; returns how many (0: none free). A worker
   * logs clients in against its lease without asking, and asks again only when it has used it up.
   */
  leaseClients(worker: number, want: number, max: number): number {
    const n = Math.max(0, Math.min(want, max - this.leasedTotal));
    if (n > 0) {
      this.leased.set(worker, (this.leased.get(worker) ?? 0) + n);
      this.leasedTotal += n;
    }
    return n;
  }

  /** A worker gives back n client slots of its lease (clients gone, or asked for by reclaim). */
  returnClients(worker: number, n: number): void {
    const have = this.leased.get(worker) ?? 0;
    const back = Math.min(have, Math.max(0, n));
    this.leased.set(worker, have - back);
    this.leasedTotal -= back;
  }

  /** Workers holding client slots besides `worker` (asked to give back their spare ones when none is free). */
  clientHolders(except: number): number[] {
    return [...this.leased].filter(([w, n]) => w !== except && n > 0).map(([w]) => w);
  }

  get clientsLeased(): number {
    return this.leasedTotal;
  }

  leasedBy(worker: number): number {
    return this.leased.get(worker) ?? 0;
  }

  // ---- server slots ----

  serversOf(worker: number): number {
    let n = 0;
    for (const h of this.held.get(worker)?.values() ?? []) n += h.n;
    return n;
  }

  heldBy(worker: number, pool: string): number {
    return this.held.get(worker)?.get(pool)?.n ?? 0;
  }

  poolTotal(pool: string): number {
    return this.poolHeld.get(pool) ?? 0;
  }

  /** The granted request took the pool beyond pool_size (a reserve_pool connection). */
  isReserve(r: SlotRequest): boolean {
    return r.poolSize > 0 && this.poolTotal(r.pool) > r.poolSize;
  }

  get queued(): readonly SlotRequest[] {
    return this.queue;
  }

  private fitsPool(r: SlotRequest): boolean {
    return r.poolMax <= 0 || (this.poolHeld.get(r.pool) ?? 0) < r.poolMax;
  }

  private fitsDb(r: SlotRequest): boolean {
    return r.dbMax <= 0 || (this.dbHeld.get(r.db) ?? 0) < r.dbMax;
  }

  private fitsUser(r: SlotRequest): boolean {
    return r.userMax <= 0 || (this.userHeld.get(r.user) ?? 0) < r.userMax;
  }

  private fits(r: SlotRequest): boolean {
    return this.fitsPool(r) && this.fitsDb(r) && this.fitsUser(r);
  }

  /** Count a slot as taken, whatever the limits (granted requests, and the pooler's own connections). */
  take(worker: number, o: SlotOwner): void {
    let mine = this.held.get(worker);
    if (!mine) this.held.set(worker, (mine = new Map()));
    const h = mine.get(o.pool);
    if (h) h.n++;
    else mine.set(o.pool, { pool: o.pool, db: o.db, user: o.user, n: 1 });
    inc(this.poolHeld, o.pool, 1);
    inc(this.dbHeld, o.db, 1);
    inc(this.userHeld, o.user, 1);
  }

  /**
   * A worker asks for a slot: 'granted' (counted), 'queued' (wait: granted later by release()), or 'refused' (a
   * request that does not wait, such as a min_pool_size top-up).
   */
  ask(r: SlotRequest, wait: boolean, now: number): 'granted' | 'queued' | 'refused' {
    if (wait) this.demandAt.set(`${r.worker}\0${r.pool}`, now);
    if (this.fits(r)) {
      this.take(r.worker, r);
      return 'granted';
    }
    if (!wait) return 'refused';
    this.queue.push(r);
    return 'queued';
  }

  /**
   * A server slot is free again (`surrendered`: given back because surrenders() asked for it); returns the queued
   * requests granted by it (already counted).
   */
  release(worker: number, o: SlotOwner, surrendered = false): SlotRequest[] {
    if (surrendered) {
      const k = `${worker}\0${o.pool}`;
      const a = this.asked.get(k);
      if (a && --a.n <= 0) this.asked.delete(k);
    }
    const mine = this.held.get(worker);
    const h = mine?.get(o.pool);
    if (!mine || !h) return [];
    if (--h.n <= 0) mine.delete(o.pool);
    inc(this.poolHeld, o.pool, -1);
    inc(this.dbHeld, o.db, -1);
    inc(this.userHeld, o.user, -1);
    return this.grantQueued();
  }

  /**
   * Grant every queued request that fits now. Among those that fit, the one whose worker holds the fewest slots of
   * its pool goes first (then the oldest), so slots spread over the workers that want them.
   */
  grantQueued(): SlotRequest[] {
    const granted: SlotRequest[] = [];
    for (;;) {
      let best = -1;
      for (let i = 0; i < this.queue.length; i++) {
        const r = this.queue[i]!;
        if (!this.fits(r)) continue;
        if (best < 0 || this.heldBy(r.worker, r.pool) < this.heldBy(this.queue[best]!.worker, this.queue[best]!.pool)) best = i;
      }
      if (best < 0) return granted;
      const r = this.queue.splice(best, 1)[0]!;
      this.take(r.worker, r);
      granted.push(r);
    }
  }

  /** The worker no longer needs its queued requests for the pool: returns them (to be answered "not granted"). */
  withdraw(worker: number, pool: string): SlotRequest[] {
    const out = this.queue.filter((r) => r.worker === worker && r.pool === pool);
    if (out.length > 0) this.queue = this.queue.filter((r) => !(r.worker === worker && r.pool === pool));
    this.demandAt.delete(`${worker}\0${pool}`);
    return out;
  }

  /** A worker exited: everything it held is free. Returns the requests this grants to the others. */
  workerGone(worker: number): SlotRequest[] {
    this.leasedTotal -= this.leased.get(worker) ?? 0;
    this.leased.delete(worker);
    for (const h of this.held.get(worker)?.values() ?? []) {
      inc(this.poolHeld, h.pool, -h.n);
      inc(this.dbHeld, h.db, -h.n);
      inc(this.userHeld, h.user, -h.n);
    }
    this.held.delete(worker);
    this.queue = this.queue.filter((r) => r.worker !== worker);
    for (const k of [...this.demandAt.keys()]) if (k.startsWith(`${worker}\0`)) this.demandAt.delete(k);
    for (const k of [...this.asked.keys()]) if (k.startsWith(`${worker}\0`)) this.asked.delete(k);
    return this.grantQueued();
  }

  // ---- moving slots between workers ----

  /**
   * For each pool whose queued requests are held back by the pool size: the workers that want the pool (a queued
   * request, or one within DEMAND_MEMORY_MS) share it evenly (rounded up). As many slots as there are queued requests
   * (less those already asked back and not yet returned) are asked back: first from workers that do not want the pool
   * (their idle servers close at once, the others when released), then from workers above their share. Returns the
   * messages to send: `n` more slots to give back, or `reset` when nobody waits for the pool any more.
   */
  surrenders(now: number): Surrender[] {
    const out: Surrender[] = [];
    const pools = new Map<string, { r: SlotRequest; need: number }>();
    for (const r of this.queue) {
      if (this.fitsPool(r)) continue;
      const p = pools.get(r.pool);
      if (p) p.need++;
      else pools.set(r.pool, { r, need: 1 });
    }
    for (const [k, a] of this.asked) {
      const sep = k.indexOf('\0');
      const pool = k.slice(sep + 1);
      if (pools.has(pool)) pools.get(pool)!.need -= a.n;
      else {
        this.asked.delete(k);
        out.push({ ...a, n: 0, reset: true });
      }
    }
    for (const [pool, { r, need }] of pools) {
      if (need <= 0) continue;
      const wanting = new Set<number>();
      for (const [k, at] of this.demandAt) {
        const sep = k.indexOf('\0');
        if (k.slice(sep + 1) === pool && now - at <= DEMAND_MEMORY_MS) wanting.add(Number(k.slice(0, sep)));
      }
      for (const q of this.queue) if (q.pool === pool) wanting.add(q.worker);
      const share = Math.ceil(r.poolMax / Math.max(1, wanting.size));
      const holders: (SlotOwner & { worker: number; spare: number })[] = [];
      for (const [worker, mine] of this.held) {
        const h = mine.get(pool);
        if (!h) continue;
        const asked = this.asked.get(`${worker}\0${pool}`)?.n ?? 0;
        holders.push({ pool, db: h.db, user: h.user, worker, spare: (wanting.has(worker) ? h.n - share : h.n) - asked });
      }
      // workers that do not want the pool first (all they hold is spare), then the largest spare
      holders.sort((a, b) => Number(wanting.has(a.worker)) - Number(wanting.has(b.worker)) || b.spare - a.spare || a.worker - b.worker);
      let left = need;
      for (const h of holders) {
        if (left <= 0) break;
        const n = Math.min(h.spare, left);
        if (n <= 0) continue;
        left -= n;
        const k = `${h.worker}\0${pool}`;
        const a = this.asked.get(k);
        if (a) a.n += n;
        else this.asked.set(k, { worker: h.worker, pool, db: h.db, user: h.user, n, reset: false });
        out.push({ worker: h.worker, pool, db: h.db, user: h.user, n, reset: false });
      }
    }
    for (const [k, at] of this.demandAt) if (now - at > DEMAND_MEMORY_MS && !this.queue.some((q) => `${q.worker}\0${q.pool}` === k)) this.demandAt.delete(k);
    return out;
  }

  /**
   * Queued requests held back by max_db_connections or max_user_connections (not the pool size): ask every worker
   * holding slots of that database or user to close one idle server of another pool, as a single pooler evicts one.
   */
  evictions(): Eviction[] {
    const out = new Map<string, Eviction>();
    for (const r of this.queue) {
      if (!this.fitsPool(r)) continue;
      const byDb = !this.fitsDb(r);
      const byUser = !byDb && !this.fitsUser(r);
      if (!byDb && !byUser) continue;
      for (const [worker, mine] of this.held) {
        let holds = false;
        for (const h of mine.values()) if (byDb ? h.db === r.db : h.user === r.user) holds = true;
        if (!holds) continue;
        const except = worker === r.worker ? r.pool : null;
        const k = `${worker}\0${byDb ? 'd' : 'u'}\0${byDb ? r.db : r.user}`;
        if (!out.has(k)) out.set(k, { worker, db: byDb ? r.db : null, user: byUser ? r.user : null, except });
      }
    }
    return [...out.values()];
  }
}

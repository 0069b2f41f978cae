/* A worker's side of the IPC with the primary (workers > 1): asks for client and server slots, tells when they are
 * free, forwards cancel requests and console work, and hands the primary's requests to the pooler. The pooler keeps a
 * WorkerLink only when it runs as a worker; with workers = 1 there is none and nothing here runs. */

import type { Op, Part, SlotAsk, Table, ToPrimary, ToWorker, WorkerInfo } from './messages.js';
import { WORKER_SHIFT } from './messages.js';

/** What the pooler does for the primary. */
export interface WorkerHandlers {
  /** Give up n more server slots of a pool, or stop giving them up (reset). */
  surrender(db: string, user: string, n: number, reset: boolean): void;
  /** Close one idle server of the database or user (not of pool `except`), for another worker's waiting client. */
  evict(db: string | null, user: string | null, except: string | null): void;
  /** A CancelRequest for one of this worker's clients. */
  cancel(pid: number, key: number): void;
  /** This worker's rows for `SHOW what` (null: not a gathered SHOW). */
  show(what: string): Table | null;
  /** Run an Op (console command, reload, signals); resolves with its answer. */
  op(op: Op): Promise<Uint8Array | boolean | null>;
}

type Reply = Extract<ToWorker, { t: 're' }>;

export class WorkerLink {
  handlers: WorkerHandlers | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, (m: Reply) => void>();

  constructor(
    /** 1…workers: names the worker in logs, ids and cancel keys. */
    readonly index: number,
    readonly workers: number,
  ) {
    process.on('message', (m: ToWorker) => this.onMessage(m));
  }

  private send(m: ToPrimary): void {
    if (process.connected) process.send!(m);
  }

  private request(build: (id: number) => ToPrimary, cb: (m: Reply) => void): void {
    const id = this.nextId++;
    this.pending.set(id, cb);
    this.send(build(id));
  }

  ready(): void {
    this.send({ t: 'ready' });
  }

  // ---- clients (max_client_conn) ----

  /** Client slots leased from the primary, and how many of them logged-in clients use. */
  private lease = 0;
  private used = 0;

  /** Client slots asked for at a time: a few, so most logins need no message (1 for a small max_client_conn). */
  private batch(max: number): number {
    return Math.max(1, Math.min(16, Math.floor(max / (this.workers * 8))));
  }

  /**
   * A client slot for a login (max_client_conn over all workers). Returns true when the lease had one (no message);
   * otherwise asks the primary and returns false, and cb says later whether the client got one.
   */
  takeClient(max: number, cb: (ok: boolean) => void): boolean {
    if (this.used < this.lease) {
      this.used++;
      return true;
    }
    this.request((id) => ({ t: 'cl?', id, want: this.batch(max), max }), (m) => {
      this.lease += m.n ?? 0;
      if (this.used < this.lease) {
        this.used++;
        cb(true);
      } else cb(false);
    });
    return false;
  }

  /** A client that had a slot is gone; spare slots beyond two batches go back to the primary. */
  releaseClient(max: number): void {
    this.used--;
    const spare = this.lease - this.used;
    const keep = this.batch(max);
    if (spare > 2 * keep) {
      this.lease -= spare - keep;
      this.send({ t: 'cl-', n: spare - keep });
    }
  }

  // ---- server slots ----

  /**
   * One server slot: `wait` queues until one is free; cb(false) for a refused or withdrawn request, `reserve` when
   * the slot is beyond pool_size (reserve_pool).
   */
  askServer(ask: SlotAsk, wait: boolean, cb: (ok: boolean, reserve: boolean) => void): void {
    this.request((id) => ({ t: 'sv?', id, wait, ...ask }), (m) => cb(m.ok === true, m.reserve === true));
  }

  serverTaken(pool: string, db: string, user: string): void {
    this.send({ t: 'sv+', pool, db, user });
  }

  serverReleased(pool: string, db: string, user: string, surrendered: boolean): void {
    this.send({ t: 'sv-', pool, db, user, surrendered });
  }

  withdraw(pool: string): void {
    this.send({ t: 'sv~', pool });
  }

  // ---- cancel requests ----

  /** The worker whose client got this BackendKeyData process id (0: not made by a worker). */
  static ownerOf(pid: number): number {
    return pid >>> WORKER_SHIFT;
  }

  forwardCancel(pid: number, key: number): void {
    this.send({ t: 'cancel', pid, key });
  }

  // ---- console ----

  /** Every worker's rows for `SHOW what`, and the primary's figures per worker. */
  gather(what: string): Promise<{ parts: Part[]; workers: WorkerInfo[] }> {
    return new Promise((resolve) =>
      this.request((id) => ({ t: 'gather', id, what }), (m) => resolve({ parts: m.parts ?? [], workers: m.workers ?? [] })),
    );
  }

  /** Run an Op on every worker (this one included); resolves with their answers, in worker order. */
  broadcast(op: Op): Promise<(Uint8Array | boolean | null)[]> {
    return new Promise((resolve) => this.request((id) => ({ t: 'bcast', id, op }), (m) => resolve(m.answers ?? [])));
  }

  shutdown(how: 'immediate' | 'wait-for-servers' | 'wait-for-clients'): void {
    this.send({ t: 'shutdown', how });
  }

  // ---- from the primary ----

  private onMessage(m: ToWorker): void {
    const h = this.handlers;
    switch (m.t) {
      case 're': {
        const cb = this.pending.get(m.id);
        if (!cb) return;
        this.pending.delete(m.id);
        cb(m);
        return;
      }
      case 'surrender':
        h?.surrender(m.db, m.user, m.n, m.reset);
        return;
      case 'reclaim': {
        const n = this.lease - this.used;
        this.lease = this.used;
        this.send({ t: 'reclaimed', id: m.id, n });
        return;
      }
      case 'evict':
        h?.evict(m.db, m.user, m.except);
        return;
      case 'cancel':
        h?.cancel(m.pid, m.key);
        return;
      case 'show': {
        let table: Table | null = null;
        try {
          table = h?.show(m.what) ?? null;
        } finally {
          this.send({ t: 'ans', id: m.id, table });
        }
        return;
      }
      case 'op': {
        const done = (data: Uint8Array | boolean | null) =>
          this.send(typeof data === 'boolean' ? { t: 'ans', id: m.id, ok: data } : { t: 'ans', id: m.id, data });
        if (!h) done(null);
        else h.op(m.op).then(done, () => done(null));
        return;
      }
    }
  }
}

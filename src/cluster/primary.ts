/* The primary process (workers > 1): forks the workers (node:cluster) that serve clients on the shared port, keeps
 * the global limits (slots.ts), routes cancel requests and console work between workers, turns signals into work for
 * every worker, and starts a new worker when one dies. It serves no client itself. */

import cluster, { type Worker } from 'node:cluster';
import { log } from '../util/log.js';
import { SlotTable, type SlotRequest } from './slots.js';
import { WORKER_ENV, WORKER_SHIFT, type Op, type Part, type ToPrimary, type ToWorker, type WorkerInfo } from './messages.js';

/** Round-robin through the primary: see start(). */
const SCHEDULING = cluster.SCHED_RR;

/** The primary re-checks fair shares and asks for idle servers (max_db/user_connections) this often. */
const TICK_MS = 333;
/** A SHOW waits this long for every worker's rows, then answers with those it has. */
const GATHER_TIMEOUT_MS = 5_000;
/** After SIGTERM / SHUTDOWN, workers still running after this are killed. */
const EXIT_KILL_MS = 10_000;
/** Workers asked to give back spare client slots have this long to answer. */
const RECLAIM_TIMEOUT_MS = 1_000;
/** A worker that dies sooner than this after its start is restarted after RESTART_DELAY_MS (no restart storm). */
const QUICK_DEATH_MS = 2_000;
const RESTART_DELAY_MS = 1_000;

interface Member {
  index: number;
  worker: Worker | null;
  pid: number;
  ready: boolean;
  restarts: number;
  startedAt: number;
}

/** A SHOW or an Op sent to every worker, waiting for their answers. */
interface Collect {
  kind: 'show' | 'op';
  /** Who asked (null: the primary itself, for a signal). */
  from: { member: Member; id: number } | null;
  waiting: Set<number>;
  parts: Part[];
  answers: Map<number, Uint8Array | boolean | null>;
  timer: NodeJS.Timeout | null;
}

export interface PrimaryHooks {
  /** Re-read the config file for the primary's own settings (the log) on SIGHUP / RELOAD. */
  reload(): void;
  /** Exit the process: 0 after a shutdown, 1 when the workers could not start. */
  exit(code: number): void;
}

type Stopping = 'none' | 'safe' | 'clients' | 'exit';

export class Primary {
  private readonly members: Member[] = [];
  private readonly byWorkerId = new Map<number, Member>();
  private readonly slots = new SlotTable();
  private stopping: Stopping = 'none';
  private starting = true;
  private nextId = 1;
  private readonly collects = new Map<number, Collect>();
  /** Client-slot requests waiting for other workers to give back their spare slots. */
  private readonly reclaims = new Map<number, { from: Member; wid: number; id: number; max: number; waiting: Set<number>; timer: NodeJS.Timeout }>();
  private tick: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();
  private started: { resolve: () => void; reject: (err: Error) => void } | null = null;
  /** State changes made while running (signals, console PAUSE, SET…), replayed to a worker that starts later. */
  private replay: Op[] = [];

  constructor(
    private readonly count: number,
    private readonly hooks: PrimaryHooks,
  ) {}

  /**
   * Fork the workers; resolves once every one listens, rejects if one exits first (port in use, bad TLS file…).
   *
   * Scheduling: round-robin through the primary (SCHED_RR) rather than SCHED_NONE. With SCHED_NONE every worker
   * accepts on the shared socket and Linux wakes whichever is waiting, which piles most connections on one or two
   * processes; pooled clients live long and their work follows their connection, so an even spread matters more than
   * the cost of the primary accepting each connection and passing it on (one IPC message per connection, never per
   * query).
   */
  start(): Promise<void> {
    // Node's own NODE_CLUSTER_SCHED_POLICY (rr / none) still wins, for experiments
    if (!process.env.NODE_CLUSTER_SCHED_POLICY) cluster.schedulingPolicy = SCHEDULING;
    cluster.setupPrimary({ serialization: 'advanced' });
    const ready = new Promise<void>((resolve, reject) => {
      this.started = { resolve, reject };
    });
    for (let i = 1; i <= this.count; i++) {
      const m: Member = { index: i, worker: null, pid: 0, ready: false, restarts: 0, startedAt: 0 };
      this.members.push(m);
      this.fork(m);
    }
    this.tick = setInterval(() => this.onTick(), TICK_MS);
    this.tick.unref();
    return ready;
  }

  private fork(m: Member): void {
    const w = cluster.fork({ [WORKER_ENV]: String(m.index) });
    m.worker = w;
    m.pid = w.process.pid ?? 0;
    m.ready = false;
    m.startedAt = Date.now();
    this.byWorkerId.set(w.id, m);
    w.on('message', (msg: ToPrimary) => {
      if (m.worker === w) this.onMessage(m, w, msg);
    });
    w.on('exit', (code, signal) => this.onExit(m, w, code, signal));
  }

  private send(m: Member | undefined, msg: ToWorker): void {
    const w = m?.worker;
    if (w && w.isConnected()) w.send(msg);
  }

  private live(): Member[] {
    return this.members.filter((m) => m.worker !== null && m.ready);
  }

  // ---- signals and shutdown ----

  /** SIGHUP / console RELOAD: the primary's log settings, then every worker re-reads the file. */
  reload(): void {
    this.hooks.reload();
    this.collect('op', { kind: 'reload' }, null);
  }

  pause(): void {
    this.collect('op', { kind: 'pause' }, null);
  }

  resume(): void {
    if (this.stopping !== 'none') {
      log.log('got SIGUSR2 while shutting down, ignoring');
      return;
    }
    log.log('got SIGUSR2, continuing');
    this.collect('op', { kind: 'resume' }, null);
  }

  /**
   * Stop the workers: 'safe' (SIGINT, SHUTDOWN WAIT_FOR_SERVERS) lets transactions finish; 'clients' (SHUTDOWN
   * WAIT_FOR_CLIENTS) waits for every client to leave; 'exit' (SIGTERM, SHUTDOWN, a second SIGINT) closes everything
   * now. The primary exits once every worker has.
   */
  stop(how: Exclude<Stopping, 'none'>): void {
    if (how !== 'exit' && this.stopping !== 'none') return;
    if (this.stopping === 'exit') return;
    this.stopping = how;
    const op: Op = how === 'safe' ? { kind: 'safe-stop' } : how === 'clients' ? { kind: 'wait-clients' } : { kind: 'exit' };
    for (const m of this.members) this.send(m, { t: 'op', id: 0, op });
    if (how === 'exit') {
      setTimeout(() => {
        for (const m of this.members) if (m.worker) m.worker.process.kill('SIGKILL');
      }, EXIT_KILL_MS).unref();
    }
    this.checkStopped();
  }

  get stoppingMode(): Stopping {
    return this.stopping;
  }

  private checkStopped(): void {
    if (this.stopping === 'none' || this.members.some((m) => m.worker !== null)) return;
    if (this.tick) clearInterval(this.tick);
    log.log('all workers exited, exiting');
    this.hooks.exit(0);
  }

  // ---- worker lifecycle ----

  private onExit(m: Member, w: Worker, code: number | null, signal: string | null): void {
    if (m.worker !== w) return;
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    m.worker = null;
    const wasReady = m.ready;
    m.ready = false;
    this.byWorkerId.delete(w.id);
    this.grant(this.slots.workerGone(w.id));
    this.rebalance();
    for (const [id, c] of this.collects) {
      if (c.waiting.delete(m.index) && c.waiting.size === 0) this.finish(id, c);
    }
    for (const [id, r] of this.reclaims) {
      if (r.from === m) this.endReclaim(id);
      else if (r.waiting.delete(m.index) && r.waiting.size === 0) this.endReclaim(id);
    }
    if (this.stopping !== 'none') {
      this.checkStopped();
      return;
    }
    if (this.starting) {
      log.fatal(`worker ${m.index} (pid ${m.pid}) exited during startup (${how})`);
      this.stopping = 'exit';
      for (const o of this.members) if (o.worker) o.worker.process.kill('SIGTERM');
      this.started?.reject(new Error(`worker ${m.index} exited during startup (${how})`));
      return;
    }
    m.restarts++;
    const quick = !wasReady || Date.now() - m.startedAt < QUICK_DEATH_MS;
    log.error(`worker ${m.index} (pid ${m.pid}) died (${how}); its slots are free; starting a new one${quick ? ` in ${RESTART_DELAY_MS} ms` : ''}`);
    if (quick)
      setTimeout(() => {
        if (this.stopping === 'none' && m.worker === null) this.fork(m);
      }, RESTART_DELAY_MS);
    else this.fork(m);
  }

  // ---- messages from the workers ----

  private onMessage(m: Member, w: Worker, msg: ToPrimary): void {
    const wid = w.id;
    switch (msg.t) {
      case 'ready':
        m.ready = true;
        if (m.restarts > 0) log.log(`worker ${m.index} restarted (pid ${m.pid})`);
        for (const op of this.replay) this.send(m, { t: 'op', id: 0, op });
        if (this.starting && this.members.every((x) => x.ready)) {
          this.starting = false;
          this.started?.resolve();
        }
        return;
      case 'cl?': {
        const n = this.slots.leaseClients(wid, msg.want, msg.max);
        if (n > 0) this.send(m, { t: 're', id: msg.id, ok: true, n });
        else this.reclaim(m, wid, msg.id, msg.max);
        return;
      }
      case 'cl-':
        this.slots.returnClients(wid, msg.n);
        return;
      case 'reclaimed': {
        this.slots.returnClients(wid, msg.n);
        const r = this.reclaims.get(msg.id);
        if (r && r.waiting.delete(m.index) && r.waiting.size === 0) this.endReclaim(msg.id);
        return;
      }
      case 'sv?': {
        const r: SlotRequest = {
          worker: wid, id: msg.id, pool: msg.pool, db: msg.db, user: msg.user, poolSize: msg.poolSize, poolMax: msg.poolMax,
          dbMax: msg.dbMax, userMax: msg.userMax,
        };
        const res = this.slots.ask(r, msg.wait, Date.now());
        if (res !== 'queued') this.send(m, { t: 're', id: msg.id, ok: res === 'granted', reserve: res === 'granted' && this.slots.isReserve(r) });
        this.rebalance();
        return;
      }
      case 'sv+':
        this.slots.take(wid, msg);
        return;
      case 'sv-':
        this.grant(this.slots.release(wid, msg, msg.surrendered));
        this.rebalance();
        return;
      case 'sv~':
        for (const r of this.slots.withdraw(wid, msg.pool)) this.send(m, { t: 're', id: r.id, ok: false });
        this.rebalance();
        return;
      case 'cancel': {
        const owner = this.members[(msg.pid >>> WORKER_SHIFT) - 1];
        if (owner?.worker && owner.ready) this.send(owner, { t: 'cancel', pid: msg.pid, key: msg.key });
        else log.log('failed cancel request: no worker for that key');
        return;
      }
      case 'gather':
        this.collect('show', msg.what, { member: m, id: msg.id });
        return;
      case 'bcast':
        if (msg.op.kind === 'reload') this.hooks.reload();
        this.collect('op', msg.op, { member: m, id: msg.id });
        return;
      case 'shutdown':
        this.stop(msg.how === 'immediate' ? 'exit' : msg.how === 'wait-for-servers' ? 'safe' : 'clients');
        return;
      case 'ans': {
        const c = this.collects.get(msg.id);
        if (!c || !c.waiting.delete(m.index)) return;
        if (c.kind === 'show') c.parts.push({ index: m.index, pid: m.pid, table: msg.table ?? null });
        else c.answers.set(m.index, msg.data ?? msg.ok ?? null);
        if (c.waiting.size === 0) this.finish(msg.id, c);
        return;
      }
    }
  }

  /**
   * No client slot is free for a worker's login: the other workers give back the spare slots of their leases, then
   * the login gets one if that freed any (max_client_conn is then as exact as with one process).
   */
  private reclaim(from: Member, wid: number, id: number, max: number): void {
    const holders = this.slots.clientHolders(wid).map((w) => this.byWorkerId.get(w)).filter((x): x is Member => x !== undefined);
    if (holders.length === 0) {
      this.send(from, { t: 're', id, ok: false, n: 0 });
      return;
    }
    const rid = this.nextId++;
    const timer = setTimeout(() => this.endReclaim(rid), RECLAIM_TIMEOUT_MS);
    this.reclaims.set(rid, { from, wid, id, max, waiting: new Set(holders.map((h) => h.index)), timer });
    for (const h of holders) this.send(h, { t: 'reclaim', id: rid });
  }

  private endReclaim(rid: number): void {
    const r = this.reclaims.get(rid);
    if (!r) return;
    this.reclaims.delete(rid);
    clearTimeout(r.timer);
    if (r.from.worker === null) return;
    const n = this.slots.leaseClients(r.wid, 1, r.max);
    this.send(r.from, { t: 're', id: r.id, ok: n > 0, n });
  }

  /** Tell the workers whose queued requests were granted. */
  private grant(granted: readonly SlotRequest[]): void {
    for (const r of granted) {
      const m = this.byWorkerId.get(r.worker);
      if (m) this.send(m, { t: 're', id: r.id, ok: true, reserve: this.slots.isReserve(r) });
    }
  }

  private rebalance(): void {
    for (const s of this.slots.surrenders(Date.now())) {
      const m = this.byWorkerId.get(s.worker);
      this.send(m, { t: 'surrender', pool: s.pool, db: s.db, user: s.user, n: s.n, reset: s.reset });
    }
  }

  private onTick(): void {
    if (this.slots.queued.length === 0) return;
    this.rebalance();
    for (const e of this.slots.evictions()) this.send(this.byWorkerId.get(e.worker), { t: 'evict', db: e.db, user: e.user, except: e.except });
  }

  // ---- SHOW and commands on every worker ----

  private collect(kind: 'show', what: string, from: Collect['from']): void;
  private collect(kind: 'op', op: Op, from: Collect['from']): void;
  private collect(kind: 'show' | 'op', what: string | Op, from: Collect['from']): void {
    if (kind === 'op') this.remember(what as Op);
    const id = this.nextId++;
    const c: Collect = { kind, from, waiting: new Set(), parts: [], answers: new Map(), timer: null };
    this.collects.set(id, c);
    for (const m of this.live()) {
      c.waiting.add(m.index);
      this.send(m, kind === 'show' ? { t: 'show', id, what: what as string } : { t: 'op', id, op: what as Op });
    }
    if (c.waiting.size === 0) {
      this.finish(id, c);
      return;
    }
    if (kind === 'show') c.timer = setTimeout(() => this.finish(id, c), GATHER_TIMEOUT_MS);
  }

  /**
   * Keep the state changes a worker started later must also have (one that restarts reads only the config file):
   * PAUSE/RESUME (signals and console), DISABLE/ENABLE, KILL (leaves the database paused) and SET. A RELOAD drops
   * the SETs (the file's values win, as in a running pooler); a RESUME of everything drops the pauses before it.
   */
  private remember(op: Op): void {
    const isPause = (o: Op) => o.kind === 'pause' || o.kind === 'resume' || (o.kind === 'command' && ['pause', 'resume', 'kill'].includes(o.verb));
    const sameDb = (o: Op, verbs: string[], arg: string | undefined) => o.kind === 'command' && verbs.includes(o.verb) && o.arg === arg;
    switch (op.kind) {
      case 'reload':
        this.replay = this.replay.filter((o) => !(o.kind === 'command' && o.verb === 'set'));
        return;
      case 'pause':
        this.replay.push(op);
        return;
      case 'resume':
        this.replay = this.replay.filter((o) => !isPause(o));
        return;
      case 'command':
        switch (op.verb) {
          case 'set':
            this.replay = this.replay.filter((o) => !sameDb(o, ['set'], op.arg));
            this.replay.push(op);
            return;
          case 'resume':
            if (op.arg === undefined) this.replay = this.replay.filter((o) => !isPause(o));
            else this.replay.push(op);
            return;
          case 'pause':
          case 'kill':
            this.replay.push(op);
            return;
          case 'disable':
          case 'enable':
            this.replay = this.replay.filter((o) => !sameDb(o, ['disable', 'enable'], op.arg));
            if (op.verb === 'disable') this.replay.push(op);
            return;
          default:
            return;
        }
      default:
        return;
    }
  }

  private finish(id: number, c: Collect): void {
    if (!this.collects.delete(id)) return;
    if (c.timer) clearTimeout(c.timer);
    if (!c.from) return;
    if (c.kind === 'show') {
      c.parts.sort((a, b) => a.index - b.index);
      this.send(c.from.member, { t: 're', id: c.from.id, parts: c.parts, workers: this.info() });
    } else {
      const answers = [...c.answers.entries()].sort((a, b) => a[0] - b[0]).map(([, a]) => a);
      this.send(c.from.member, { t: 're', id: c.from.id, answers });
    }
  }

  /** The primary's figures: itself as worker 0, then each worker (SHOW WORKERS). */
  info(): WorkerInfo[] {
    let slots = 0;
    let restarts = 0;
    const out: WorkerInfo[] = [];
    for (const m of this.members) {
      const wid = m.worker?.id ?? -1;
      const n = this.slots.serversOf(wid);
      slots += n;
      restarts += m.restarts;
      out.push({ index: m.index, pid: m.pid, clientSlots: this.slots.leasedBy(wid), serverSlots: n, restarts: m.restarts, startedAt: m.startedAt });
    }
    out.unshift({ index: 0, pid: process.pid, clientSlots: this.slots.clientsLeased, serverSlots: slots, restarts, startedAt: this.startedAt });
    return out;
  }
}

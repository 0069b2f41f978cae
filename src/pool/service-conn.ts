/* A server connection the pooler uses for itself (never given to a client): the database's LISTEN connection
 * (notify.ts) and the auth_query connection (auth/auth-query.ts). It is opened on demand in a pool (and counted
 * there), runs the queued statements one at a time, and is closed when its owner has nothing left for it. */

import { PoolerError } from '../util/errors.js';
import { SqlState } from '../protocol/sqlstate.js';
import type { Pool } from './pool.js';
import type { ServerConn } from './server.js';

export type Rows = (string | null)[][];
type Done = (err: PoolerError | null, rows: Rows) => void;

export abstract class ServiceConn {
  server: ServerConn | null = null;
  ready = false;
  private readonly queue: { sql: string | (() => string); done: Done | null }[] = [];
  private busy = false;

  constructor(readonly pool: Pool) {}

  /** A NotificationResponse arrived (the LISTEN connection). */
  notification(_buf: Buffer, _start: number, _end: number): void {}

  /** Whether the connection is still wanted once the queue is empty. */
  protected abstract keepOpen(): boolean;

  /** The connection is gone: what to do (reconnect, or let the owner forget this object). */
  protected abstract lost(reason: string, wasReady: boolean): void;

  /** Statements to run first after (re)connecting. */
  protected onLoggedIn(): { sql: string; done: Done | null }[] {
    return [];
  }

  start(): void {
    this.ready = false;
    this.server = this.pool.launchFor(this);
  }

  /** Queue a statement (or a function making it from the logged-in server, e.g. for quoting); done gets its rows. */
  run(sql: string | (() => string), done: Done | null): void {
    this.queue.push({ sql, done });
    if (this.server === null) this.start();
    else this.next();
  }

  loggedIn(s: ServerConn): void {
    if (s !== this.server) return;
    this.ready = true;
    this.queue.unshift(...this.onLoggedIn());
    this.next();
  }

  gone(s: ServerConn, reason: string): void {
    if (s !== this.server) return;
    const wasReady = this.ready;
    this.server = null;
    this.ready = false;
    this.busy = false;
    const waiting = this.queue.splice(0);
    for (const w of waiting) w.done?.(new PoolerError(SqlState.ConnectionFailure, reason, false), []);
    this.lost(reason, wasReady);
  }

  private next(): void {
    if (this.busy || !this.ready || this.server === null) return;
    const item = this.queue.shift();
    if (!item) {
      if (!this.keepOpen()) this.server.close('not needed any more', true);
      return;
    }
    this.busy = true;
    const s = this.server;
    const rows: Rows = [];
    s.runInternal(
      typeof item.sql === 'string' ? item.sql : item.sql(),
      (err) => {
        if (s !== this.server) return;
        this.busy = false;
        item.done?.(err, rows);
        this.next();
      },
      rows,
    );
  }

  /** The server's setting, once logged in (quoting depends on standard_conforming_strings). */
  serverParam(name: string): string | undefined {
    return this.server?.params.get(name);
  }
}

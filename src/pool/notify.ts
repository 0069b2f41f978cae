/* LISTEN/NOTIFY in transaction and statement pooling.
 *
 * A client's LISTEN is not sent to whichever server it happens to get: the pooler keeps one server connection per
 * database that LISTENs on every channel some client listens to, and hands each NotificationResponse to those
 * clients when they are between transactions (a client inside one gets it when its transaction is over, as
 * PostgreSQL does). UNLISTEN, UNLISTEN * and disconnecting end a client's interest; a channel nobody wants any more
 * is UNLISTENed, and the connection is closed when no channel is left. */

import { PoolerError } from '../util/errors.js';
import { log } from '../util/log.js';
import type { ClientConn } from './client.js';
import type { Database, Pool } from './pool.js';
import { ServiceConn } from './service-conn.js';

type Done = (err: PoolerError | null) => void;

/** The listening connection of one database. */
class Listener extends ServiceConn {
  /** Channel (as PostgreSQL names it) → the clients listening. */
  readonly channels = new Map<string, Set<ClientConn>>();

  constructor(
    readonly hub: NotifyHub,
    readonly db: Database,
    pool: Pool,
  ) {
    super(pool);
  }

  protected keepOpen(): boolean {
    return this.channels.size > 0;
  }

  /** (Re)connected: subscribe to every channel first. */
  protected override onLoggedIn(): { sql: string; done: null }[] {
    return [...this.channels.keys()].map((ch) => ({ sql: `LISTEN ${quoteIdent(ch)}`, done: null }));
  }

  /** With channels left, open another connection (notifications sent meanwhile are lost). */
  protected lost(reason: string, wasReady: boolean): void {
    if (this.channels.size > 0 && this.hub.active && wasReady) {
      log.warning(`listening connection for database ${this.db.name} lost (${reason}); reconnecting`);
      this.start();
      return;
    }
    // could not log in (or nobody listens any more): the clients are told on their next LISTEN
    for (const [ch, set] of this.channels) for (const c of set) c.listening?.delete(ch);
    this.channels.clear();
    this.hub.drop(this);
  }

  /** A NotificationResponse: to every client listening on its channel. */
  override notification(buf: Buffer, start: number, end: number): void {
    const nameEnd = buf.indexOf(0, start + 9);
    if (nameEnd < 0 || nameEnd >= end) return;
    const channel = buf.toString('utf8', start + 9, nameEnd);
    const clients = this.channels.get(channel);
    if (!clients) return;
    const msg = Buffer.from(buf.subarray(start, end)); // the server's read buffer is reused
    for (const c of clients) c.deliverNotification(msg);
  }
}

export class NotifyHub {
  private readonly listeners = new Map<Database, Listener>();
  /** False once the pooler shuts down: lost listening connections are not reopened. */
  active = true;

  /** Client c LISTENs on channel; done once the listening connection has it. */
  listen(c: ClientConn, channel: string, done: Done): void {
    const db = c.db!;
    let l = this.listeners.get(db);
    if (!l) {
      l = new Listener(this, db, c.pool!);
      this.listeners.set(db, l);
    }
    let set = l.channels.get(channel);
    const isNew = !set;
    if (!set) {
      set = new Set();
      l.channels.set(channel, set);
    }
    set.add(c);
    (c.listening ??= new Set()).add(channel);
    if (isNew) {
      l.run(`LISTEN ${quoteIdent(channel)}`, (err) => {
        if (err) this.unlisten(c, channel);
        done(err);
      });
    } else if (l.ready) {
      done(null);
    } else {
      l.run('SELECT 1', (err) => done(err)); // answered once the connection (re)subscribed to what it has
    }
  }

  /** UNLISTEN channel (null: UNLISTEN *). */
  unlisten(c: ClientConn, channel: string | null): void {
    const l = c.db ? this.listeners.get(c.db) : undefined;
    const mine = c.listening;
    if (!mine) return;
    const names = channel === null ? [...mine] : mine.has(channel) ? [channel] : [];
    for (const ch of names) {
      mine.delete(ch);
      const set = l?.channels.get(ch);
      if (!l || !set) continue;
      set.delete(c);
      if (set.size === 0) {
        l.channels.delete(ch);
        l.run(`UNLISTEN ${quoteIdent(ch)}`, null);
      }
    }
    if (mine.size === 0) c.listening = null;
  }

  clientGone(c: ClientConn): void {
    if (c.listening) this.unlisten(c, null);
  }

  /** Listener server hooks (ServerConn.owner). */
  drop(l: Listener): void {
    if (this.listeners.get(l.db) === l) this.listeners.delete(l.db);
  }

  /** Channels listened to, per database (SHOW SESSION_STATE). */
  channelCount(db: Database): number {
    return this.listeners.get(db)?.channels.size ?? 0;
  }

  shutdown(): void {
    this.active = false;
  }
}


function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/**
 * A simple Query that is exactly one LISTEN or UNLISTEN: the channel (folded as PostgreSQL folds identifiers;
 * null for UNLISTEN *), or undefined when it is anything else.
 */
export function parseListen(sql: string): { listen: boolean; channel: string | null } | undefined {
  const m = /^\s*(listen|unlisten)\s+(?:("(?:[^"]|"")+")|([A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*)|(\*))\s*;?\s*$/i.exec(sql);
  if (!m) return undefined;
  const listen = m[1]!.toLowerCase() === 'listen';
  if (m[4]) return listen ? undefined : { listen, channel: null };
  const channel = m[2] ? m[2].slice(1, -1).replace(/""/g, '"') : m[3]!.toLowerCase();
  return { listen, channel };
}

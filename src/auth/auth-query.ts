/* auth_user + auth_query: the secret of a user that is not in auth_file is asked from PostgreSQL, over a
 * connection logged in as auth_user (whose password is in auth_file) to auth_dbname or the client's database. The
 * secret (md5… or SCRAM-SHA-256$…) then authenticates the client as a userlist secret would, and with SCRAM the
 * keys the client's proof reveals log pgtide in to PostgreSQL: no plain-text password is needed anywhere. A secret
 * is kept with its user after a successful login and asked again after a failed one. */

import { PoolerError } from '../util/errors.js';
import { SqlState } from '../protocol/sqlstate.js';
import { log } from '../util/log.js';
import { ServiceConn, type Rows } from '../pool/service-conn.js';
import type { Database, Pool } from '../pool/pool.js';
import type { Pooler } from '../pooler.js';

/** One auth_query connection per (auth database, auth_user) pool, open while lookups are queued. */
class AuthConn extends ServiceConn {
  constructor(
    readonly owner: AuthQuery,
    pool: Pool,
  ) {
    super(pool);
  }

  protected keepOpen(): boolean {
    return false;
  }

  protected lost(reason: string): void {
    if (reason !== 'not needed any more') log.warning(`auth_query connection for ${this.pool.db.name}/${this.pool.user.name} lost: ${reason}`);
    this.owner.drop(this);
  }
}

export type LookupDone = (err: PoolerError | null, secret: string | undefined) => void;

export class AuthQuery {
  private readonly conns = new Map<Pool, AuthConn>();

  constructor(private readonly pooler: Pooler) {}

  /** auth_user for a database (its own, else the global one), or undefined when auth_query is not in use. */
  authUser(db: Database): string | undefined {
    return db.entry.auth_user ?? (this.pooler.settings.auth_user || undefined);
  }

  /** Ask PostgreSQL for the user's secret; done(null, undefined) when there is no such user (or no password). */
  lookup(db: Database, userName: string, done: LookupDone): void {
    const authUserName = this.authUser(db)!;
    const st = this.pooler.settings;
    const authDbName = db.entry.auth_dbname ?? (st.auth_dbname || undefined);
    const authDb = authDbName ? this.pooler.findDatabase(authDbName) : db;
    if (!authDb || authDb.dead) {
      done(new PoolerError(SqlState.InvalidCatalogName, `auth_dbname "${authDbName}" is not a configured database`), undefined);
      return;
    }
    // auth_user's password comes from auth_file (or the database entry); without one only trust can log it in
    const authUser = this.pooler.users.get(authUserName) ?? this.pooler.userFor(authUserName);
    const pool = this.pooler.getPool(authDb, authDb.forcedUser ?? authUser);
    let conn = this.conns.get(pool);
    if (!conn) {
      conn = new AuthConn(this, pool);
      this.conns.set(pool, conn);
    }
    const query = db.entry.auth_query ?? st.auth_query;
    const c = conn;
    conn.run(
      () => query.replace(/\$1\b/g, literal(userName, c.serverParam('standard_conforming_strings') !== 'off')),
      (err, rows: Rows) => {
        if (err) {
          log.warning(`auth_query for user "${userName}" failed: ${err.message}`);
          done(new PoolerError(SqlState.ConnectionFailure, `authentication lookup failed: ${err.message}`), undefined);
          return;
        }
        const row = rows[0];
        done(null, row && row[1] !== null && row[1] !== undefined && row[1] !== '' ? row[1] : undefined);
      },
    );
  }

  drop(c: AuthConn): void {
    if (this.conns.get(c.pool) === c) this.conns.delete(c.pool);
  }
}

/** A string literal for the query text (the user name comes from the client: quote it fully). */
function literal(v: string, standardStrings: boolean): string {
  if (v.includes('\0')) v = v.replace(/\0/g, '');
  if (standardStrings) return "'" + v.replace(/'/g, "''") + "'";
  return "E'" + v.replace(/\\/g, '\\\\').replace(/'/g, "''") + "'";
}

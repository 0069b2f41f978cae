// Small helpers shared by the integration tests: waiting for a condition, typed errors, and the usual clients
// (an app client through pgtide, a superuser/monitor client straight to PostgreSQL, the "still serves" probe).

import assert from 'node:assert/strict';
import pg from 'pg';
import { spawn } from 'node:child_process';
import { pgBin, pgEnv, type PgServer } from './postgres.js';
import { track, type Pgtide } from './pgtide.js';

/** What track() needs from a test: a node:test TestContext, or `{ after }` from node:test for a whole file. */
export type Ctx = { after(fn: () => unknown): unknown };

/** An error thrown by pg or postgres.js: `code` is the SQLSTATE, `severity` (pg) ERROR/FATAL. */
export type PgError = Error & { code?: string; severity?: string };

/** Resolve after `ms` milliseconds. */
/** A small deterministic PRNG (mulberry32): the same seed gives the same numbers in [0, 1). */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Poll `fn` every `everyMs` until it returns a truthy value, and return that value. After `timeoutMs` it throws
 * `timed out after … waiting for <what> (last value: …)`. `fn` may be async; a rejection ends the wait at once.
 */
export async function waitFor<T>(what: string, fn: () => Promise<T> | T, timeoutMs = 5000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last as NonNullable<T>;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last value: ${JSON.stringify(last)})`);
}

/**
 * A superuser (`postgres`) connection straight to PostgreSQL over its unix socket (trust), connected. It sees every
 * backend in pg_stat_activity and may run pg_terminate_backend. Not tracked: the caller ends it (e.g. in after()).
 */
export async function monitorClient(server: PgServer): Promise<pg.Client> {
  const c = new pg.Client({ host: server.socketDir, port: server.port, user: 'postgres', database: 'postgres' });
  await c.connect();
  return c;
}

/** monitorClient(), closed by track() when the test ends. */
export async function superuser(t: Ctx, server: PgServer): Promise<pg.Client> {
  const c = track(t, new pg.Client({ host: server.socketDir, port: server.port, user: 'postgres', database: 'postgres' }));
  await c.connect();
  return c;
}

export interface AppClientOptions {
  /** Database name on pgtide (default `app`). */
  db?: string;
  /** Ignore 'error' events (a FATAL from the pooler while idle); assertions then look at query results only. */
  ignoreErrors?: boolean;
}

/** A connected pg client through pgtide as app/apppass, closed by track() when the test ends. */
export async function appClient(t: Ctx, b: Pgtide, opts: AppClientOptions = {}): Promise<pg.Client> {
  const c = track(t, new pg.Client({ connectionString: b.url('app', 'apppass', opts.db ?? 'app') }));
  if (opts.ignoreErrors) c.on('error', () => {});
  await c.connect();
  return c;
}

export interface StillServesOptions {
  user?: string;
  password?: string;
  db?: string;
  /** pg's connectionTimeoutMillis (default: none, the test's own timeout bounds it). */
  connectionTimeoutMillis?: number;
}

/**
 * Prove the pooler still serves: a fresh pg client (default app/apppass, db app) logs in through pgtide and
 * `select 1 as one` returns one row `{ one: 1 }`. The client is always closed.
 */
export async function stillServes(b: Pgtide, opts: StillServesOptions = {}): Promise<void> {
  const c = new pg.Client({
    connectionString: b.url(opts.user ?? 'app', opts.password ?? 'apppass', opts.db ?? 'app'),
    connectionTimeoutMillis: opts.connectionTimeoutMillis,
  });
  try {
    await c.connect();
    const { rows } = await c.query<{ one: number }>('select 1 as one');
    assert.deepEqual(rows, [{ one: 1 }]);
  } finally {
    await c.end().catch(() => {});
  }
}

/** A pg client that records what happened to it asynchronously. */
export interface TestClient extends pg.Client {
  /** 'error' events the client emitted (asynchronous FATALs from the pooler). */
  errors: PgError[];
  /** The connection has ended ('end' event), by either side. */
  ended: boolean;
}

/**
 * A pg client (not yet connected) that records 'error' events in `errors` and its end in `ended`, so a FATAL sent
 * while it is idle does not crash the test process. Closed when the test ends, waiting at most 1 s for that.
 */
export function newClient(t: Ctx, url: string): TestClient {
  const c = new pg.Client({ connectionString: url }) as TestClient;
  c.errors = [];
  c.ended = false;
  c.on('error', (e: PgError) => c.errors.push(e));
  c.on('end', () => (c.ended = true));
  track(t, { end: () => Promise.race([c.end().catch(() => {}), sleep(1000)]) });
  return c;
}

/**
 * (Re)create database `name`, owned by app, with table t(id int primary key, v int not null) holding rows 1..10
 * with v = 0: what the lifecycle tests lock, update and check.
 */
export async function createRowsDatabase(server: PgServer, name: string): Promise<void> {
  await server.psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE);\nCREATE DATABASE ${name} OWNER app;`);
  await server.psql(
    `CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);\nINSERT INTO t SELECT g, 0 FROM generate_series(1, 10) g;\nALTER TABLE t OWNER TO app;`,
    name,
  );
}

/** Rows of a console command (SHOW …) through pgtide, as app/apppass (who must be in admin_users or stats_users). */
export async function consoleRows(b: Pgtide, sql: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: b.url('app', 'apppass', 'pgbouncer') });
  await c.connect();
  try {
    return (await c.query(sql)).rows as Record<string, unknown>[];
  } finally {
    await c.end();
  }
}

/** psql through pgtide as app/apppass with extra conninfo (e.g. `sslmode=require`), one command; killed after 15 s. */
export function psqlThrough(b: Pgtide, conninfo: string, sql: string, host = '127.0.0.1'): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(pgBin('psql'), ['-XAtq', '-w', '-d', `host=${host} port=${b.port} user=app dbname=app ${conninfo}`, '-c', sql],
      { env: pgEnv({ PGPASSWORD: 'apppass' }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out: out.trim(), err }); });
  });
}

/**
 * A login through pgtide that must be refused: resolves with the error pg reports (its code is the SQLSTATE); fails
 * the test if the login succeeds.
 */
export async function loginRefused(b: Pgtide, user = 'app', password = 'apppass', db = 'app'): Promise<PgError> {
  const c = new pg.Client({ connectionString: b.url(user, password, db), connectionTimeoutMillis: 5000 });
  c.on('error', () => {});
  try {
    await c.connect();
  } catch (e) {
    return e as PgError;
  } finally {
    await c.end().catch(() => {});
  }
  assert.fail(`${user} logged in to ${db} although the login should have been refused`);
}

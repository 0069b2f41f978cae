// Benchmark poolers: writes one pgbouncer.ini + userlist.txt for both, starts PgBouncer (via runuser as root) or pgtide, stops them.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, isAlive, onProcessExit, run } from '../test/harness/postgres.js';
import { childrenOf, sleep, tcpAccepts } from './procs.js';

/** 'pgtide-bare': pgtide with session_state_policy = allow and max_prepared_statements = 0 (what the transaction-mode
 * safety costs: statements are not looked at, Parse/Bind are not tracked). 'pgtide-w2': pgtide with workers = 2
 * (a primary and two worker processes; its CPU is the sum of all three, see run.ts). 'pgtide-busy': pgtide with
 * busy_poll_us = BUSY_POLL_US (polling instead of sleeping between a request and its reply; run at 1 client). */
export type PoolerKind = 'pgbouncer' | 'pgtide' | 'pgtide-bare' | 'pgtide-w2' | 'pgtide-busy';

/** busy_poll_us of the 'pgtide-busy' target: longer than a select-only round trip through PostgreSQL here. */
export const BUSY_POLL_US = 50;

export const PGBOUNCER_BIN = '/usr/sbin/pgbouncer';
export const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
export const PGTIDE_CLI = join(REPO_ROOT, 'dist', 'cli.js');

const IS_ROOT = process.getuid?.() === 0;
const READY_TIMEOUT_MS = 15_000;

export interface PoolerSettings {
  pgPort: number;
  poolSize: number;
  /** userlist.txt entries: plain passwords, md5 or SCRAM-SHA-256 secrets. */
  users: AuthUser[];
  /** max_client_conn (default 2000; the idle-client memory phase needs more). */
  maxClientConn?: number;
  /** TLS on both sides (BENCH_TLS=1): the key and certificate the pooler shows clients. */
  tls?: { key: string; cert: string };
}

export interface Pooler {
  kind: PoolerKind;
  port: number;
  /** The pooler process itself (for PgBouncer under runuser: the pgbouncer child, not runuser). */
  pid: number;
  dir: string;
  alive(): boolean;
  /** Exit description once it died ("code 1", "signal SIGSEGV"), else undefined. */
  exitInfo(): string | undefined;
  /** Last lines of its logfile plus anything it wrote to stdout/stderr. */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

/** The one configuration both poolers get (paths differ only by their temp dir). */
export function poolerIni(dir: string, port: number, s: PoolerSettings): string {
  return `[databases]
app = host=127.0.0.1 port=${s.pgPort} dbname=app

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir = ${dir}
auth_type = md5
auth_file = ${join(dir, 'userlist.txt')}
pool_mode = transaction
default_pool_size = ${s.poolSize}
max_client_conn = ${s.maxClientConn ?? 2000}
logfile = ${join(dir, 'pooler.log')}
log_connections = 0
log_disconnections = 0
log_stats = 0
${s.tls ? `client_tls_sslmode = require\nclient_tls_key_file = ${s.tls.key}\nclient_tls_cert_file = ${s.tls.cert}\nserver_tls_sslmode = require\n` : ''}`;
}

/** One userlist.txt entry. */
export interface AuthUser {
  name: string;
  /** Plain password, "md5…" or "SCRAM-SHA-256$…" (as in pg_authid). */
  secret: string;
}

/**
 * userlist.txt for both poolers. With auth_type = md5, a plain password means md5 with the client; a SCRAM secret means
 * SCRAM with the client (both PgBouncer and pgtide), and, when the secret is the one PostgreSQL stores, SCRAM with
 * PostgreSQL using the keys the client's proof yields.
 */
export function userlist(users: AuthUser[]): string {
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  return users.map((u) => `${q(u.name)} ${q(u.secret)}\n`).join('');
}

/**
 * Make sure Debian's PgBouncer is installed: if missing (and we are root), `apt-get install -y pgbouncer`, after
 * `apt-get update` if the first attempt fails. Resolves with a note when it cannot be had (the benchmark then skips it).
 */
export async function ensurePgbouncer(): Promise<{ ok: boolean; note?: string }> {
  if (existsSync(PGBOUNCER_BIN)) return { ok: true };
  if (!IS_ROOT) return { ok: false, note: `${PGBOUNCER_BIN} is missing and we are not root, so it cannot be installed with apt-get` };
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => run('apt-get', ['install', '-y', '--no-install-recommends', 'pgbouncer'], { env, timeoutMs: 600_000 });
  process.stderr.write('bench: PgBouncer missing, installing it with apt-get…\n');
  try {
    await install();
  } catch {
    try {
      await run('apt-get', ['update'], { env, timeoutMs: 600_000 });
      await install();
    } catch (e) {
      return { ok: false, note: `apt-get install pgbouncer failed: ${(e as Error).message.split('\n').slice(0, 6).join(' | ')}` };
    }
  }
  // The Debian package may start its own service on port 6432; it does not matter to us (we use our own ini and port).
  return existsSync(PGBOUNCER_BIN) ? { ok: true } : { ok: false, note: `apt-get reported success but ${PGBOUNCER_BIN} is still missing` };
}

/** Version line of a pooler (`PgBouncer 1.18.0`, `pgtide x.y.z`). */
export function poolerVersion(kind: PoolerKind): string {
  try {
    const out = kind === 'pgbouncer'
      ? execFileSync(PGBOUNCER_BIN, ['--version'], { encoding: 'utf8' })
      : execFileSync(process.execPath, [PGTIDE_CLI, '--version'], { encoding: 'utf8' });
    return out.split('\n')[0]!.trim();
  } catch (e) {
    return `unknown (${(e as Error).message.split('\n')[0]})`;
  }
}

let pgUser: { uid: number; gid: number } | undefined;
function postgresUser(): { uid: number; gid: number } {
  pgUser ??= {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  };
  return pgUser;
}

function trySignal(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined || pid <= 0) return;
  try { process.kill(pid, sig); } catch { /* gone */ }
}

/** Start a pooler on a free port and wait until it accepts TCP connections (a port clash is retried with a new port). */
export async function startPooler(kind: PoolerKind, s: PoolerSettings): Promise<Pooler> {
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const p = launch(kind, port, s);
    const outcome = await waitReady(p);
    if (outcome === 'ready') return p;
    const log = p.logTail(30);
    await p.stop();
    lastError = new Error(`${kind} ${outcome === 'exited' ? `exited before listening (${p.exitInfo()})` : `did not accept connections within ${READY_TIMEOUT_MS / 1000} s`} on 127.0.0.1:${port}\n--- log ---\n${log}`);
    if (!/in use|EADDRINUSE/i.test(log)) break;
  }
  throw lastError;
}

async function waitReady(p: Pooler): Promise<'ready' | 'exited' | 'timeout'> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!p.alive()) return 'exited';
    if (await tcpAccepts(p.port)) return 'ready';
    await sleep(50);
  }
  return 'timeout';
}

function launch(kind: PoolerKind, port: number, s: PoolerSettings): Pooler {
  const dir = mkdtempSync(`/tmp/pgtide-bench-${kind}-`);
  const viaRunuser = kind === 'pgbouncer' && IS_ROOT; // PgBouncer refuses to run as root
  if (viaRunuser) {
    const u = postgresUser();
    chownSync(dir, u.uid, u.gid);
  }
  chmodSync(dir, 0o755);
  const ini = join(dir, 'pgbouncer.ini');
  // BENCH_PGTIDE_SETTINGS="k=v,k=v": extra settings for pgtide only (e.g. session_state_policy=allow to see what
  // looking at statements costs)
  let extra = kind !== 'pgbouncer' ? (process.env.BENCH_PGTIDE_SETTINGS ?? '').split(',').filter(Boolean).map((kv) => `${kv.trim()}\n`).join('') : '';
  if (kind === 'pgtide-bare') extra += 'session_state_policy = allow\nmax_prepared_statements = 0\n';
  if (kind === 'pgtide-w2') extra += 'workers = 2\n';
  if (kind === 'pgtide-busy') extra += `busy_poll_us = ${BUSY_POLL_US}\n`;
  writeFileSync(ini, poolerIni(dir, port, s) + extra, { mode: 0o644 });
  writeFileSync(join(dir, 'userlist.txt'), userlist(s.users), { mode: 0o644 });

  let proc: ChildProcess;
  if (kind !== 'pgbouncer') proc = spawn(process.execPath, [PGTIDE_CLI, '-q', ini], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  // runuser's PAM session (pam_limits) sets the soft open-files limit back to 1024, too few for 1,000 clients or more:
  // a shell raises it to the hard limit, then becomes pgbouncer (exec keeps the pid runuser's child has)
  else if (viaRunuser) proc = spawn('runuser', ['-u', 'postgres', '--', 'sh', '-c', 'ulimit -n "$(ulimit -H -n)" && exec "$0" "$@"', PGBOUNCER_BIN, '-q', ini], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  else proc = spawn(PGBOUNCER_BIN, ['-q', ini], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });

  let output = '';
  const keep = (b: Buffer) => { output = (output + b.toString('utf8')).slice(-20_000); };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  let exitInfo: string | undefined;
  proc.once('error', (e) => { exitInfo = `spawn error: ${e.message}`; });
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', (code, sig) => { exitInfo ??= sig ? `signal ${sig}` : `code ${code}`; resolve(); });
    proc.once('error', () => resolve());
  });

  // The process to measure: under runuser, its pgbouncer child (found lazily: runuser forks it right away).
  let innerPid: number | undefined = viaRunuser ? undefined : proc.pid;
  const findInner = (): number | undefined => {
    if (innerPid === undefined && proc.pid !== undefined) innerPid = childrenOf(proc.pid)[0];
    return innerPid;
  };

  const removeDir = () => { if (!process.env.PGTIDE_KEEP_TMP) rmSync(dir, { recursive: true, force: true }); };
  const unregister = onProcessExit(() => {
    trySignal(innerPid, 'SIGKILL');
    if (exitInfo === undefined) trySignal(proc.pid, 'SIGKILL');
    removeDir();
  });

  let stopping: Promise<void> | undefined;
  const p: Pooler = {
    kind,
    port,
    dir,
    get pid() { return findInner() ?? -1; },
    alive: () => exitInfo === undefined && (innerPid === undefined || isAlive(innerPid)),
    exitInfo: () => exitInfo ?? (innerPid !== undefined && !isAlive(innerPid) ? 'pooler process gone' : undefined),
    logTail(lines = 20) {
      let file = '';
      try { file = readFileSync(join(dir, 'pooler.log'), 'utf8'); } catch { /* none yet */ }
      const tail = (t: string) => t.split('\n').filter(Boolean).slice(-lines).join('\n');
      return [tail(file), tail(output)].filter(Boolean).join('\n--- stdout/stderr ---\n');
    },
    stop() {
      stopping ??= (async () => {
        findInner();
        // SIGTERM: immediate shutdown for both PgBouncer 1.18 and pgtide.
        trySignal(innerPid, 'SIGTERM');
        if (exitInfo === undefined && innerPid !== proc.pid) trySignal(proc.pid, 'SIGTERM');
        const t = setTimeout(() => { trySignal(innerPid, 'SIGKILL'); trySignal(proc.pid, 'SIGKILL'); }, 5_000);
        await exited;
        clearTimeout(t);
        unregister();
        removeDir();
      })();
      return stopping;
    },
  };
  return p;
}

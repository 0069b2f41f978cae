// Test fixture: runs the built pooler (node dist/cli.js <dir>/pgbouncer.ini) from an ini string in a temp dir, with its log captured.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after } from 'node:test';
import { freePort, onProcessExit, pgUrl, sharedPostgres, type PgServer } from './postgres.js';

export { freePort };

/** Repo root, from this file's location (not the CWD). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI_PATH = join(REPO_ROOT, 'dist', 'cli.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `node dist/cli.js ...args` to completion with `env` (NODE_TEST_CONTEXT removed); rejects after `timeoutMs`. */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const env = { ...(opts.env ?? process.env) };
  delete env.NODE_TEST_CONTEXT;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI_PATH, ...args], { cwd: opts.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`pgtide ${args.join(' ')} still running after ${timeoutMs / 1000} s\n${stdout}${stderr}`));
    }, timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const READY_TIMEOUT_MS = 15_000;
const KILL_AFTER_MS = 5_000;

export interface PgtideContext {
  /** The port pgtide must listen on (127.0.0.1). */
  port: number;
  /** Where pgtide should put its unix socket (= dir). */
  socketDir: string;
  /** pgtide's temp dir and CWD. */
  dir: string;
  /** The PostgreSQL server behind it. */
  pg: PgServer;
}

export interface StartPgtideOptions {
  /** pgbouncer.ini text, or a function of the context (preferred: then a port clash is retried with a new port). */
  ini: string | ((ctx: PgtideContext) => string);
  /** Backend server (default: sharedPostgres()). */
  pg?: PgServer;
  /** Extra files written into the temp dir, relative names. `userlist.txt` defaults to DEFAULT_USERLIST. */
  files?: Record<string, string>;
  /** Extra command-line arguments, placed before the ini path. */
  args?: string[];
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Extra options for node itself, placed before dist/cli.js (not used with $PGTIDE_EXE). */
  nodeArgs?: string[];
  /** The process is expected to exit (bad config, --help…): resolve once it has exited instead of waiting for the port. */
  expectExit?: boolean;
}

export interface Pgtide {
  port: number;
  host: '127.0.0.1';
  socketDir: string;
  dir: string;
  pid: number;
  proc: ChildProcess;
  /** stdout + stderr so far. */
  log(): string;
  /**
   * Wait until the log (from character offset `from`, default 0) matches `re`; resolves with the matched text.
   * Rejects with the log so far after `timeoutMs` or when the process exits without a match.
   * Use `const mark = bouncer.log().length` before an action to wait only for new lines.
   */
  waitForLog(re: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  /** Exit code (null when killed by a signal); resolves once the process exited and its output was read. */
  exited: Promise<number | null>;
  /** Signal that ended the process, once it has exited. */
  exitSignal(): NodeJS.Signals | null;
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM, SIGKILL after 5 s; resolves once exited and the temp dir is removed. Idempotent. */
  stop(): Promise<void>;
  url(user: string, password: string, db: string): string;
  [Symbol.asyncDispose](): Promise<void>;
}

/** The userlist.txt matching the roles of test/harness/postgres.ts. */
export const DEFAULT_USERLIST = `"app" "apppass"
"md5user" "md5pass"
"trustuser" ""
`;

/**
 * A pgbouncer.ini: `[databases]` (default `app = host=127.0.0.1 port=<pg port> dbname=app`) and `[pgbouncer]` with
 * listen_addr/listen_port/unix_socket_dir from ctx, auth_type=md5, auth_file=userlist.txt, logfile empty, then `settings`
 * (a setting named like a default replaces it).
 */
export function iniFor(ctx: PgtideContext, opts: { databases?: string; settings?: Record<string, string | number> } = {}): string {
  const settings: Record<string, string | number> = {
    listen_addr: '127.0.0.1',
    listen_port: ctx.port,
    unix_socket_dir: ctx.socketDir,
    auth_type: 'md5',
    auth_file: 'userlist.txt',
    logfile: '',
    ...opts.settings,
  };
  const databases = opts.databases ?? `app = host=127.0.0.1 port=${ctx.pg.port} dbname=app`;
  return `[databases]\n${databases}\n\n[pgbouncer]\n${Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`;
}

/** Start pgtide with iniFor(settings, databases) and DEFAULT_USERLIST, for short tests. */
export function pgtideWith(pg: PgServer, settings: Record<string, string | number> = {}, databases?: string): Promise<Pgtide> {
  return startPgtide({ pg, ini: (ctx) => iniFor(ctx, { settings, databases }) });
}

/** Anything track() can tear down: fixtures (stop), pg/postgres.js clients and pools (end), servers/sockets (close), disposables. */
export type Closable = { stop(): unknown } | { end(): unknown } | { close(): unknown } | { [Symbol.asyncDispose](): unknown };

function closeOne(r: Closable): unknown {
  if ('stop' in r) return r.stop();
  if ('end' in r) return r.end();
  if ('close' in r) return r.close();
  return r[Symbol.asyncDispose]();
}

const trackStacks = new WeakMap<object, Closable[]>();

/**
 * Tear `resource` down when the test ends, pass or fail, and return it: `const b = track(t, await pgtideWith(pg))`,
 * then `const c = track(t, new pg.Client(b.url(...)))`. Everything tracked on one context is closed in reverse order
 * (clients before the pooler before the server), all of it even if one close fails. node:test runs plain `t.after` hooks
 * in registration order (FIFO), so a `t.after(() => bouncer.stop())` registered first would kill the pooler under
 * still-open clients; use track() for all of them. For a suite: `track({ after }, x)` with `after` from node:test.
 */
export function track<R extends Closable>(t: { after(fn: () => unknown): unknown }, resource: R): R {
  let stack = trackStacks.get(t);
  if (!stack) {
    const s: Closable[] = (stack = []);
    trackStacks.set(t, s);
    t.after(async () => {
      const errors: unknown[] = [];
      for (const r of s.splice(0).reverse()) {
        try { await closeOne(r); } catch (e) { errors.push(e); }
      }
      if (errors.length === 1) throw errors[0];
      if (errors.length) throw new AggregateError(errors, 'track: teardown failed');
    });
  }
  stack.push(resource);
  return resource;
}

const running = new Set<Pgtide>();

// In a node:test process, stop whatever was never stopped once the file's tests are done, so a leak cannot hang the
// process. Deferred (unref'd timer) so the file's own after() hooks run first; the exit hook is the last resort.
if (process.env.NODE_TEST_CONTEXT) {
  after(() => {
    setTimeout(() => {
      if (running.size) process.stderr.write(`pgtide harness: stopping ${running.size} pgtide process(es) never stopped: ${[...running].map((b) => b.pid).join(', ')}\n`);
      for (const b of running) void b.stop();
    }, 1000).unref();
  });
}

function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ port, host: '127.0.0.1' });
    const done = (ok: boolean) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(1000, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

function withoutStatefulFlags(re: RegExp): RegExp {
  return re.global || re.sticky ? new RegExp(re.source, re.flags.replace(/[gy]/g, '')) : re;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Write the ini (and files) into a fresh temp dir, run `node dist/cli.js [...args] <dir>/pgbouncer.ini` there (or `$PGTIDE_EXE [...args] <ini>`),
 * wait until it accepts TCP on 127.0.0.1:port (15 s), or, with expectExit, until it exits.
 */
export async function startPgtide(opts: StartPgtideOptions): Promise<Pgtide> {
  const pg = opts.pg ?? (await sharedPostgres());
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync('/tmp/pgtide-'); // no await between here and launch() registering its exit hook
    const ctx: PgtideContext = { port, socketDir: dir, dir, pg };
    let b: Pgtide;
    try {
      b = launch(ctx, opts);
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      b.exited.then(() => 'exited' as const),
      opts.expectExit ? new Promise<'timeout'>((r) => { timer = setTimeout(r, READY_TIMEOUT_MS, 'timeout'); }) : waitForPort(ctx.port, b),
    ]);
    clearTimeout(timer);
    if (outcome === 'ready' || (outcome === 'exited' && opts.expectExit)) return b;
    await b.stop();
    const where = `127.0.0.1:${ctx.port}, dir ${dir}`;
    if (outcome === 'timeout') {
      throw new Error(opts.expectExit
        ? `pgtide was expected to exit but still ran after ${READY_TIMEOUT_MS / 1000} s (${where})\n--- log ---\n${b.log()}`
        : `pgtide did not accept connections within ${READY_TIMEOUT_MS / 1000} s (${where})\n--- log ---\n${b.log()}`);
    }
    // Exited before listening: a port taken between freePort() and bind is retried with a fresh port.
    if (typeof opts.ini === 'function' && attempt < 2 && /EADDRINUSE|address already in use/i.test(b.log())) continue;
    throw new Error(`pgtide exited before listening (code ${await b.exited}, signal ${b.exitSignal()}, ${where})\n--- log ---\n${b.log()}`);
  }
}

/** Poll until 127.0.0.1:port accepts a TCP connection; never settles if the process exits first (the exit wins the race). */
async function waitForPort(port: number, b: Pgtide): Promise<'ready' | 'timeout'> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let gone = false;
  void b.exited.then(() => { gone = true; });
  while (Date.now() < deadline) {
    if (gone) return new Promise<never>(() => {});
    if (await tcpAccepts(port)) return 'ready';
    await sleep(25);
  }
  return 'timeout';
}

function launch(ctx: PgtideContext, opts: StartPgtideOptions): Pgtide {
  const { dir, port } = ctx;
  const files: Record<string, string> = { 'userlist.txt': DEFAULT_USERLIST, ...opts.files };
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  const iniPath = join(dir, 'pgbouncer.ini');
  writeFileSync(iniPath, typeof opts.ini === 'function' ? opts.ini(ctx) : opts.ini);

  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  delete env.NODE_TEST_CONTEXT; // pgtide is not a test file
  // $PGTIDE_EXE runs another executable the same way (e.g. a real pgbouncer wrapper, to compare behaviour).
  const exe = process.env.PGTIDE_EXE;
  const argv = [...(opts.args ?? []), iniPath];
  const proc = spawn(exe ?? process.execPath, exe ? argv : ['--enable-source-maps', ...(opts.nodeArgs ?? []), CLI_PATH, ...argv], {
    cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: string) => {
    log += chunk;
    for (const l of listeners) l();
  };
  proc.stdout!.setEncoding('utf8').on('data', onData);
  proc.stderr!.setEncoding('utf8').on('data', onData);

  let exitSignal: NodeJS.Signals | null = null;
  let hasExited = false;
  const exited = new Promise<number | null>((resolve) => {
    let code: number | null = null;
    const finish = () => {
      hasExited = true;
      for (const l of listeners) l();
      resolve(code);
    };
    proc.once('error', (err) => { log += `\n[harness] spawn error: ${err.message}\n`; code = -1; finish(); });
    proc.once('exit', (c, s) => {
      code = c;
      exitSignal = s;
      // Let the pipes drain, but don't wait on them forever (a daemonized grandchild could hold them).
      const t = setTimeout(finish, 500);
      proc.once('close', () => { clearTimeout(t); finish(); });
    });
  });
  const unregister = onProcessExit(() => {
    if (!hasExited) proc.kill('SIGKILL');
    if (!process.env.PGTIDE_KEEP_TMP) rmSync(dir, { recursive: true, force: true });
  });

  let stopping: Promise<void> | undefined;
  const b: Pgtide = {
    port,
    host: '127.0.0.1',
    socketDir: ctx.socketDir,
    dir,
    pid: proc.pid ?? -1,
    proc,
    log: () => log,
    exitSignal: () => exitSignal,
    waitForLog(re, timeoutMs = 5000, from = 0) {
      const rx = withoutStatefulFlags(re);
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = rx.exec(log.slice(from));
          if (m) return done(() => resolve(m[0]));
          if (hasExited) done(() => reject(new Error(`pgtide exited (code ${proc.exitCode}, signal ${exitSignal}) before its log matched ${rx}\n--- log ---\n${log}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`pgtide log did not match ${rx} within ${timeoutMs} ms\n--- log ---\n${log}`))), timeoutMs);
        const done = (settle: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          settle();
        };
        listeners.add(check);
        check();
      });
    },
    exited,
    signal(sig) {
      if (!hasExited) proc.kill(sig);
    },
    stop() {
      stopping ??= (async () => {
        running.delete(b);
        if (!hasExited) {
          proc.kill('SIGTERM');
          const killer = setTimeout(() => proc.kill('SIGKILL'), KILL_AFTER_MS);
          await exited;
          clearTimeout(killer);
        }
        unregister();
        if (!process.env.PGTIDE_KEEP_TMP) rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
    url: (user, password, db) => pgUrl('127.0.0.1', port, user, password, db),
    [Symbol.asyncDispose]: () => b.stop(),
  };
  running.add(b);
  return b;
}

/* The temporary poolers of `pgtide bench`: the seed's pgbouncer.ini and a userlist.txt in a temp dir, a pooler started
 * on them as a child process on a free 127.0.0.1 port (this package's dist/cli.js; PgBouncer through pgbouncer.ts),
 * stopped (and the dir removed by the caller) afterwards. */

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { quoteConnValue, quoteDatabaseName } from '../config/connstring.js';
import type { BenchTarget } from './target.js';

export type ClientAuthType = 'md5' | 'scram-sha-256';

export interface PoolerSettings {
  poolSize: number;
  authType: ClientAuthType;
}

/** This package's command-line entry (dist/cli.js next to dist/bench/). */
export const PGTIDE_CLI = fileURLToPath(new URL('../cli.js', import.meta.url));

/** A userlist.txt line with PgBouncer's quoting ("" is a quote inside a field). */
export function userlistLine(user: string, password: string): string {
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  return `${q(user)} ${q(password)}\n`;
}

/**
 * The seed's settings (transaction pooling, default_pool_size 25, min_pool_size 5, reserve_pool_size 5,
 * reserve_pool_timeout 3, max_client_conn 2000) for one database, plus what a throwaway instance needs; `extra`
 * lines are appended (the same for every pooler of a comparison).
 */
export function poolerIni(dir: string, port: number, t: BenchTarget, s: PoolerSettings, opts: { logfile?: string; extra?: string } = {}): string {
  const db = `host=${quoteConnValue(t.host)} port=${t.port} dbname=${quoteConnValue(t.database)}`;
  return `; written by pgtide bench; removed when it ends
[databases]
${quoteDatabaseName(t.database)} = ${db}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = ${s.authType}
auth_file = ${join(dir, 'userlist.txt')}
pool_mode = transaction
default_pool_size = ${s.poolSize}
min_pool_size = ${Math.min(5, s.poolSize)}
reserve_pool_size = 5
reserve_pool_timeout = 3
max_client_conn = 2000
server_tls_sslmode = ${t.sslmode}
logfile = ${join(dir, opts.logfile ?? 'pgtide.log')}
log_connections = 0
log_disconnections = 0
${opts.extra ?? ''}`;
}

export interface TempPooler {
  host: '127.0.0.1';
  port: number;
  /** The pooler process (PgBouncer under runuser: runuser's child, the pgbouncer process itself). */
  pid: number;
  alive(): boolean;
  /** "code 1" / "signal SIGKILL" once it exited. */
  exitInfo(): string | undefined;
  /** Last lines of its logfile and of its stdout/stderr. */
  logTail(lines?: number): string;
  /** SIGTERM (pgtide and PgBouncer exit at once), SIGKILL after 5 s. */
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ port: 0, host: '127.0.0.1' }, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

const live = new Set<number>();
let exitHook = false;

/** How to start one temporary pooler. */
export interface LaunchSpec {
  /** "pgtide" or "PgBouncer", for messages. */
  name: string;
  /** Its logfile (read for logTail). */
  logFile: string;
  /** Write the configuration for `port` and return the process to start. */
  prepare(port: number): ChildProcess;
  /** The process to measure, given the started one's pid (default: that one); undefined while not there yet. */
  measuredPid?(childPid: number): number | undefined;
}

function trySignal(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined || pid <= 0) return;
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

/** Start pgtide in `dir` (which the caller removes) and wait until it accepts connections; a port clash is retried. */
export function startTempPgtide(dir: string, t: BenchTarget, s: PoolerSettings, extraIni?: string): Promise<TempPooler> {
  writeFileSync(join(dir, 'userlist.txt'), userlistLine(t.user, t.password), { mode: 0o600 });
  return startTempProcess({
    name: 'pgtide',
    logFile: join(dir, 'pgtide.log'),
    prepare(port) {
      const ini = join(dir, 'pgbouncer.ini');
      writeFileSync(ini, poolerIni(dir, port, t, s, { extra: extraIni }), { mode: 0o600 });
      return spawn(process.execPath, [PGTIDE_CLI, '-q', ini], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    },
  });
}

/** Start a pooler as `spec` says and wait until it accepts connections on 127.0.0.1; a port clash is retried. */
export async function startTempProcess(spec: LaunchSpec): Promise<TempPooler> {
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const pid of live) trySignal(pid, 'SIGKILL');
    });
  }
  let last = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = spec.prepare(port);
    const pid = child.pid ?? -1;
    live.add(pid);
    let measured: number | undefined = spec.measuredPid ? undefined : pid;
    let output = '';
    const keep = (b: Buffer) => (output = (output + b.toString('utf8')).slice(-20_000));
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let exitInfo: string | undefined;
    const exited = new Promise<void>((resolve) => {
      child.once('exit', (code, sig) => {
        exitInfo ??= sig ? `signal ${sig}` : `code ${code}`;
        live.delete(pid);
        if (measured !== undefined) live.delete(measured);
        resolve();
      });
      child.once('error', (e) => {
        exitInfo ??= `could not start: ${e.message}`;
        live.delete(pid);
        resolve();
      });
    });
    const findMeasured = () => {
      if (measured === undefined && spec.measuredPid && pid > 0) {
        measured = spec.measuredPid(pid);
        if (measured !== undefined && exitInfo === undefined) live.add(measured);
      }
      return measured;
    };
    let stopping: Promise<void> | undefined;
    const p: TempPooler = {
      host: '127.0.0.1',
      port,
      pid,
      alive: () => exitInfo === undefined,
      exitInfo: () => exitInfo,
      logTail(lines = 20) {
        let file = '';
        try {
          file = readFileSync(spec.logFile, 'utf8');
        } catch {
          /* none yet */
        }
        const tail = (x: string) => x.split('\n').filter(Boolean).slice(-lines).join('\n');
        return [tail(file), tail(output)].filter(Boolean).join('\n');
      },
      stop() {
        stopping ??= (async () => {
          if (exitInfo !== undefined) return;
          const inner = findMeasured();
          trySignal(inner, 'SIGTERM');
          if (inner !== pid) trySignal(pid, 'SIGTERM');
          const t = setTimeout(() => {
            trySignal(inner, 'SIGKILL');
            trySignal(pid, 'SIGKILL');
          }, 5_000);
          await exited;
          clearTimeout(t);
        })();
        return stopping;
      },
    };
    const deadline = Date.now() + 15_000;
    while (exitInfo === undefined && Date.now() < deadline) {
      if (await accepts(port)) {
        for (let i = 0; i < 20 && findMeasured() === undefined; i++) await new Promise((r) => setTimeout(r, 50));
        if (measured !== undefined) {
          p.pid = measured;
          return p;
        }
        last = 'accepted connections, but its process was not found';
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!last) last = exitInfo === undefined ? `did not accept connections on 127.0.0.1:${port} within 15 s` : `exited before listening (${exitInfo})`;
    const log = p.logTail(20);
    await p.stop();
    if (!/in use|EADDRINUSE/i.test(log)) throw new Error(`the temporary ${spec.name} ${last}${log ? `:\n${log}` : ''}`);
    last = '';
  }
  throw new Error(`the temporary ${spec.name} could not get a free port (port clashes)`);
}

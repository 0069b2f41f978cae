// Benchmark process helpers: CPU time and memory from /proc, child lookup, TCP readiness, and pgbench-style program runs that keep partial output.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { onProcessExit } from '../test/harness/postgres.js';

export { CLK_TCK, cpuTicks, childrenOf, treeCpuTicks } from '../src/bench/proccpu.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resident memory of a process in KiB: VmRSS from /proc/<pid>/status and Pss from /proc/<pid>/smaps_rollup; undefined if gone. */
export function memoryKiB(pid: number): { rssKiB: number; pssKiB?: number } | undefined {
  let rssKiB: number | undefined;
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m) rssKiB = Number(m[1]);
  } catch {
    return undefined;
  }
  if (rssKiB === undefined) return undefined;
  let pssKiB: number | undefined;
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    if (m) pssKiB = Number(m[1]);
  } catch { /* no smaps_rollup (kernel < 4.14) */ }
  return { rssKiB, pssKiB };
}

/** Soft limit on open files of a process (/proc/<pid>/limits); undefined if unreadable, Infinity if unlimited. */
export function openFilesLimit(pid: number): number | undefined {
  try {
    const m = /^Max open files\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    if (!m) return undefined;
    return m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** Busy and total jiffies of the whole machine from /proc/stat (busy = total − idle − iowait). */
export function hostCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number); // user nice system idle iowait irq softirq steal
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - v[3]! - v[4]!, total };
}

/** True when 127.0.0.1:port accepts a TCP connection within 1 s. */
export function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ port, host: '127.0.0.1' });
    const done = (ok: boolean) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(1000, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Error when the program could not be started at all. */
  spawnError?: string;
}

/**
 * Run a program to completion in its own process group and resolve with its exit status and output, whatever the
 * status (never rejects). On timeout, or if this process exits first, the whole group gets SIGKILL.
 */
export function execCapture(file: string, args: string[], opts: { env: NodeJS.ProcessEnv; timeoutMs: number; cwd?: string; onSpawn?: (pid: number) => void }): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    const killGroup = () => {
      if (child.pid === undefined) return;
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    };
    const unregister = onProcessExit(killGroup);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; killGroup(); }, opts.timeoutMs);
    let spawnError: string | undefined;
    child.once('error', (e) => { spawnError = e.message; });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      unregister();
      killGroup(); // stragglers of the group, if any
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), timedOut, spawnError });
    });
  });
}

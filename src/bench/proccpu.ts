/* CPU time of processes for `pgtide bench --compare`: utime+stime from /proc/<pid>/stat, a process's parent and
 * children, and a process tree one level deep (the postmaster and its backends). */

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`, 100 if that fails). */
export const CLK_TCK: number = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** The fields of /proc/<pid>/stat after "(comm)": [0] = state (field 3), [1] = ppid (field 4), [11] = utime (field 14)… */
function statFields(pid: number): string[] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).trim().split(' ');
  } catch {
    return undefined;
  }
}

/** utime+stime of a process (all its threads), clock ticks; undefined when it cannot be read. */
export function cpuTicks(pid: number): number | undefined {
  const f = statFields(pid);
  return f ? Number(f[11]) + Number(f[12]) : undefined;
}

/** The parent's pid; undefined when it cannot be read. */
export function parentPid(pid: number): number | undefined {
  const f = statFields(pid);
  return f ? Number(f[1]) : undefined;
}

/** Pids whose parent is `ppid` (a scan of /proc). */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f && Number(f[1]) === ppid) out.push(Number(name));
  }
  return out;
}

/**
 * CPU ticks of a process and its children: its own utime+stime, the cutime+cstime of the children it has reaped, and
 * the utime+stime of its live children. A difference of two readings stays right while children come and go (an
 * exited backend's time moves from "live child" to "reaped").
 */
export function treeCpuTicks(pid: number): number | undefined {
  const f = statFields(pid);
  if (!f) return undefined;
  let ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  for (const c of childrenOf(pid)) ticks += cpuTicks(c) ?? 0;
  return ticks;
}

/* Server-side memory for `pgtide bench`: PSS of PostgreSQL backends (/proc/<pid>/smaps_rollup) and RSS of a pooler. */

import { readFileSync } from 'node:fs';

export type ReadResult = { kb: number } | { error: string };

function field(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

function why(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EACCES' || code === 'EPERM' ? 'no permission' : code === 'ENOENT' ? 'no such process' : (e as Error).message;
}

/** Proportional set size of a process (shared pages divided among the processes sharing them), kB. */
export function pssKb(pid: number): ReadResult {
  try {
    const kb = field(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss');
    return kb === undefined ? { error: 'no Pss line in smaps_rollup' } : { kb };
  } catch (e) {
    return { error: why(e) };
  }
}

/** Resident set size of a process, kB. */
export function rssKb(pid: number): ReadResult {
  try {
    const kb = field(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS');
    return kb === undefined ? { error: 'no VmRSS line in status' } : { kb };
  } catch (e) {
    return { error: why(e) };
  }
}

/** Whether /proc/<pid> on this machine is a PostgreSQL backend (its process title starts with "postgres: "). */
export function isPostgresBackend(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').startsWith('postgres: ');
  } catch {
    return false;
  }
}

/**
 * Whether the backends' memory can be read here, judged on one backend we know (the monitor connection's): undefined
 * if it can, else the reason, for the report's "n/a".
 */
export function backendMemoryUnreadable(pid: number, local: boolean): string | undefined {
  if (!local) return 'PostgreSQL is not on this machine (the URL names neither a loopback address nor a unix socket)';
  if (!isPostgresBackend(pid)) return `PostgreSQL's backend pid ${pid} is not a postgres process in this machine's /proc (another pid namespace, e.g. a container?)`;
  const r = pssKb(pid);
  if ('error' in r) return `cannot read /proc/${pid}/smaps_rollup (${r.error}): run as root or as the user PostgreSQL runs as`;
  return undefined;
}

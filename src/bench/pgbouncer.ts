/* The temporary PgBouncer of `pgtide bench --compare`: finding the binary and its version, and starting it on the same
 * pgbouncer.ini as the temporary pgtide (as root under runuser as an unprivileged user: PgBouncer refuses root). */

import { execFileSync, spawn } from 'node:child_process';
import { accessSync, chmodSync, chownSync, constants, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { childrenOf } from './proccpu.js';
import type { BenchTarget } from './target.js';
import { poolerIni, startTempProcess, userlistLine, type PoolerSettings, type TempPooler } from './temp-pooler.js';

/** Where PgBouncer is looked for after PATH (Debian's and Red Hat's packages). */
export const PGBOUNCER_PLACES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'];

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** `explicit` if executable (else an Error), else the first pgbouncer on PATH or in PGBOUNCER_PLACES; undefined if none. */
export function findPgbouncer(explicit?: string, path = process.env.PATH ?? ''): string | undefined {
  if (explicit) {
    if (executable(explicit)) return explicit;
    throw new Error(`--pgbouncer ${explicit}: not an executable file`);
  }
  for (const dir of path.split(delimiter).filter(Boolean)) if (executable(join(dir, 'pgbouncer'))) return join(dir, 'pgbouncer');
  return PGBOUNCER_PLACES.find(executable);
}

/** "PgBouncer 1.18.0" and [1, 18, 0] from `pgbouncer --version`; undefined if it does not answer. */
export function pgbouncerVersion(bin: string): { line: string; version: number[] } | undefined {
  try {
    const line = execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]!.trim();
    const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(line);
    return { line, version: m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : [] };
  } catch {
    return undefined;
  }
}

/** Whether PgBouncer `version` tracks protocol-level prepared statements in transaction mode (1.21 and later). */
export function tracksPrepared(version: number[]): boolean {
  const [major = 0, minor = 0] = version;
  return major > 1 || (major === 1 && minor >= 21);
}

/** Who PgBouncer runs as when we are root: the first of these users that exists. */
const RUN_AS = ['postgres', 'nobody'];

export interface RunAs {
  user: string;
  uid: number;
  gid: number;
}

/** As root: the user to run PgBouncer as (postgres, else nobody); undefined when neither exists. Not root: null. */
export function pgbouncerUser(): RunAs | null | undefined {
  if (process.getuid?.() !== 0) return null;
  for (const user of RUN_AS) {
    try {
      const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
      const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
      if (Number.isInteger(uid) && Number.isInteger(gid)) return { user, uid, gid };
    } catch {
      /* no such user */
    }
  }
  return undefined;
}

/** Whether every directory from `dir` up to / lets `who` (not its owner) pass through it. */
function traversable(dir: string, who: RunAs): boolean {
  for (let d = dir; ; d = dirname(d)) {
    let st;
    try {
      st = statSync(d);
    } catch {
      return false;
    }
    const bit = st.uid === who.uid ? 0o100 : st.gid === who.gid ? 0o010 : 0o001;
    if (!(st.mode & bit)) return false;
    if (dirname(d) === d) return true;
  }
}

/**
 * A temp dir for PgBouncer's files: under the system's temp dir (TMPDIR), or /tmp when `runAs` could not reach into
 * that; owned by `runAs` (which must write its log there). The caller removes it.
 */
export function pgbouncerDir(runAs: RunAs | null): string {
  const base = runAs && !traversable(tmpdir(), runAs) ? '/tmp' : tmpdir();
  const dir = mkdtempSync(join(base, 'pgtide-bench-pgbouncer-'));
  if (runAs) chownSync(dir, runAs.uid, runAs.gid);
  chmodSync(dir, 0o700);
  return dir;
}

/**
 * Start PgBouncer in `dir` (from pgbouncerDir) with the temporary pgtide's settings and wait until it accepts
 * connections. As root it runs under `runuser -u <runAs>`, through a shell that raises its soft open-files limit to
 * the hard one first (runuser's PAM session sets it back to 1024) and then becomes pgbouncer.
 */
export function startTempPgbouncer(bin: string, dir: string, runAs: RunAs | null, t: BenchTarget, s: PoolerSettings, extraIni?: string): Promise<TempPooler> {
  const own = (file: string) => {
    if (runAs) chownSync(file, runAs.uid, runAs.gid);
  };
  const userlist = join(dir, 'userlist.txt');
  writeFileSync(userlist, userlistLine(t.user, t.password), { mode: 0o600 });
  own(userlist);
  return startTempProcess({
    name: 'PgBouncer',
    logFile: join(dir, 'pgbouncer.log'),
    prepare(port) {
      const ini = join(dir, 'pgbouncer.ini');
      writeFileSync(ini, poolerIni(dir, port, t, s, { logfile: 'pgbouncer.log', extra: extraIni }), { mode: 0o600 });
      own(ini);
      const opts = { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'] };
      if (!runAs) return spawn(bin, ['-q', ini], opts);
      return spawn('runuser', ['-u', runAs.user, '--', 'sh', '-c', 'ulimit -n "$(ulimit -H -n)" && exec "$0" "$@"', bin, '-q', ini], opts);
    },
    measuredPid: runAs ? (pid) => childrenOf(pid)[0] : undefined,
  });
}

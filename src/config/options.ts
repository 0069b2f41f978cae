/* The library's configuration object (PoolerOptions): typed [pgbouncer] settings derived from the settings table, plus
 * databases, users and auth users; turned into the Config the ini loader builds, through the same parsers and checks. */

import { buildConfig, ConfigError, type Config } from './loader.js';
import { issue, type IniKey, type IniResult } from './ini.js';
import { secretKind } from './auth-file.js';
import { DATABASE_KEYS, quoteConnValue, USER_KEYS, type ConnKeyDef } from './connstring.js';
import { closestNames, findParam, suggestSettings, type ParamDef, type SettingName, type Settings } from './params.js';
import type { ConfigWarning, DatabaseEntry, UserEntry } from './types.js';

/** A setting's value as the library takes it: as in `Settings`, except that a list may also be one comma-separated string. */
export type SettingInput<V> = V extends readonly string[] ? readonly string[] | string : V;

/**
 * The [pgbouncer] settings, each optional, with the type of its value: numbers for integers and times (seconds, fractions
 * allowed), booleans for 0/1 settings, string unions for enums (`pool_mode: 'transaction'`), string arrays (or one
 * comma-separated string) for lists. A name that is not in the settings table is a compile error. docs/config.md lists
 * them all with their defaults, which are the same as in pgbouncer.ini.
 */
export type SettingsOptions = { readonly [K in SettingName]?: SettingInput<Settings[K]> };

/**
 * One [databases] entry as an object: the keys of PgBouncer's connection string (`host`, `port`, `dbname`, `user`,
 * `password`, `pool_size`, `pool_mode`, …), each optional. `port` defaults to 5432 and `dbname` to the entry's name.
 */
export type DatabaseOptions = { readonly [K in Exclude<keyof DatabaseEntry, 'name' | 'source'>]?: DatabaseEntry[K] };

/** One [users] entry as an object: `pool_mode`, `pool_size`, `max_user_connections`, per-user timeouts, each optional. */
export type UserOptions = { readonly [K in Exclude<keyof UserEntry, 'name' | 'source'>]?: UserEntry[K] };

/** A user clients may log in as: a plain-text `password`, or a `secret` as userlist.txt holds it (md5… or SCRAM-SHA-256$…). */
export type AuthUser = { readonly name: string; readonly password: string } | { readonly name: string; readonly secret: string };

/**
 * Who may log in: `users` (what userlist.txt would hold), or `file`, the path of a userlist.txt (the same as the
 * `auth_file` setting; read again on every reload).
 */
export type AuthOptions = { readonly users: readonly AuthUser[] } | { readonly file: string };

/** What `new Pooler(options)` and `pooler.reload(options)` take. Only `databases` is required. */
export interface PoolerOptions {
  /**
   * The [databases] section: client-side database name → where it is, as an object (`{ host, port, dbname }`) or as
   * PgBouncer's connection string (`'host=127.0.0.1 port=5432 dbname=app'`). `'*'` is the fallback entry.
   */
  readonly databases: Readonly<Record<string, DatabaseOptions | string>>;
  /** The [users] section: user name → per-user settings, as an object or as PgBouncer's `key=value` string. */
  readonly users?: Readonly<Record<string, UserOptions | string>>;
  /** The [pgbouncer] settings; the ones left out keep their defaults (docs/config.md). */
  readonly settings?: SettingsOptions;
  /** Who may log in (the auth_file); leave it out with `auth_type: 'trust'`, or with `auth_user`/`auth_query`. */
  readonly auth?: AuthOptions;
  /** Directory a relative `auth.file` / `auth_file` is read from (default: the process's working directory). */
  readonly cwd?: string;
  /** Also write each log line to stderr (default false: the lines only go to the 'log' event, and to `logfile` if set). */
  readonly logToStderr?: boolean;
}

/** How the options name themselves in Config.file and in SHOW CONFIG's conffile. */
export const OPTIONS_LABEL = '(library options)';

const EXPECTED: Record<ParamDef['kind'], string> = {
  int: 'an integer (number)',
  time: 'a number of seconds',
  bool: 'true or false',
  enum: 'a string',
  string: 'a string',
  list: 'an array of strings or one comma-separated string',
};

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? `the string "${v}"` : `${typeof v} ${String(v)}`;
}

/** A typed setting value as the text the ini parser takes, or an error text. */
function settingText(p: ParamDef, v: unknown): string | { error: string } {
  const wrong = { error: `expected ${EXPECTED[p.kind]}, got ${describe(v)}` };
  switch (p.kind) {
    case 'int':
    case 'time':
      return typeof v === 'number' && Number.isFinite(v) ? String(v) : wrong;
    case 'bool':
      return typeof v === 'boolean' ? (v ? '1' : '0') : wrong;
    case 'enum':
    case 'string':
      return typeof v === 'string' ? v : wrong;
    case 'list':
      if (typeof v === 'string') return v;
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) return wrong;
      if (v.some((x: string) => x.includes(','))) return { error: 'a list item cannot contain a comma' };
      return v.join(',');
  }
}

/** A typed [databases] / [users] value as a connection string (`key=value …`), or errors. */
function connText(value: unknown, keys: readonly ConnKeyDef[], where: string, errors: ConfigWarning[]): string | undefined {
  if (typeof value === 'string') return value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    errors.push(issue(where, 0, `expected an object or a connection string, got ${describe(value)}`));
    return undefined;
  }
  const parts: string[] = [];
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    if (v === undefined) continue;
    const def = keys.find((k) => k.name === key && k.aliasOf === undefined);
    if (!def) {
      const near = closestNames(
        key,
        keys.filter((k) => k.aliasOf === undefined).map((k) => k.name),
      );
      errors.push(issue(where, 0, `unknown key "${key}"${near.length > 0 ? `; closest: ${near.join(', ')}` : ''}`));
      continue;
    }
    const numeric = def.kind === 'int' || def.kind === 'port' || def.kind === 'time';
    if (numeric ? typeof v !== 'number' || !Number.isFinite(v) : typeof v !== 'string') {
      errors.push(issue(where, 0, `${key}: expected ${numeric ? 'a number' : 'a string'}, got ${describe(v)}`));
      continue;
    }
    parts.push(`${key}=${quoteConnValue(String(v))}`);
  }
  return parts.join(' ');
}

/**
 * Turn PoolerOptions into a Config: every value is checked by the same parsers as pgbouncer.ini's, and an unknown
 * setting or key, or a value of the wrong type, is an error too (the ini only warns about unknown names). Each
 * message names what is wrong: `settings.default_pool_size: invalid value "-x" …`. Throws ConfigError.
 */
export function configFromOptions(options: PoolerOptions): Config {
  const errors: ConfigWarning[] = [];
  if (options === null || typeof options !== 'object') throw new ConfigError([issue(OPTIONS_LABEL, 0, 'expected an options object')]);
  const keys: IniKey[] = [];
  const key = (section: string, k: string, value: string, file: string) =>
    keys.push({ section, key: k, quoted: false, value, file, line: 0 });

  const known = new Set(['databases', 'users', 'settings', 'auth', 'cwd', 'logToStderr']);
  for (const k of Object.keys(options)) {
    if (!known.has(k)) {
      const near = closestNames(k, [...known]);
      errors.push(issue(k, 0, `unknown option${near.length > 0 ? `; closest: ${near.join(', ')}` : ''}`));
    }
  }

  const settings = (options.settings ?? {}) as Record<string, unknown>;
  for (const [name, v] of Object.entries(settings)) {
    if (v === undefined) continue;
    const where = `settings.${name}`;
    const p = findParam(name);
    if (!p) {
      const near = suggestSettings(name);
      errors.push(issue(where, 0, `unknown setting${near.length > 0 ? `; closest settings: ${near.join(', ')}` : ''}`));
      continue;
    }
    const text = settingText(p, v);
    if (typeof text !== 'string') errors.push(issue(where, 0, text.error));
    else key('pgbouncer', name, text, where);
  }

  const auth = options.auth;
  let authUsers: Map<string, string> | null = null;
  if (auth !== undefined) {
    if ('file' in auth && typeof auth.file === 'string') {
      if (settings.auth_file !== undefined) errors.push(issue('auth.file', 0, 'give auth.file or settings.auth_file, not both'));
      key('pgbouncer', 'auth_file', auth.file, 'auth.file');
    } else if ('users' in auth && Array.isArray(auth.users)) {
      if (settings.auth_file !== undefined) errors.push(issue('auth.users', 0, 'give auth.users or settings.auth_file, not both'));
      authUsers = new Map();
      auth.users.forEach((u: AuthUser, i: number) => {
        const where = `auth.users[${i}]`;
        const name = (u as { name?: unknown }).name;
        const password = (u as { password?: unknown }).password;
        const secret = (u as { secret?: unknown }).secret;
        if (typeof name !== 'string' || name === '') errors.push(issue(where, 0, 'name must be a non-empty string'));
        else if (authUsers!.has(name)) errors.push(issue(where, 0, `user "${name}" is listed twice`));
        else if (typeof password === 'string' && secret === undefined) authUsers!.set(name, password);
        else if (typeof secret === 'string' && password === undefined) {
          if (secretKind(secret) === 'plain')
            errors.push(issue(where, 0, `the secret of "${name}" is neither md5<32 hex digits> nor SCRAM-SHA-256$…; give a plain-text one as password`));
          else authUsers!.set(name, secret);
        } else errors.push(issue(where, 0, 'give either password or secret, as a string'));
      });
    } else errors.push(issue('auth', 0, 'expected { users: [...] } or { file: "userlist.txt" }'));
  }

  const sections = [{ name: 'pgbouncer', file: OPTIONS_LABEL, line: 0 }];
  const databases = options.databases;
  if (databases === null || typeof databases !== 'object') errors.push(issue('databases', 0, 'expected an object: name → connection'));
  else {
    sections.push({ name: 'databases', file: OPTIONS_LABEL, line: 0 });
    for (const [name, v] of Object.entries(databases)) {
      const where = `databases.${name}`;
      const text = connText(v, DATABASE_KEYS, where, errors);
      if (text !== undefined) key('databases', name, text, where);
    }
  }
  if (options.users !== undefined) {
    sections.push({ name: 'users', file: OPTIONS_LABEL, line: 0 });
    for (const [name, v] of Object.entries(options.users)) {
      const where = `users.${name}`;
      const text = connText(v, USER_KEYS, where, errors);
      if (text !== undefined) key('users', name, text, where);
    }
  }
  // the values go through the ini's parsers; their errors and the ones above are reported together
  const ini: IniResult = { sections, keys, errors: [], files: [] };
  let cfg: Config;
  try {
    cfg = buildConfig(ini, OPTIONS_LABEL, options.cwd ?? process.cwd());
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError([...errors, ...err.errors]);
    throw err;
  }
  if (errors.length > 0) throw new ConfigError(errors);
  cfg.file = OPTIONS_LABEL;
  if (authUsers) cfg.authFile = authUsers;
  return cfg;
}

/** Library-only refusals (the CLI has its own way for each): several workers, and a unix socket named after port 0. */
export function checkLibraryConfig(cfg: Config): void {
  const errors: ConfigWarning[] = [];
  const at = (name: string) => cfg.explicit.get(name) ?? { file: cfg.file, line: 0 };
  const st = cfg.settings;
  if (st.workers > 1) {
    const w = at('workers');
    errors.push(issue(w.file, w.line, `workers = ${st.workers}: the library serves from this one process; run the pgtide command for several workers`));
  }
  if (st.listen_port === 0 && st.unix_socket_dir !== '') {
    const w = at('listen_port');
    errors.push(
      issue(w.file, w.line, `listen_port 0 (any free port) would name the unix socket ${st.unix_socket_dir}/.s.PGSQL.0: set unix_socket_dir to '' (no unix socket) or choose a port`),
    );
  }
  if (errors.length > 0) throw new ConfigError(errors);
}

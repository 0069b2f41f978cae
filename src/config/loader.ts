/* Config loading: pgbouncer.ini (with %include) plus auth_file into one Config, with warnings and fatal errors. */

import { resolve } from 'node:path';
import { readAuthFile } from './auth-file.js';
import { parseDatabaseEntry, parseUserEntry } from './connstring.js';
import { issue, parseIni, readIni, type IniKey, type IniOptions, type IniResult } from './ini.js';
import {
  defaultSettings,
  defaultValue,
  findParam,
  formatSettingValue,
  parseSettingValue,
  suggestSettings,
  type ParamDef,
  type SettingValue,
  type Settings,
} from './params.js';
import type { ConfigWarning, DatabaseEntry, UserEntry } from './types.js';

export interface SettingSource {
  file: string;
  line: number;
}

export interface Config {
  /** Absolute path of the main config file. */
  file: string;
  settings: Settings;
  /** Settings written in the file(s), with where (the last occurrence wins, as in PgBouncer). */
  explicit: Map<string, SettingSource>;
  /** [databases] entries by client-side name, including '*' when present. */
  databases: Map<string, DatabaseEntry>;
  users: Map<string, UserEntry>;
  /** auth_file contents: user → secret (empty when auth_file is unset or unreadable). */
  authFile: Map<string, string>;
  /** Things the user should know; each message starts with "file:line: ". The loader never logs. */
  warnings: ConfigWarning[];
}

/** Fatal configuration problems (bad values, syntax, unreadable files); `errors` lists each one. */
export class ConfigError extends Error {
  readonly errors: ConfigWarning[];
  constructor(errors: ConfigWarning[]) {
    const lines = errors.map((e) => e.message);
    super(`invalid configuration:\n${lines.join('\n')}`);
    this.name = 'ConfigError';
    this.errors = errors;
  }
}

export type LoadOptions = IniOptions;

const KNOWN_SECTIONS = new Set(['pgbouncer', 'databases', 'users', 'peers']);

interface Build {
  config: Config;
  errors: ConfigWarning[];
  peersWarned: boolean;
}

const UNKNOWN_TAIL = '(pgtide goes on; PgBouncer refuses to start on it)';

function warnUnknownSetting(b: Build, k: IniKey): void {
  const near = suggestSettings(k.key);
  const hint = near.length > 0 ? `; closest settings: ${near.join(', ')}` : '';
  b.config.warnings.push(issue(k.file, k.line, `unknown setting "${k.key}" ignored ${UNKNOWN_TAIL}${hint}`));
}

function sameAsDefault(p: ParamDef, value: SettingValue): boolean {
  return formatSettingValue(p, value) === formatSettingValue(p, defaultValue(p));
}

function setSetting(b: Build, p: ParamDef, value: SettingValue, src: SettingSource): void {
  const settings = b.config.settings as Record<string, SettingValue>;
  settings[p.name] = value;
  b.config.explicit.set(p.name, src);
  if (p.aliasOf !== undefined) {
    settings[p.aliasOf] = Array.isArray(value) ? [...value] : value;
    b.config.explicit.set(p.aliasOf, src);
  }
}

function applySetting(b: Build, k: IniKey): void {
  const p = findParam(k.key);
  if (!p) {
    warnUnknownSetting(b, k);
    return;
  }
  let value: SettingValue;
  try {
    value = parseSettingValue(p, k.value);
  } catch (err) {
    b.errors.push(issue(k.file, k.line, (err as Error).message));
    return;
  }
  if ((p.kind === 'string' || p.kind === 'list') && (k.value === '""' || k.value === "''")) {
    b.config.warnings.push(
      issue(k.file, k.line, `${p.name} is set to the two characters ${k.value}, not to an empty value; write "${p.name} =" for empty`),
    );
  }
  setSetting(b, p, value, { file: k.file, line: k.line });
  if (p.status === 'accepted' && !sameAsDefault(p, value)) {
    b.config.warnings.push(issue(k.file, k.line, `${p.name} is accepted but not implemented by pgtide yet; it has no effect`));
  }
}

function applyDatabase(b: Build, k: IniKey): void {
  const r = parseDatabaseEntry(k.key, k.value, { file: k.file, line: k.line });
  b.config.warnings.push(...r.warnings);
  b.errors.push(...r.errors);
  if (r.entry) b.config.databases.set(r.entry.name, r.entry);
}

function applyUser(b: Build, k: IniKey): void {
  const r = parseUserEntry(k.key, k.value, { file: k.file, line: k.line });
  b.config.warnings.push(...r.warnings);
  b.errors.push(...r.errors);
  if (r.entry) b.config.users.set(r.entry.name, r.entry);
}

function applyKey(b: Build, k: IniKey): void {
  switch (k.section) {
    case 'pgbouncer':
      return applySetting(b, k);
    case 'databases':
      return applyDatabase(b, k);
    case 'users':
      return applyUser(b, k);
    case 'peers':
      if (!b.peersWarned) {
        b.peersWarned = true;
        b.config.warnings.push(
          issue(k.file, k.line, '[peers] is accepted but not implemented by pgtide yet; its entries have no effect'),
        );
      }
      return;
    case null:
      b.config.warnings.push(
        issue(k.file, k.line, `"${k.key}" appears before any [section] and is ignored ${UNKNOWN_TAIL}`),
      );
      return;
    default:
      return; // unknown section: warned once at its header
  }
}

function checkSections(b: Build, ini: IniResult, mainFile: string): void {
  for (const s of ini.sections) {
    if (!KNOWN_SECTIONS.has(s.name)) {
      b.config.warnings.push(
        issue(s.file, s.line, `unknown section [${s.name}] ignored with all its keys ${UNKNOWN_TAIL}; known: [databases], [pgbouncer], [users], [peers]`),
      );
    }
  }
  if (!ini.sections.some((s) => s.name === 'pgbouncer')) {
    b.config.warnings.push(
      issue(mainFile, 1, 'no [pgbouncer] section: every setting keeps its default (PgBouncer refuses to start without one)'),
    );
  }
}

function loadAuthFile(b: Build, cwd: string): void {
  const name = b.config.settings.auth_file;
  if (name === '') return;
  const where = b.config.explicit.get('auth_file') ?? { file: b.config.file, line: 0 };
  const path = resolve(cwd, name);
  try {
    const r = readAuthFile(path);
    b.config.authFile = r.users;
    b.config.warnings.push(...r.warnings);
  } catch (err) {
    b.config.warnings.push(
      issue(where.file, where.line, `cannot read auth_file "${name}" (${path}): ${(err as Error).message}; no users loaded from it`),
    );
  }
}

/**
 * Build a Config from tokenized ini keys (the ini reader's, or the library's options turned into keys): every value goes
 * through the settings table's parsers. `file` names the configuration; relative auth_file paths start at `cwd`.
 */
export function buildConfig(ini: IniResult, file: string, cwd: string): Config {
  const b: Build = {
    config: {
      file: resolve(cwd, file),
      settings: defaultSettings(),
      explicit: new Map(),
      databases: new Map(),
      users: new Map(),
      authFile: new Map(),
      warnings: [],
    },
    errors: [...ini.errors],
    peersWarned: false,
  };
  checkSections(b, ini, file);
  for (const k of ini.keys) applyKey(b, k);
  if (!b.config.explicit.has('conffile')) b.config.settings.conffile = file;
  if (b.errors.length > 0) throw new ConfigError(b.errors);
  loadAuthFile(b, cwd);
  return b.config;
}

/**
 * Build a Config from ini text (for tests and embedding). `file` names the text in messages and anchors
 * relative %include paths. Throws ConfigError when anything is invalid.
 */
export function parseConfigText(text: string, file: string, options?: LoadOptions): Config {
  return buildConfig(parseIni(text, file, options), file, options?.cwd ?? process.cwd());
}

/** Load a config file (synchronously). Throws ConfigError when it cannot be read or anything is invalid. */
export function loadConfig(path: string, options?: LoadOptions): Config {
  let ini: IniResult;
  try {
    ini = readIni(path, options);
  } catch (err) {
    throw new ConfigError([issue(path, 0, `cannot read config file: ${(err as Error).message}`)]);
  }
  return buildConfig(ini, path, options?.cwd ?? process.cwd());
}

/* pgbouncer.ini tokenizer: [sections], key = value lines, %include, with the file and line of everything it returns. */

import { readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { ConfigWarning } from './types.js';

/** A warning or error located in a file: `message` already starts with "file:line: " ("file: " when line is 0). */
export function issue(file: string, line: number, text: string): ConfigWarning {
  return { file, line, message: line > 0 ? `${file}:${line}: ${text}` : `${file}: ${text}` };
}

export interface IniSection {
  name: string;
  file: string;
  line: number;
}

export interface IniKey {
  /** The section in force at this line (it carries across %include, as in PgBouncer), or null before any. */
  section: string | null;
  /** The key, unquoted. */
  key: string;
  /** True when the key was written in double or single quotes. */
  quoted: boolean;
  /** Everything after `=` to the end of the line, trimmed; quotes and `;`/`#` have no meaning here. */
  value: string;
  file: string;
  line: number;
}

export interface IniResult {
  sections: IniSection[];
  keys: IniKey[];
  /** Syntax errors, unreadable includes, include loops. */
  errors: ConfigWarning[];
  /** Every file read, main file first (absolute paths). */
  files: string[];
}

export interface IniOptions {
  /** Directory against which relative %include paths are tried first (default: process.cwd(), as PgBouncer). */
  cwd?: string;
  /** File reader (default: fs.readFileSync as UTF-8); tests may inject one. */
  readFile?: (path: string) => string;
  /** Tells whether a path exists (default: fs.statSync). */
  exists?: (path: string) => boolean;
}

/** PgBouncer stops at 10 levels of %include. */
export const MAX_INCLUDE_DEPTH = 10;

const BARE_KEY = /^[A-Za-z0-9_.*-]+/;

interface State {
  opts: Required<IniOptions>;
  result: IniResult;
  section: string | null;
  /** Real paths of the files being read, outermost first, for loop detection. */
  stack: string[];
}

function defaultExists(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

function fullOptions(o: IniOptions | undefined): Required<IniOptions> {
  return {
    cwd: o?.cwd ?? process.cwd(),
    readFile: o?.readFile ?? ((p: string) => readFileSync(p, 'utf8')),
    exists: o?.exists ?? defaultExists,
  };
}

function realPath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
}

/**
 * Where an %include points. PgBouncer opens the name as given, so a relative path is relative to the
 * working directory. pgtide does the same, and only if nothing is there tries the including file's directory.
 */
export function resolveInclude(name: string, includingFile: string, opts: IniOptions = {}): string {
  if (isAbsolute(name)) return name;
  const o = fullOptions(opts);
  const fromCwd = resolve(o.cwd, name);
  if (o.exists(fromCwd)) return fromCwd;
  const fromDir = resolve(dirname(resolve(o.cwd, includingFile)), name);
  return o.exists(fromDir) ? fromDir : fromCwd;
}

/** Reads a quoted key starting at text[0] (`"…"` with "" for a quote, or `'…'` without escapes). */
function readQuotedKey(text: string): { key: string; rest: string } | undefined {
  const q = text[0];
  let key = '';
  let i = 1;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === q) {
      if (q === '"' && text[i + 1] === '"') {
        key += '"';
        i += 2;
        continue;
      }
      return key.length > 0 ? { key, rest: text.slice(i + 1) } : undefined;
    }
    key += c;
    i++;
  }
  return undefined;
}

function readKey(text: string): { key: string; quoted: boolean; rest: string } | undefined {
  if (text.startsWith('"') || text.startsWith("'")) {
    const q = readQuotedKey(text);
    return q ? { ...q, quoted: true } : undefined;
  }
  const m = BARE_KEY.exec(text);
  return m ? { key: m[0], quoted: false, rest: text.slice(m[0].length) } : undefined;
}

const KEY_HELP =
  'expected "key = value"; names with characters other than A-Z a-z 0-9 _ . - * must be quoted, e.g. "my db" = host=…';

/** One line (or the part after a section header), already stripped of leading whitespace. */
function parseContent(st: State, content: string, file: string, line: number, depth: number): void {
  if (content === '' || content.startsWith(';') || content.startsWith('#')) return;
  if (/^%include[ \t]/.test(content)) {
    includeFile(st, content.slice(8).trim(), file, line, depth);
    return;
  }
  if (content.startsWith('%include')) {
    st.result.errors.push(issue(file, line, '%include needs a file name: %include <path>'));
    return;
  }
  if (content.startsWith('[')) {
    const end = content.indexOf(']');
    if (end < 0) {
      st.result.errors.push(issue(file, line, 'syntax error: section header has no closing "]"'));
      return;
    }
    st.section = content.slice(1, end);
    st.result.sections.push({ name: st.section, file, line });
    // PgBouncer keeps reading after "]" as if a new line started there (so "[x] ; note" is fine).
    parseContent(st, content.slice(end + 1).trimStart(), file, line, depth);
    return;
  }
  const k = readKey(content);
  const afterKey = k?.rest.replace(/^[ \t]*/, '');
  if (!k || afterKey === undefined || !afterKey.startsWith('=')) {
    st.result.errors.push(issue(file, line, `syntax error: ${KEY_HELP}`));
    return;
  }
  const value = afterKey.slice(1).trim();
  st.result.keys.push({ section: st.section, key: k.key, quoted: k.quoted, value, file, line });
}

function includeFile(st: State, name: string, file: string, line: number, depth: number): void {
  if (name === '') {
    st.result.errors.push(issue(file, line, '%include needs a file name: %include <path>'));
    return;
  }
  if (depth + 1 > MAX_INCLUDE_DEPTH) {
    st.result.errors.push(issue(file, line, `%include nested more than ${MAX_INCLUDE_DEPTH} levels deep`));
    return;
  }
  const target = resolveInclude(name, file, st.opts);
  const real = realPath(target);
  if (st.stack.includes(real)) {
    const chain = [...st.stack.slice(st.stack.indexOf(real)), real].join(' -> ');
    st.result.errors.push(issue(file, line, `%include loop: ${chain}`));
    return;
  }
  let text: string;
  try {
    text = st.opts.readFile(target);
  } catch (err) {
    st.result.errors.push(issue(file, line, `cannot read %include file "${name}" (${target}): ${(err as Error).message}`));
    return;
  }
  const shown = isAbsolute(name) || target === resolve(st.opts.cwd, name) ? name : target;
  parseFile(st, text, shown, real, depth + 1);
}

function parseFile(st: State, text: string, file: string, real: string, depth: number): void {
  st.stack.push(real);
  st.result.files.push(real);
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  const lines = body.split(/\r?\n|\r/);
  for (let i = 0; i < lines.length; i++) {
    parseContent(st, (lines[i] as string).trimStart(), file, i + 1, depth);
  }
  st.stack.pop();
}

/**
 * Tokenize ini text. `file` names it in messages and anchors relative %include paths.
 * Never throws: problems come back in `errors`, each with file:line.
 */
export function parseIni(text: string, file: string, options?: IniOptions): IniResult {
  const opts = fullOptions(options);
  const st: State = {
    opts,
    result: { sections: [], keys: [], errors: [], files: [] },
    section: null,
    stack: [],
  };
  parseFile(st, text, file, realPath(resolve(opts.cwd, file)), 0);
  return st.result;
}

/** Read and tokenize an ini file. Throws only when the file itself cannot be read. */
export function readIni(path: string, options?: IniOptions): IniResult {
  const opts = fullOptions(options);
  const text = opts.readFile(resolve(opts.cwd, path));
  return parseIni(text, path, opts);
}

/*
 * The settings table against what users read (PgBouncer's etc/optscan.sh idea): docs/config.md and examples/pgtide.ini
 * must name every setting and nothing else, and the ini examples in README.md, docs/ and examples/ must load without
 * warnings. Each check returns a list of problems (empty = fine); test/unit/config-doc.test.ts runs them.
 */

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DATABASE_KEYS, USER_KEYS, type ConnKeyDef } from '../src/config/connstring.js';
import { ConfigError, parseConfigText } from '../src/config/loader.js';
import { PARAMS, parseSettingValue, type ParamDef } from '../src/config/params.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const EXAMPLE_INI_PATH = join(REPO_ROOT, 'examples', 'pgtide.ini');

/** Marks, in the explanation above a setting of examples/pgtide.ini, settings that do nothing yet and pgtide's own. */
export const NOT_IMPLEMENTED_MARK = 'not yet implemented';
export const PGTIDE_ONLY_MARK = 'pgtide only';

export interface ExampleSetting {
  name: string;
  value: string;
  /** false for a commented-out line (`;name = default`). */
  active: boolean;
  line: number;
  /** The `;;` explanation lines above it (shared by the settings of one group, up to a blank line). */
  notes: string;
}

const SECTION_RE = /^;?\[([^\]]+)\]\s*$/;
const SETTING_RE = /^(;?)([A-Za-z0-9_.-]+)\s*=\s*(.*?)\s*$/;

/**
 * The [pgbouncer] settings of an example ini written in PgBouncer's sample style: `name = value` in force,
 * `;name = value` commented out, `;;` explanations. A commented-out section header (`;[users]`) also switches section.
 */
export function readExampleSettings(text: string): ExampleSetting[] {
  const out: ExampleSetting[] = [];
  let section: string | null = null;
  let notes: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const sec = SECTION_RE.exec(line);
    if (sec) {
      section = sec[1] as string;
      notes = [];
      return;
    }
    if (line.startsWith(';;')) {
      notes.push(line.replace(/^;+\s?/, ''));
      return;
    }
    const m = SETTING_RE.exec(line);
    if (m && section === 'pgbouncer') {
      out.push({ name: m[2] as string, value: m[3] as string, active: m[1] === '', line: i + 1, notes: notes.join(' ') });
      return;
    }
    if (!m) notes = []; // a blank line (or anything else) ends a group
  });
  return out;
}

/** examples/pgtide.ini against the settings table. */
export function checkExampleIni(text: string, file = 'examples/pgtide.ini', params: readonly ParamDef[] = PARAMS): string[] {
  const problems: string[] = [];
  const byName = new Map(params.map((p) => [p.name, p]));
  const seen = new Map<string, number>();
  for (const s of readExampleSettings(text)) {
    const where = `${file}:${s.line}`;
    const p = byName.get(s.name);
    if (!p) {
      problems.push(`${where}: "${s.name}" is not a pgtide setting`);
      continue;
    }
    const first = seen.get(s.name);
    if (first !== undefined) problems.push(`${where}: "${s.name}" is already listed at line ${first}`);
    else seen.set(s.name, s.line);
    if (s.active) {
      try {
        parseSettingValue(p, s.value);
      } catch (err) {
        problems.push(`${where}: ${(err as Error).message}`);
      }
    } else if (s.value !== p.default) {
      problems.push(`${where}: commented-out ${s.name} must show its default "${p.default}", not "${s.value}"`);
    }
    const notes = s.notes.toLowerCase();
    const accepted = p.status === 'accepted';
    if (accepted !== notes.includes(NOT_IMPLEMENTED_MARK)) {
      problems.push(`${where}: ${s.name} is ${accepted ? 'not implemented' : 'implemented'}, so its explanation must ${accepted ? '' : 'not '}say "${NOT_IMPLEMENTED_MARK}"`);
    }
    const own = p.pgtide === true;
    if (own !== notes.includes(PGTIDE_ONLY_MARK)) {
      problems.push(`${where}: ${s.name} is ${own ? "pgtide's own" : 'a PgBouncer setting'}, so its explanation must ${own ? '' : 'not '}say "${PGTIDE_ONLY_MARK}"`);
    }
  }
  for (const p of params) if (!seen.has(p.name)) problems.push(`${file}: setting ${p.name} is missing`);
  return problems;
}

/** Names in the `| \`name\` |` rows of one `## title` section of docs/config.md (undefined when the section is missing). */
export function docRowNames(doc: string, title: string): string[] | undefined {
  const lines = doc.split('\n');
  const start = lines.indexOf(`## ${title}`);
  if (start < 0) return undefined;
  const names: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('## ')) break;
    const m = /^\| `([^`]+)` \|/.exec(line);
    if (m) names.push(m[1] as string);
  }
  return names;
}

function sameNames(what: string, documented: string[] | undefined, real: readonly string[]): string[] {
  if (!documented) return [`docs/config.md: no "## ${what}" section`];
  const problems: string[] = [];
  const realSet = new Set(real);
  const count = new Map<string, number>();
  for (const n of documented) count.set(n, (count.get(n) ?? 0) + 1);
  for (const [n, c] of count) {
    if (!realSet.has(n)) problems.push(`docs/config.md (${what}): "${n}" is documented but does not exist`);
    else if (c > 1) problems.push(`docs/config.md (${what}): "${n}" has ${c} rows`);
  }
  for (const n of real) if (!count.has(n)) problems.push(`docs/config.md (${what}): ${n} is not documented`);
  return problems;
}

export const SETTINGS_TITLE = '[pgbouncer] settings';
export const DATABASES_TITLE = '[databases] connection string keys';
export const USERS_TITLE = '[users] keys';

/** docs/config.md has one row per setting and per connection-string key, and no row for anything else. */
export function checkConfigDoc(
  doc: string,
  params: readonly ParamDef[] = PARAMS,
  databaseKeys: readonly ConnKeyDef[] = DATABASE_KEYS,
  userKeys: readonly ConnKeyDef[] = USER_KEYS,
): string[] {
  return [
    ...sameNames(SETTINGS_TITLE, docRowNames(doc, SETTINGS_TITLE), params.map((p) => p.name)),
    ...sameNames(DATABASES_TITLE, docRowNames(doc, DATABASES_TITLE), databaseKeys.map((k) => k.name)),
    ...sameNames(USERS_TITLE, docRowNames(doc, USERS_TITLE), userKeys.map((k) => k.name)),
  ];
}

// ---- ini examples in the documentation ------------------------------------------------------------

export interface IniSnippet {
  /** File, relative to the repo root. */
  file: string;
  /** Line of the snippet's first line in that file. */
  line: number;
  text: string;
}

/** ```ini fenced blocks of a Markdown text. */
export function markdownIniBlocks(file: string, text: string): IniSnippet[] {
  const out: IniSnippet[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*```ini\s*$/.test(lines[i] as string)) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^\s*```\s*$/.test(lines[end] as string)) end++;
    out.push({ file, line: start + 1, text: lines.slice(start, end).map((l) => l.replace(/^\s+/, '')).join('\n') });
    i = end;
  }
  return out;
}

/** YAML block scalars holding an ini file (`pgbouncer.ini: |`), as in a Kubernetes ConfigMap. */
export function yamlIniBlocks(file: string, text: string): IniSnippet[] {
  const out: IniSnippet[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)[\w.-]+\.ini:\s*\|\s*$/.exec(lines[i] as string);
    if (!m) continue;
    const indent = (m[1] as string).length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j] as string;
      if (l.trim() !== '' && l.length - l.trimStart().length <= indent) break;
      body.push(l.trim());
    }
    out.push({ file, line: i + 2, text: body.join('\n') });
    i = j - 1;
  }
  return out;
}

/**
 * Problems pgtide's loader finds in a snippet: errors and warnings, except an unreadable auth_file (the snippets name
 * paths of the deployment). A snippet without any section header is taken as [pgbouncer] lines.
 */
export function checkIniSnippet(s: IniSnippet, cwd = REPO_ROOT): string[] {
  let text = s.text;
  let offset = s.line - 1;
  if (!/^\s*\[[^\]]+\]/m.test(text)) {
    text = `[pgbouncer]\n${text}`;
    offset -= 1;
  } else if (!/^\s*\[pgbouncer\]/m.test(text)) {
    text = `${text}\n[pgbouncer]\n`;
  }
  const at = (msg: string): string =>
    msg.replace(/^<snippet>:(\d+):/, (_, n: string) => `${s.file}:${Number(n) + offset}:`).replace(/^<snippet>:/, `${s.file}:${s.line}:`);
  try {
    const cfg = parseConfigText(text, '<snippet>', { cwd });
    return cfg.warnings.filter((w) => !w.message.includes('cannot read auth_file')).map((w) => at(w.message));
  } catch (err) {
    if (err instanceof ConfigError) return err.errors.map((e) => at(e.message));
    throw err;
  }
}

function walk(dir: string, keep: (name: string) => boolean): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name.startsWith('.') ? [] : walk(p, keep);
    return keep(e.name) ? [p] : [];
  });
}

/** A Markdown snippet with placeholders (`port=<postgres port>`) describes a generated file; it is not meant to load. */
export function isTemplate(s: IniSnippet): boolean {
  return /<(?!empty>)[A-Za-z][^<>\n]*>/.test(s.text);
}

/**
 * Every ini example users read: ```ini blocks of README.md and docs/*.md, examples/**\/*.ini, ini blocks of
 * examples/**\/*.yaml; Markdown templates (see isTemplate) left out.
 */
export function documentationIniSnippets(root = REPO_ROOT): IniSnippet[] {
  const rel = (p: string): string => relative(root, p);
  const md = [join(root, 'README.md'), ...walk(join(root, 'docs'), (n) => n.endsWith('.md'))];
  const examples = walk(join(root, 'examples'), (n) => n.endsWith('.ini') || n.endsWith('.yaml') || n.endsWith('.yml') || n.endsWith('.md'));
  const out: IniSnippet[] = [];
  for (const f of [...md, ...examples].sort()) {
    const text = readFileSync(f, 'utf8');
    if (f.endsWith('.md')) out.push(...markdownIniBlocks(rel(f), text).filter((s) => !isTemplate(s)));
    else if (f.endsWith('.ini')) out.push({ file: rel(f), line: 1, text });
    else out.push(...yamlIniBlocks(rel(f), text));
  }
  return out;
}

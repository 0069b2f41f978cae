/* auth_file (userlist.txt) reader: `"user" "secret"` lines into a user → secret map, with file:line warnings. */

import { readFileSync } from 'node:fs';
import { issue } from './ini.js';
import type { ConfigWarning } from './types.js';

export interface AuthFileResult {
  users: Map<string, string>;
  warnings: ConfigWarning[];
}

export type SecretKind = 'plain' | 'md5' | 'scram';

/** 'md5' = "md5" + 32 hex digits; 'scram' = starts with "SCRAM-SHA-256$"; anything else is a plain-text password. */
export function secretKind(secret: string): SecretKind {
  if (/^md5[0-9a-fA-F]{32}$/.test(secret)) return 'md5';
  if (secret.startsWith('SCRAM-SHA-256$')) return 'scram';
  return 'plain';
}

/** Reads a double-quoted field at line[start] ('""' is one quote). Returns [value, index after it] or undefined. */
function readField(line: string, start: number): [string, number] | undefined {
  if (line[start] !== '"') return undefined;
  let out = '';
  let i = start + 1;
  while (i < line.length) {
    const c = line[i] as string;
    if (c === '"') {
      if (line[i + 1] === '"') {
        out += '"';
        i += 2;
        continue;
      }
      return [out, i + 1];
    }
    out += c;
    i++;
  }
  return undefined;
}

/** One non-comment line → [user, secret], or a reason it is malformed. */
function parseLine(line: string): [string, string] | string {
  const user = readField(line, 0);
  if (!user) return line.startsWith('"') ? 'the user name has no closing quote' : 'expected a line like "user" "secret"';
  // PgBouncer skips whatever lies between the two fields up to the next quote.
  const open = line.indexOf('"', user[1]);
  if (open < 0) return `no secret after user "${user[0]}"`;
  const secret = readField(line, open);
  if (!secret) return `the secret of user "${user[0]}" has no closing quote`;
  return [user[0], secret[0]];
}

/**
 * Parse userlist.txt text. Lines starting with ';' or '#' are comments, blank lines are fine, fields after the
 * second are ignored. A malformed line is skipped with a warning (PgBouncer stops reading the file there).
 */
export function parseAuthFile(text: string, file: string): AuthFileResult {
  const users = new Map<string, string>();
  const warnings: ConfigWarning[] = [];
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  body.split(/\r?\n|\r/).forEach((raw, idx) => {
    const line = raw.trim();
    if (line === '' || line.startsWith(';') || line.startsWith('#')) return;
    const parsed = parseLine(line);
    if (typeof parsed === 'string') {
      warnings.push(issue(file, idx + 1, `malformed auth_file line skipped: ${parsed}`));
      return;
    }
    users.set(parsed[0], parsed[1]);
  });
  return { users, warnings };
}

/** Read and parse an auth file; throws if it cannot be read. */
export function readAuthFile(path: string): AuthFileResult {
  return parseAuthFile(readFileSync(path, 'utf8'), path);
}

/* auth_type = hba: rules in pg_hba.conf format (auth_hba_file). The first line matching the connection type, the
 * database, the user and the client's address decides the method; no matching line means the login is refused.
 *
 * Supported as in PgBouncer: types local, host, hostssl, hostnossl; databases and users as comma lists of names,
 * "quoted names", `all`, `sameuser` (database) and `@file` (names from a file next to the hba file); addresses as
 * CIDR, `address mask`, or `all`; methods trust, reject, md5, scram-sha-256, password, cert, peer. Lines pgtide
 * cannot honour exactly (`+group`, host names, samehost/samenet, hostgssenc) never match, with a warning. */

import net from 'node:net';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';

export type HbaMethod = 'trust' | 'reject' | 'md5' | 'scram-sha-256' | 'password' | 'cert' | 'peer';
const METHODS: ReadonlySet<string> = new Set(['trust', 'reject', 'md5', 'scram-sha-256', 'password', 'cert', 'peer']);

interface Rule {
  line: number;
  type: 'local' | 'host' | 'hostssl' | 'hostnossl' | 'never';
  /** null = all. */
  databases: Set<string> | null;
  sameuser: boolean;
  /** null = all. */
  users: Set<string> | null;
  /** null = all addresses (or local). */
  addr: net.BlockList | null;
  method: HbaMethod;
}

export interface HbaConnection {
  local: boolean;
  tls: boolean;
  database: string;
  user: string;
  /** Client IP address (TCP). */
  addr: string;
}

export class HbaError extends Error {}

export class HbaRules {
  private constructor(
    private readonly rules: Rule[],
    readonly warnings: string[],
  ) {}

  /** Read and check the file; throws HbaError naming file and line for a line that cannot be used. */
  static load(path: string): HbaRules {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new HbaError(`cannot read auth_hba_file "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    return HbaRules.parse(text, path);
  }

  static parse(text: string, path: string): HbaRules {
    const rules: Rule[] = [];
    const warnings: string[] = [];
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const where = `${path}:${i + 1}`;
      const tokens = tokenize(lines[i]!);
      if (tokens.length === 0) continue;
      const fail = (msg: string): never => {
        throw new HbaError(`${where}: ${msg}`);
      };
      const [typeTok, dbTok, userTok] = tokens;
      if (!dbTok || !userTok) fail('a line needs at least a type, a database, a user and a method');
      let type = typeTok!.text as Rule['type'];
      if (typeTok!.quoted || !['local', 'host', 'hostssl', 'hostnossl', 'hostgssenc', 'hostnogssenc'].includes(type)) fail(`invalid connection type "${typeTok!.text}"`);
      if ((type as string) === 'hostgssenc' || (type as string) === 'hostnogssenc') {
        warnings.push(`${where}: ${type} lines never match (pgtide has no GSSAPI encryption)`);
        type = 'never';
      }
      let rest = tokens.slice(3);
      let addr: net.BlockList | null = null;
      if (type !== 'local') {
        const a = rest.shift();
        if (!a) fail('missing address');
        const parsed = parseAddress(a!.text, rest[0]?.text);
        if (parsed.usedMask) rest = rest.slice(1);
        if (parsed.warning) {
          warnings.push(`${where}: ${parsed.warning}; the line never matches`);
          type = 'never';
        } else if (parsed.error) {
          fail(parsed.error);
        }
        addr = parsed.list;
      }
      const m = rest.shift();
      if (!m) fail('missing authentication method');
      if (!METHODS.has(m!.text)) fail(`authentication method "${m!.text}" is not supported by pgtide (use trust, reject, md5, scram-sha-256, password, cert or peer)`);
      if (m!.text === 'peer' && type !== 'local') fail('peer authentication is only for local connections');
      const dbs = names(dbTok!.text, dbTok!.quoted, path);
      const users = names(userTok!.text, userTok!.quoted, path);
      if ([...(users.list ?? [])].some((u) => u.startsWith('+'))) {
        warnings.push(`${where}: +group user names never match (pgtide does not look up role membership)`);
      }
      rules.push({
        line: i + 1,
        type,
        databases: dbs.all ? null : dbs.list,
        sameuser: dbs.sameuser,
        users: users.all ? null : users.list,
        addr,
        method: m!.text as HbaMethod,
      });
    }
    return new HbaRules(rules, warnings);
  }

  /** The method of the first matching line, with its line number; null when no line matches. */
  match(c: HbaConnection): { method: HbaMethod; line: number } | null {
    for (const r of this.rules) {
      if (r.type === 'never') continue;
      if (r.type === 'local' ? !c.local : c.local) continue;
      if (r.type === 'hostssl' && !c.tls) continue;
      if (r.type === 'hostnossl' && c.tls) continue;
      const dbOk = r.databases === null || r.databases.has(c.database) || (r.sameuser && c.database === c.user);
      if (!dbOk) continue;
      if (r.users !== null && !r.users.has(c.user)) continue;
      if (r.addr !== null && !r.addr.check(c.addr, net.isIPv6(c.addr) ? 'ipv6' : 'ipv4')) continue;
      return { method: r.method, line: r.line };
    }
    return null;
  }
}

interface Token {
  text: string;
  quoted: boolean;
}

/** Split a line into tokens: blanks separate, "double quotes" keep blanks and commas, # starts a comment. */
function tokenize(line: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < line.length) {
    const ch = line[i]!;
    if (ch === '#') break;
    if (ch === ' ' || ch === '\t' || ch === '\r') {
      i++;
      continue;
    }
    let text = '';
    let quoted = false;
    while (i < line.length && line[i] !== ' ' && line[i] !== '\t' && line[i] !== '\r' && line[i] !== '#') {
      if (line[i] === '"') {
        quoted = true;
        i++;
        while (i < line.length && line[i] !== '"') text += line[i++];
        i++;
      } else {
        text += line[i++];
      }
    }
    out.push({ text, quoted });
  }
  return out;
}

/** A database or user field: comma list of names, keywords (unless quoted) and @file includes. */
function names(field: string, quoted: boolean, hbaPath: string): { all: boolean; sameuser: boolean; list: Set<string> } {
  const list = new Set<string>();
  let all = false;
  let sameuser = false;
  for (const item of quoted ? [field] : field.split(',')) {
    if (!quoted && item === 'all') all = true;
    else if (!quoted && item === 'sameuser') sameuser = true;
    else if (!quoted && item.startsWith('@')) {
      const file = isAbsolute(item.slice(1)) ? item.slice(1) : join(dirname(hbaPath), item.slice(1));
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new HbaError(`${hbaPath}: cannot read included file "${file}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      for (const line of text.split('\n')) for (const t of tokenize(line)) for (const n of t.text.split(',')) if (n) list.add(n);
    } else if (item) list.add(item);
  }
  return { all, sameuser, list };
}

function parseAddress(a: string, next: string | undefined): { list: net.BlockList | null; usedMask?: boolean; error?: string; warning?: string } {
  if (a === 'all') return { list: null };
  if (a === 'samehost' || a === 'samenet') return { list: null, warning: `address ${a} is not supported by pgtide` };
  const list = new net.BlockList();
  const slash = a.indexOf('/');
  if (slash >= 0) {
    const ip = a.slice(0, slash);
    const bits = Number(a.slice(slash + 1));
    const type = net.isIPv6(ip) ? 'ipv6' : net.isIPv4(ip) ? 'ipv4' : null;
    if (!type || !Number.isInteger(bits) || bits < 0 || bits > (type === 'ipv4' ? 32 : 128)) return { list: null, error: `invalid CIDR address "${a}"` };
    list.addSubnet(ip, bits, type);
    return { list };
  }
  if (net.isIP(a) && next !== undefined && net.isIP(next)) {
    // address and mask in two fields
    const type = net.isIPv6(a) ? 'ipv6' : 'ipv4';
    const bits = maskBits(next);
    if (bits < 0) return { list: null, error: `invalid IP mask "${next}"` };
    list.addSubnet(a, bits, type);
    return { list, usedMask: true };
  }
  if (net.isIP(a)) return { list: null, error: `IP address "${a}" needs a /prefix or a mask` };
  return { list: null, warning: `host name "${a}" in an address field is not supported by pgtide` };
}

function maskBits(mask: string): number {
  let bits = 0;
  let seenZero = false;
  const bytes = net.isIPv4(mask) ? mask.split('.').map(Number) : null;
  if (!bytes) return -1;
  for (const byte of bytes) {
    for (let b = 7; b >= 0; b--) {
      if (byte & (1 << b)) {
        if (seenZero) return -1;
        bits++;
      } else seenZero = true;
    }
  }
  return bits;
}

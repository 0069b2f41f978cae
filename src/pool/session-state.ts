/* Session state in transaction and statement pooling.
 *
 * A statement that may leave state on its server connection (a SET, SQL PREPARE, an advisory lock, a temporary
 * table, a WITH HOLD cursor, LISTEN, LOAD, …) is spotted by a cheap look at its text: the leading keyword, and for
 * other statements a byte search for the two functions that matter. Spotting one only marks the transaction; what
 * is really left is asked from PostgreSQL once the transaction is over (STATE_CHECK_SQL), which also covers
 * rollbacks, SET LOCAL, RESET, unlocks and DISCARD. Settings named in track_set_parameters then follow the client
 * from server to server; anything else pins the client to its server until it is gone (session_state_policy). */

/** What a statement's text says about session state. */
export const enum Hazard {
  None = 0,
  /** May change tracked settings or release state (SET of a tracked name, RESET, DISCARD, UNLISTEN, …): check. */
  Check = 1,
  /** May create state that pins the client: check, or refuse under session_state_policy = refuse. */
  State = 2,
  /**
   * Leaves state nothing can release or ask about (LOAD: a loaded library stays in the backend): pins the client for
   * the rest of its session, or is refused.
   */
  Lasting = 3,
}

/**
 * Why a client is pinned or a statement refused, in categories few enough for metric labels (SHOW
 * SESSION_STATE_REASONS and the metrics name them with REASONS[reason]).
 */
export const enum Reason {
  Set = 0,
  AdvisoryLock = 1,
  HoldCursor = 2,
  SqlPrepare = 3,
  TempTable = 4,
  Listen = 5,
  Load = 6,
}

export const REASONS = ['set', 'advisory_lock', 'with_hold_cursor', 'sql_prepare', 'temp_table', 'listen', 'load'] as const;

export interface Classified {
  hazard: Hazard;
  /** What it is, for the log and the refusal ("SET statement_timeout", "advisory lock", …). */
  what: string;
  /** Its category (meaningful for Hazard.State). */
  reason: Reason;
}

const NONE: Classified = { hazard: Hazard.None, what: '', reason: Reason.Set };

/** Skip blanks and comments from pos; returns the position of the first significant byte. */
function skipBlank(buf: Buffer, pos: number, end: number): number {
  while (pos < end) {
    const c = buf[pos]!;
    if (c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d || c === 0x28 /* ( */ || c === 0x3b /* ; */) {
      pos++;
    } else if (c === 0x2d && buf[pos + 1] === 0x2d) {
      const nl = buf.indexOf(0x0a, pos);
      pos = nl < 0 || nl >= end ? end : nl + 1;
    } else if (c === 0x2f && buf[pos + 1] === 0x2a) {
      const close = buf.indexOf('*/', pos + 2, 'latin1');
      pos = close < 0 || close >= end ? end : close + 2;
    } else {
      break;
    }
  }
  return pos;
}

/** The identifier-ish word at pos, lower-cased ('' if none), and where it ends. */
function word(buf: Buffer, pos: number, end: number): [string, number] {
  let e = pos;
  while (e < end) {
    const c = buf[e]! | 0x20;
    if ((c >= 0x61 && c <= 0x7a) || (buf[e]! >= 0x30 && buf[e]! <= 0x39) || buf[e] === 0x5f || buf[e] === 0x2e) e++;
    else break;
  }
  return [buf.toString('latin1', pos, e).toLowerCase(), e];
}

/** Needles as bytes, made once (a string needle would be converted on every search). */
const needles = new Map<string, Buffer>();
function needle(s: string): Buffer {
  let b = needles.get(s);
  if (!b) {
    b = Buffer.from(s, 'latin1');
    needles.set(s, b);
  }
  return b;
}

/** Search for an ASCII needle in lower or upper case in buf[start..end). */
function contains(buf: Buffer, start: number, end: number, lower: string, upper: string): boolean {
  const a = buf.indexOf(needle(lower), start);
  if (a >= 0 && a < end) return true;
  const b = buf.indexOf(needle(upper), start);
  return b >= 0 && b < end;
}

/** Whether buf[pos..e) is the keyword kw (lower case), ignoring case; no string is made. */
function isWord(buf: Buffer, pos: number, e: number, kw: string): boolean {
  if (e - pos !== kw.length) return false;
  for (let i = 0; i < kw.length; i++) if ((buf[pos + i]! | 0x20) !== kw.charCodeAt(i)) return false;
  return true;
}

/** End of the identifier-ish word at pos. */
function wordEnd(buf: Buffer, pos: number, end: number): number {
  let e = pos;
  while (e < end) {
    const b = buf[e]!;
    const c = b | 0x20;
    if ((c >= 0x61 && c <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x5f || b === 0x2e) e++;
    else break;
  }
  return e;
}

/**
 * Classify the SQL text buf[start..end) (a Query's string, or a Parse's query). `tracked` holds the lower-case
 * names of track_set_parameters.
 */
export function classify(buf: Buffer, start: number, end: number, tracked: ReadonlySet<string>): Classified {
  const pos = skipBlank(buf, start, end);
  if (pos >= end) return NONE;
  const c = buf[pos]! | 0x20;
  // the common statements first: nothing to see unless they call the two functions that leave state
  if (c === 0x73 /* s */ || c === 0x77 /* w */ || c === 0x69 /* i */ || c === 0x75 /* u */ || c === 0x64 /* d */) {
    // no strings made on this path: it is every SELECT, INSERT, UPDATE, DELETE and WITH
    const e = wordEnd(buf, pos, end);
    if (isWord(buf, pos, e, 'set')) return classifySet(buf, e, end, tracked);
    if (isWord(buf, pos, e, 'unlisten')) return { hazard: Hazard.Check, what: 'UNLISTEN', reason: Reason.Listen };
    if (isWord(buf, pos, e, 'discard')) return { hazard: Hazard.Check, what: 'DISCARD', reason: Reason.Set };
    if (isWord(buf, pos, e, 'deallocate')) return { hazard: Hazard.Check, what: 'DEALLOCATE', reason: Reason.SqlPrepare };
    if (isWord(buf, pos, e, 'do')) return CODE_BLOCK;
    if (isWord(buf, pos, e, 'declare') && withHold(buf, e, end)) return { hazard: Hazard.State, what: 'DECLARE … WITH HOLD', reason: Reason.HoldCursor };
    return scanCalls(buf, e, end, c === 0x73 || c === 0x77);
  }
  const [w, e] = word(buf, pos, end);
  switch (w) {
    case 'reset':
      return { hazard: Hazard.Check, what: 'RESET', reason: Reason.Set };
    case 'prepare':
      return { hazard: Hazard.State, what: 'PREPARE', reason: Reason.SqlPrepare };
    case 'listen':
      return { hazard: Hazard.State, what: 'LISTEN', reason: Reason.Listen };
    case 'load':
      return { hazard: Hazard.Lasting, what: 'LOAD', reason: Reason.Load };
    case 'create': {
      const [w2, e2] = word(buf, skipBlank(buf, e, end), end);
      let temp = w2 === 'temp' || w2 === 'temporary';
      if (!temp && (w2 === 'local' || w2 === 'global')) {
        const [w3] = word(buf, skipBlank(buf, e2, end), end);
        temp = w3 === 'temp' || w3 === 'temporary';
      }
      if (temp && !contains(buf, e2, end, 'on commit drop', 'ON COMMIT DROP')) return { hazard: Hazard.State, what: 'CREATE TEMP', reason: Reason.TempTable };
      // CREATE TABLE pg_temp.t makes a temporary table without saying TEMP: asked about at the end
      if (contains(buf, e2, end, 'pg_temp', 'PG_TEMP')) return { hazard: Hazard.Check, what: 'CREATE … pg_temp', reason: Reason.TempTable };
      return NONE;
    }
    case 'call':
      return CODE_BLOCK;
    case 'close':
    case 'drop':
      return { hazard: Hazard.Check, what: w.toUpperCase(), reason: w === 'close' ? Reason.HoldCursor : Reason.TempTable };
    default:
      return scanCalls(buf, e, end);
  }
}

/**
 * DO and CALL run code that may leave any session state (EXECUTE 'SET …', a temporary table) where no look can
 * see it: PostgreSQL is asked at the end of the transaction.
 */
const CODE_BLOCK: Classified = { hazard: Hazard.Check, what: 'DO / CALL', reason: Reason.Set };

const SELECT_INTO_TEMP: Classified = { hazard: Hazard.State, what: 'SELECT … INTO TEMP', reason: Reason.TempTable };

/** The identifier-ish word that ends right before `pos` (blanks skipped): [start, end), or start = end if none. */
function wordBefore(buf: Buffer, pos: number, from: number): [number, number] {
  let e = pos;
  while (e > from && (buf[e - 1] === 0x20 || buf[e - 1] === 0x0a || buf[e - 1] === 0x09 || buf[e - 1] === 0x0d)) e--;
  let s = e;
  while (s > from && identByte(buf[s - 1])) s--;
  return [s, e];
}

/** `WITH HOLD` in a DECLARE (any case, any blanks between; not WITHOUT HOLD). DECLAREs are few: a plain loop. */
function withHold(buf: Buffer, from: number, end: number): boolean {
  for (let i = from; i + 4 <= end; i++) {
    if ((buf[i]! | 0x20) !== 0x68 || !hasAt(buf, i, end, 'hold') || identByte(buf[i - 1]) || identByte(buf[i + 4])) continue;
    const [ws, we] = wordBefore(buf, i, from);
    if (isWord(buf, ws, we, 'with')) return true;
  }
  return false;
}

/** Whether the word `temp` or `temporary` (any case) at t follows `INTO` (or `INTO LOCAL|GLOBAL`): SELECT INTO TEMP. */
function intoTempAt(buf: Buffer, t: number, from: number, end: number): boolean {
  if (!hasAt(buf, t, end, 'temp') || identByte(buf[t - 1])) return false;
  const after = t + 4 + (hasAt(buf, t + 4, end, 'orary') ? 5 : 0);
  if (after < end && identByte(buf[after])) return false;
  let [ws, we] = wordBefore(buf, t, from);
  if (isWord(buf, ws, we, 'local') || isWord(buf, ws, we, 'global')) [ws, we] = wordBefore(buf, ws, from);
  return isWord(buf, ws, we, 'into');
}

const ADVISORY_LOCK: Classified = { hazard: Hazard.State, what: 'advisory lock', reason: Reason.AdvisoryLock };
const ADVISORY_UNLOCK: Classified = { hazard: Hazard.Check, what: 'advisory unlock', reason: Reason.AdvisoryLock };
const SET_CONFIG: Classified = { hazard: Hazard.Check, what: 'set_config', reason: Reason.Set };

/** Whether buf[at..) starts with the lower-case ASCII `kw`, ignoring case. */
function hasAt(buf: Buffer, at: number, end: number, kw: string): boolean {
  if (at < 0 || at + kw.length > end) return false;
  for (let i = 0; i < kw.length; i++) if ((buf[at + i]! | 0x20) !== kw.charCodeAt(i)) return false;
  return true;
}

/**
 * The functions that leave or release session state from inside any statement: pg_[try_]advisory_lock*,
 * pg_advisory_unlock*, set_config; and with `selectInto` (a SELECT or WITH), `INTO TEMP`. One pass over the bytes,
 * stopping only at underscores (and at a `te` when selectInto).
 */
function scanCalls(buf: Buffer, from: number, end: number, selectInto = false): Classified {
  let found: Classified = NONE;
  for (let i = from; i < end; i++) {
    const b = buf[i]!;
    if (b !== 0x5f) {
      if (selectInto && (b | 0x20) === 0x74 && (buf[i + 1]! | 0x20) === 0x65 && intoTempAt(buf, i, from, end)) return SELECT_INTO_TEMP;
      continue;
    }
    if (hasAt(buf, i - 8, end, 'advisory')) {
      if (hasAt(buf, i + 1, end, 'lock')) return ADVISORY_LOCK;
      if (hasAt(buf, i + 1, end, 'unlock')) found = ADVISORY_UNLOCK;
    } else if (hasAt(buf, i - 3, end, 'set') && hasAt(buf, i + 1, end, 'config')) {
      found = SET_CONFIG;
    }
  }
  return found;
}

/**
 * A simple Query's text, which may hold several statements: each one after a `;` is looked at too (a `;` inside a
 * literal only adds a look at a piece that is not a statement, which at worst asks for a needless check).
 */
export function classifyQuery(buf: Buffer, start: number, end: number, tracked: ReadonlySet<string>): Classified {
  let best = classify(buf, start, end, tracked);
  let semi = buf.indexOf(0x3b, start);
  while (best.hazard !== Hazard.Lasting && semi >= 0 && semi < end) {
    const c = classify(buf, semi + 1, end, tracked);
    if (c.hazard > best.hazard) best = c;
    semi = buf.indexOf(0x3b, semi + 1);
  }
  return best;
}

/** SET …: LOCAL and transaction-level forms leave nothing; a tracked name is followed; anything else is state. */
function classifySet(buf: Buffer, pos: number, end: number, tracked: ReadonlySet<string>): Classified {
  let [name, e] = word(buf, skipBlank(buf, pos, end), end);
  if (name === 'local' || name === 'transaction' || name === 'constraints') return NONE;
  if (name === 'session') {
    [name, e] = word(buf, skipBlank(buf, e, end), end);
    if (name === 'characteristics') return { hazard: Hazard.State, what: 'SET SESSION CHARACTERISTICS', reason: Reason.Set };
    if (name === 'authorization') return { hazard: Hazard.State, what: 'SET SESSION AUTHORIZATION', reason: Reason.Set };
  }
  if (name === 'time') name = 'timezone'; // SET TIME ZONE
  if (tracked.has(name) || REPORTED.has(name)) return { hazard: Hazard.Check, what: `SET ${name}`, reason: Reason.Set };
  return { hazard: Hazard.State, what: `SET ${name || '…'}`, reason: Reason.Set };
}

/** Whether the byte before `at` may end an identifier (then `at` does not start a word). */
function identByte(b: number | undefined): boolean {
  if (b === undefined) return false;
  const c = b | 0x20;
  return (c >= 0x61 && c <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x5f || b >= 0x80;
}

/**
 * Whether buf[start..end) calls currval() or lastval() (any case, blanks allowed before the parenthesis): they read
 * the sequence values of the session, which in transaction pooling may be another client's. Looks only at each `(`
 * (memchr), so text without parentheses costs one search.
 */
export function readsSequenceState(buf: Buffer, start: number, end: number): boolean {
  let p = buf.indexOf(0x28, start);
  while (p >= 0 && p < end) {
    const [ws, we] = wordBefore(buf, p, start);
    if (isWord(buf, ws, we, 'currval') || isWord(buf, ws, we, 'lastval')) return true;
    p = buf.indexOf(0x28, p + 1);
  }
  return false;
}

/**
 * Whether buf[start..end) is nothing but a transaction's start (BEGIN or START TRANSACTION, with their options): the
 * transaction has read and written no sequence yet, so its next statement may still be given a server that forgot
 * other clients' sequence values (ClientConn's look after BEGIN).
 */
export function startsTransactionOnly(buf: Buffer, start: number, end: number): boolean {
  const pos = skipBlank(buf, start, end);
  const e = wordEnd(buf, pos, end);
  if (!isWord(buf, pos, e, 'begin') && !isWord(buf, pos, e, 'start')) return false;
  const semi = buf.indexOf(0x3b, e);
  return semi < 0 || semi >= end || skipBlank(buf, semi, end) >= end;
}

/** Settings PostgreSQL reports with ParameterStatus: followed by the varcache already. */
export const REPORTED: ReadonlySet<string> = new Set([
  'client_encoding', 'datestyle', 'timezone', 'standard_conforming_strings', 'application_name', 'intervalstyle',
  'is_superuser', 'server_encoding', 'server_version', 'integer_datetimes', 'in_hot_standby', 'default_transaction_read_only',
  'scram_iterations',
]);

/**
 * Asked at the end of a transaction that showed a hazard (and after every transaction of a pinned client): the
 * session-level settings, then counts of what else a session can hold. Rows are (name, value).
 */
export const STATE_CHECK_SQL =
  "select name, setting from pg_settings where source = 'session'" +
  " union all select '#advisory locks', count(*)::text from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()" +
  " union all select '#WITH HOLD cursors', count(*)::text from pg_cursors where is_holdable" +
  " union all select '#prepared statements (SQL PREPARE)', count(*)::text from pg_prepared_statements where from_sql" +
  " union all select '#temporary tables', count(*)::text from pg_class where relnamespace = pg_my_temp_schema()" +
  " union all select '#temporary functions', count(*)::text from pg_proc where pronamespace = pg_my_temp_schema()" +
  " union all select '#LISTEN', count(*)::text from pg_listening_channels()";

export interface StateCheck {
  /** Tracked settings and their values (what the client's session has). */
  tracked: Map<string, string>;
  /** Why the client must stay on this server, or null. */
  pin: string | null;
  /** The same as a set of Reason bits (1 << Reason). */
  reasons: number;
}

/** STATE_CHECK_SQL's count rows and their categories. */
const COUNT_REASONS: ReadonlyMap<string, Reason> = new Map([
  ['#advisory locks', Reason.AdvisoryLock],
  ['#WITH HOLD cursors', Reason.HoldCursor],
  ['#prepared statements (SQL PREPARE)', Reason.SqlPrepare],
  ['#temporary tables', Reason.TempTable],
  ['#temporary functions', Reason.TempTable],
  ['#LISTEN', Reason.Listen],
]);

/** Read STATE_CHECK_SQL's rows. `varcache` holds the lower-case names the varcache follows. */
export function readStateCheck(rows: (string | null)[][], tracked: ReadonlySet<string>, varcache: ReadonlySet<string>): StateCheck {
  const out = new Map<string, string>();
  const reasons: string[] = [];
  let bits = 0;
  for (const [name, value] of rows) {
    if (name === null) continue;
    if (name.startsWith('#')) {
      if (value !== null && value !== '0') {
        reasons.push(`${name.slice(1)}: ${value}`);
        bits |= 1 << (COUNT_REASONS.get(name) ?? Reason.Set);
      }
    } else if (tracked.has(name.toLowerCase())) {
      out.set(name, value ?? '');
    } else if (!varcache.has(name.toLowerCase()) && !REPORTED.has(name.toLowerCase())) {
      reasons.push(`SET ${name}`);
      bits |= 1 << Reason.Set;
    }
  }
  return { tracked: out, pin: reasons.length > 0 ? reasons.join(', ') : null, reasons: bits };
}

/** The statements that make a server's tracked settings equal to the client's. */
export function applySql(client: ReadonlyMap<string, string>, server: ReadonlyMap<string, string>): string {
  let sql = '';
  for (const [name, value] of client) {
    if (server.get(name) !== value) sql += `select pg_catalog.set_config(${lit(name)}, ${lit(value)}, false);`;
  }
  for (const name of server.keys()) if (!client.has(name)) sql += `RESET ${ident(name)};`;
  return sql;
}

function lit(v: string): string {
  return "'" + v.replace(/'/g, "''") + "'";
}

function ident(v: string): string {
  return '"' + v.replace(/"/g, '""') + '"';
}

/* SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it: secrets, SASLprep, server-side and client-side exchanges. */

import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { randomFromPool } from '../util/random.js';

/*
 * Notes on PostgreSQL's dialect of SCRAM (see auth-scram.c / fe-auth-scram.c):
 *  - The user name inside the SCRAM exchange is ignored; the startup packet's user is authoritative.
 *    libpq sends an empty name ("n=").
 *  - Only SCRAM-SHA-256 without channel binding is implemented here (no SCRAM-SHA-256-PLUS):
 *    gs2 flag "n" and "y" are accepted, "p=<cb-name>" is refused.
 *  - Passwords are SASLprep'ed, but if that fails (not UTF-8, prohibited characters, empty after
 *    mapping) the raw bytes are used instead of refusing the password.
 */

/** Stored SCRAM verifier, the content of pg_authid.rolpassword for SCRAM roles. */
export interface ScramSecret {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** Any malformed, out-of-order or otherwise unacceptable SCRAM input. */
export class ScramError extends Error {
  override name = 'ScramError';
}

export const SCRAM_MECHANISM = 'SCRAM-SHA-256';
export const SCRAM_KEY_LEN = 32;
export const SCRAM_DEFAULT_ITERATIONS = 4096;
export const SCRAM_DEFAULT_SALT_LEN = 16;
/** Raw bytes of randomness in a nonce (PostgreSQL uses 18 as well). */
export const SCRAM_RAW_NONCE_LEN = 18;
/** Upper bound for an iteration count a server may make us compute (a hostile server could ask for 2^31). */
export const SCRAM_MAX_ITERATIONS = 10_000_000;
/** Upper bound for a single SCRAM message; real ones are < 200 bytes. */
export const SCRAM_MAX_MESSAGE_LEN = 16384;

const INT32_MAX = 0x7fffffff;

// ---------------------------------------------------------------------------
// Small helpers

function hmac(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Constant-time equality; unequal lengths compare false (the length itself is not secret here). */
function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const B64_BODY = /^[A-Za-z0-9+/]*$/;

function isStrictBase64(s: string): boolean {
  if (s.length === 0 || s.length % 4 !== 0) return false;
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  return B64_BODY.test(s.slice(0, s.length - pad));
}

/** Strict base64 decode (Buffer.from(..., 'base64') silently skips garbage). */
function decodeBase64(s: string, what: string): Buffer {
  if (!isStrictBase64(s)) throw new ScramError(`malformed SCRAM message: invalid base64 in ${what}`);
  return Buffer.from(s, 'base64');
}

/** RFC 5802 "printable": %x21-2B / %x2D-7E (ASCII graphic characters except ','). */
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;

const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const LONE_SURROGATE = /\p{Cs}/u;

/** Turn a SCRAM message into text, rejecting oversize, non-UTF-8 and NUL-containing input. */
function messageText(msg: Buffer | string, what: string): string {
  let text: string;
  if (typeof msg === 'string') {
    if (msg.length > SCRAM_MAX_MESSAGE_LEN) throw new ScramError(`malformed SCRAM message: ${what} too long`);
    if (LONE_SURROGATE.test(msg)) throw new ScramError(`malformed SCRAM message: ${what} is not valid UTF-8`);
    text = msg;
  } else if (msg instanceof Uint8Array) {
    if (msg.length > SCRAM_MAX_MESSAGE_LEN) throw new ScramError(`malformed SCRAM message: ${what} too long`);
    try {
      text = utf8Strict.decode(msg);
    } catch {
      throw new ScramError(`malformed SCRAM message: ${what} is not valid UTF-8`);
    }
  } else {
    throw new ScramError(`malformed SCRAM message: ${what} is not a string or buffer`);
  }
  if (text.length === 0) throw new ScramError(`malformed SCRAM message: empty ${what}`);
  if (text.includes('\0')) throw new ScramError(`malformed SCRAM message: NUL byte in ${what}`);
  return text;
}

interface Attr {
  name: string;
  value: string;
}

const ATTR_NAME = /^[A-Za-z]$/;

/**
 * Split "a=x,b=y,..." into attributes. Values never contain ',' in SCRAM (names escape it as =2C),
 * so a plain split is exact and its work is bounded by the message length.
 */
function parseAttributes(s: string, what: string): Attr[] {
  const parts = s.split(',');
  const attrs: Attr[] = [];
  for (const part of parts) {
    if (part.length < 2 || part[1] !== '=' || !ATTR_NAME.test(part[0]!)) {
      throw new ScramError(`malformed SCRAM message: expected attribute in ${what}, got "${truncate(part)}"`);
    }
    attrs.push({ name: part[0]!, value: part.slice(2) });
  }
  return attrs;
}

function expectAttr(attrs: Attr[], index: number, name: string, what: string): string {
  const a = attrs[index];
  if (!a) throw new ScramError(`malformed SCRAM message: ${what} lacks attribute "${name}"`);
  if (a.name !== name) {
    throw new ScramError(`malformed SCRAM message: expected attribute "${name}" in ${what}, got "${a.name}"`);
  }
  return a.value;
}

function truncate(s: string, max = 32): string {
  const shown = s.length > max ? `${s.slice(0, max)}...` : s;
  return shown.replace(/[^\x20-\x7e]/g, '?');
}

/** Escape a name for "n=" per RFC 5802 (',' -> =2C, '=' -> =3D). */
function escapeSaslName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

function checkIterations(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > INT32_MAX) {
    throw new ScramError(`invalid SCRAM iteration count in ${what}: ${n}`);
  }
}

/** A fresh nonce: 18 random bytes in base64 (24 printable characters, never ','). */
export function generateScramNonce(): string {
  return randomFromPool(SCRAM_RAW_NONCE_LEN).toString('base64');
}

// ---------------------------------------------------------------------------
// SASLprep (RFC 4013), the way PostgreSQL's src/common/saslprep.c applies it.
//
// Covered: the pure-ASCII shortcut (ASCII passwords are used unchanged, control characters
// included), UTF-8 validation, the mapping step (non-ASCII spaces -> U+0020, RFC 3454 table B.1
// removed), "empty after mapping" -> raw, NFKC normalization (String.prototype.normalize, i.e. the
// engine's Unicode version), the prohibited-output tables C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6,
// C.7, C.8, C.9, and unassigned code points approximated by \p{Cn} of the engine's Unicode version
// (a subset of RFC 3454 table A.1, which is Unicode 3.2).
// Like PostgreSQL, the prohibited/bidi checks are run on the mapped (pre-normalization) string.
// Approximate: the bidirectional rule (RFC 3454 section 6). JavaScript regexes cannot query the
// Bidi_Class property, so RandALCat is approximated as letters of the Hebrew, Arabic, Syriac, Thaana
// and N'Ko scripts and LCat as any other letter. Passwords mixing right-to-left text with unusual
// characters may therefore be hashed differently from PostgreSQL; storing a SCRAM secret in the
// auth_file instead of the plain text avoids the question entirely.
// Whenever SASLprep fails, the raw UTF-8 bytes are used, exactly as PostgreSQL does.

type Range = readonly [number, number];

/** RFC 3454 C.1.2: non-ASCII space characters (mapped to U+0020). */
const NON_ASCII_SPACE: readonly Range[] = [
  [0x00a0, 0x00a0], [0x1680, 0x1680], [0x2000, 0x200b], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000],
];

/** RFC 3454 B.1: commonly mapped to nothing. */
const MAPPED_TO_NOTHING: readonly Range[] = [
  [0x00ad, 0x00ad], [0x034f, 0x034f], [0x1806, 0x1806], [0x180b, 0x180d], [0x200b, 0x200d], [0x2060, 0x2060],
  [0xfe00, 0xfe0f], [0xfeff, 0xfeff],
];

/** RFC 4013 section 2.3 prohibited output: C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9. */
const PROHIBITED: readonly Range[] = (() => {
  const r: Range[] = [
    ...NON_ASCII_SPACE, // C.1.2
    [0x0000, 0x001f], [0x007f, 0x007f], // C.2.1
    [0x0080, 0x009f], [0x06dd, 0x06dd], [0x070f, 0x070f], [0x180e, 0x180e], [0x200c, 0x200d], // C.2.2
    [0x2028, 0x2029], [0x2060, 0x2063], [0x206a, 0x206f], [0xfeff, 0xfeff], [0xfff9, 0xfffc],
    [0x1d173, 0x1d17a],
    [0xe000, 0xf8ff], [0xf0000, 0xffffd], [0x100000, 0x10fffd], // C.3
    [0xfdd0, 0xfdef], // C.4 (plus the two last code points of every plane, below)
    [0xd800, 0xdfff], // C.5
    [0xfff9, 0xfffd], // C.6
    [0x2ff0, 0x2ffb], // C.7
    [0x0340, 0x0341], [0x200e, 0x200f], [0x202a, 0x202e], // C.8 (206A-206F already listed)
    [0xe0001, 0xe0001], [0xe0020, 0xe007f], // C.9
  ];
  for (let plane = 0; plane <= 0x10; plane++) r.push([plane * 0x10000 + 0xfffe, plane * 0x10000 + 0xffff]);
  return r;
})();

function inRanges(cp: number, ranges: readonly Range[]): boolean {
  for (const [lo, hi] of ranges) if (cp >= lo && cp <= hi) return true;
  return false;
}

const UNASSIGNED = /^\p{Cn}$/u;
const RAND_AL = /^(?=\p{L})[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}]$/u;
const ANY_LETTER = /^\p{L}$/u;
const ASCII_ONLY = /^[\x00-\x7f]*$/;

/**
 * SASLprep a password the way PostgreSQL does; returns the bytes to feed PBKDF2.
 * Never throws: when the password is not valid UTF-8 or SASLprep rejects it, the raw bytes are returned.
 */
export function saslprep(password: string | Buffer): Buffer {
  let text: string;
  let raw: Buffer;
  if (typeof password === 'string') {
    raw = Buffer.from(password, 'utf8');
    // A lone surrogate has no UTF-8 form; the (lossy) UTF-8 encoding is the only "raw" form there is.
    if (LONE_SURROGATE.test(password)) return raw;
    text = password;
  } else {
    raw = Buffer.from(password);
    try {
      text = utf8Strict.decode(password);
    } catch {
      return raw; // not UTF-8: use as is
    }
  }
  if (ASCII_ONLY.test(text)) return raw;

  // 1) Map.
  const mapped: number[] = [];
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (inRanges(cp, NON_ASCII_SPACE)) mapped.push(0x20);
    else if (inRanges(cp, MAPPED_TO_NOTHING)) continue;
    else mapped.push(cp);
  }
  if (mapped.length === 0) return raw; // PostgreSQL refuses an empty result and falls back

  // 3) Prohibit (PostgreSQL checks the mapped, not-yet-normalized characters).
  let hasRandAL = false;
  let hasL = false;
  for (const cp of mapped) {
    if (inRanges(cp, PROHIBITED)) return raw;
    const ch = String.fromCodePoint(cp);
    if (UNASSIGNED.test(ch)) return raw;
    if (RAND_AL.test(ch)) hasRandAL = true;
    else if (ANY_LETTER.test(ch)) hasL = true;
  }

  // 4) Bidi (approximate, see above).
  if (hasRandAL) {
    if (hasL) return raw;
    const first = String.fromCodePoint(mapped[0]!);
    const last = String.fromCodePoint(mapped[mapped.length - 1]!);
    if (!RAND_AL.test(first) || !RAND_AL.test(last)) return raw;
  }

  // 2) Normalize.
  return Buffer.from(String.fromCodePoint(...mapped).normalize('NFKC'), 'utf8');
}

// ---------------------------------------------------------------------------
// Secrets

/** Parse "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>"; null if it is not a valid SCRAM secret. */
export function parseScramSecret(s: string): ScramSecret | null {
  if (typeof s !== 'string' || s.length > 1024) return null;
  const m = /^SCRAM-SHA-256\$([0-9]{1,10}):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(s);
  if (!m) return null;
  const iterations = Number(m[1]);
  if (iterations < 1 || iterations > INT32_MAX) return null;
  if (!isStrictBase64(m[2]!) || !isStrictBase64(m[3]!) || !isStrictBase64(m[4]!)) return null;
  const salt = Buffer.from(m[2]!, 'base64');
  const storedKey = Buffer.from(m[3]!, 'base64');
  const serverKey = Buffer.from(m[4]!, 'base64');
  if (salt.length === 0 || storedKey.length !== SCRAM_KEY_LEN || serverKey.length !== SCRAM_KEY_LEN) return null;
  return { iterations, salt, storedKey, serverKey };
}

/** Format a secret the way PostgreSQL stores it in pg_authid.rolpassword. */
export function formatScramSecret(s: ScramSecret): string {
  return (
    `${SCRAM_MECHANISM}$${s.iterations}:${s.salt.toString('base64')}` +
    `$${s.storedKey.toString('base64')}:${s.serverKey.toString('base64')}`
  );
}

/** True if s looks like a SCRAM secret (cheap prefix test; use parseScramSecret to validate). */
export function isScramSecret(s: string): boolean {
  return typeof s === 'string' && s.startsWith(`${SCRAM_MECHANISM}$`);
}

/** SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations), on the libuv thread pool. */
export function saltedPassword(password: string | Buffer, salt: Buffer, iterations: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    checkIterations(iterations, 'saltedPassword'); // a throw here rejects the promise
    pbkdf2(saslprep(password), salt, iterations, SCRAM_KEY_LEN, 'sha256', (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function keysFromSalted(salted: Buffer): { clientKey: Buffer; serverKey: Buffer } {
  return { clientKey: hmac(salted, 'Client Key'), serverKey: hmac(salted, 'Server Key') };
}

/** Build a SCRAM secret from a password (random 16-byte salt unless given). */
export async function scramSecretFromPassword(
  password: string | Buffer,
  salt: Buffer = randomBytes(SCRAM_DEFAULT_SALT_LEN),
  iterations: number = SCRAM_DEFAULT_ITERATIONS,
): Promise<ScramSecret> {
  if (salt.length === 0) throw new ScramError('SCRAM salt must not be empty');
  const { clientKey, serverKey } = keysFromSalted(await saltedPassword(password, salt, iterations));
  return { iterations, salt: Buffer.from(salt), storedKey: sha256(clientKey), serverKey };
}

/** Default maximum number of (user, password) pairs remembered by cachedSecretFromPassword. */
export const SCRAM_SECRET_CACHE_MAX = 10_000;
let secretCacheMax = SCRAM_SECRET_CACHE_MAX;

const cacheKeyKey = randomBytes(32);
const secretCache = new Map<string, Promise<ScramSecret>>();

/**
 * The SCRAM secret for a plain-text password, computed once per (user, password) for the life of the
 * process (random salt, default iterations), so verifying plain-text auth_file passwords with SCRAM
 * does not run PBKDF2 on every login. Concurrent callers share one computation. Least recently used
 * entries are dropped beyond SCRAM_SECRET_CACHE_MAX (see setScramSecretCacheMax). Keys are an HMAC under a per-process random key,
 * so the map does not hold passwords.
 */
export function cachedSecretFromPassword(user: string, password: string): Promise<ScramSecret> {
  const key = createHmac('sha256', cacheKeyKey)
    .update(`${Buffer.byteLength(user)}:${user}`)
    .update(password)
    .digest('base64');
  const hit = secretCache.get(key);
  if (hit) {
    secretCache.delete(key); // move to the most-recently-used end
    secretCache.set(key, hit);
    return hit;
  }
  const p = scramSecretFromPassword(password);
  secretCache.set(key, p);
  while (secretCache.size > secretCacheMax) {
    const oldest = secretCache.keys().next().value as string;
    secretCache.delete(oldest);
  }
  p.catch(() => {
    if (secretCache.get(key) === p) secretCache.delete(key);
  });
  return p;
}

/** Forget every cached secret (e.g. on auth_file reload). */
export function clearScramSecretCache(): void {
  secretCache.clear();
}

/** Number of cached secrets. */
export function scramSecretCacheSize(): number {
  return secretCache.size;
}

/** Change the cache bound (mainly for tests); evicts the oldest entries beyond it. */
export function setScramSecretCacheMax(max: number): void {
  if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('cache size must be a positive integer');
  secretCacheMax = max;
  while (secretCache.size > secretCacheMax) secretCache.delete(secretCache.keys().next().value as string);
}

const mockAuthNonce = randomBytes(32);
const doomedSecrets = new WeakSet<ScramSecret>();

/**
 * A fake but plausible secret for a user that does not exist (or has no usable password), so that the
 * exchange looks the same as for a real user: the salt is derived deterministically from the user name
 * and a per-process random nonce (PostgreSQL derives it from the user name and the cluster's
 * mock_auth_nonce), so repeated attempts see the same salt. A ScramServerExchange built from it always
 * fails, after doing the same work as a real verification.
 */
export function dummyScramSecret(user: string, iterations: number = SCRAM_DEFAULT_ITERATIONS): ScramSecret {
  const salt = createHash('sha256').update(user).update(mockAuthNonce).digest().subarray(0, SCRAM_DEFAULT_SALT_LEN);
  const secret: ScramSecret = {
    iterations,
    salt: Buffer.from(salt),
    storedKey: hmac(mockAuthNonce, `stored-key\0${user}`),
    serverKey: hmac(mockAuthNonce, `server-key\0${user}`),
  };
  doomedSecrets.add(secret);
  return secret;
}

/** Whether the secret came from dummyScramSecret. */
export function isDummyScramSecret(s: ScramSecret): boolean {
  return doomedSecrets.has(s);
}

function validateSecret(s: ScramSecret): void {
  if (!s || !Buffer.isBuffer(s.salt) || s.salt.length === 0) throw new ScramError('invalid SCRAM secret: salt');
  checkIterations(s.iterations, 'SCRAM secret');
  if (!Buffer.isBuffer(s.storedKey) || s.storedKey.length !== SCRAM_KEY_LEN) {
    throw new ScramError('invalid SCRAM secret: StoredKey');
  }
  if (!Buffer.isBuffer(s.serverKey) || s.serverKey.length !== SCRAM_KEY_LEN) {
    throw new ScramError('invalid SCRAM secret: ServerKey');
  }
}

// ---------------------------------------------------------------------------
// Server side: the pooler verifies a client.

export type ScramServerResult =
  | { ok: true; serverFinal: string; clientKey: Buffer }
  | { ok: false; reason: string };

/**
 * One server-side SCRAM-SHA-256 exchange (mechanism "SCRAM-SHA-256", no channel binding).
 * Call clientFirst() with the SASLInitialResponse data, send the returned server-first-message in
 * AuthenticationSASLContinue, then call clientFinal() with the SASLResponse data. On ok, send
 * serverFinal in AuthenticationSASLFinal; clientKey allows logging in to PostgreSQL with the same secret.
 * Malformed or out-of-order input throws ScramError; a well-formed but wrong answer gives ok:false
 * (the reason is for the server log only, never for the client).
 */
export class ScramServerExchange {
  private readonly secret: ScramSecret;
  private readonly serverNonce: string;
  private readonly doomed: boolean;
  private state: 'init' | 'first' | 'done' | 'failed' = 'init';
  private gs2Header = '';
  private clientFirstBare = '';
  private clientNonce = '';
  private serverFirst = '';

  constructor(secret: ScramSecret, opts: { serverNonce?: string } = {}) {
    validateSecret(secret);
    this.secret = secret;
    this.doomed = doomedSecrets.has(secret);
    const nonce = opts.serverNonce ?? generateScramNonce();
    if (!PRINTABLE.test(nonce)) throw new ScramError('server nonce must be non-empty printable ASCII without ","');
    this.serverNonce = nonce;
  }

  /** Handle client-first-message; returns server-first-message. */
  clientFirst(msg: Buffer | string): string {
    if (this.state !== 'init') throw new ScramError('SCRAM client-first-message received out of order');
    this.state = 'failed';
    const text = messageText(msg, 'client-first-message');

    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    const flag = text[0];
    if (flag === 'p') {
      throw new ScramError(
        'channel binding is not supported: the client requested it (gs2 flag "p"), but only SCRAM-SHA-256 without channel binding is offered',
      );
    }
    if ((flag !== 'n' && flag !== 'y') || text[1] !== ',') {
      throw new ScramError('malformed SCRAM message: unexpected channel-binding flag in client-first-message');
    }
    if (text.startsWith('a=', 2)) {
      throw new ScramError('SCRAM authorization identity (a=) is not supported');
    }
    if (text[2] !== ',') throw new ScramError('malformed SCRAM message: bad gs2 header in client-first-message');
    this.gs2Header = text.slice(0, 3);
    const bare = text.slice(3);

    const attrs = parseAttributes(bare, 'client-first-message');
    if (attrs[0]?.name === 'm') throw new ScramError('client requires an unsupported SCRAM extension (m=)');
    expectAttr(attrs, 0, 'n', 'client-first-message'); // user name: ignored, the startup user counts
    const nonce = expectAttr(attrs, 1, 'r', 'client-first-message');
    if (!PRINTABLE.test(nonce)) throw new ScramError('malformed SCRAM message: invalid client nonce');
    // Further attributes are optional extensions; ignored.

    this.clientFirstBare = bare;
    this.clientNonce = nonce;
    this.serverFirst = `r=${nonce}${this.serverNonce},s=${this.secret.salt.toString('base64')},i=${this.secret.iterations}`;
    this.state = 'first';
    return this.serverFirst;
  }

  /** Handle client-final-message; verifies channel-binding echo, nonce and proof. */
  clientFinal(msg: Buffer | string): ScramServerResult {
    if (this.state !== 'first') throw new ScramError('SCRAM client-final-message received out of order');
    this.state = 'failed';
    const text = messageText(msg, 'client-final-message');

    // client-final-message = channel-binding "," nonce ["," extensions] "," proof
    const attrs = parseAttributes(text, 'client-final-message');
    const cbind = expectAttr(attrs, 0, 'c', 'client-final-message');
    const nonce = expectAttr(attrs, 1, 'r', 'client-final-message');
    if (attrs.length < 3) throw new ScramError('malformed SCRAM message: client-final-message lacks proof');
    const proofB64 = expectAttr(attrs, attrs.length - 1, 'p', 'client-final-message');
    for (let i = 2; i < attrs.length - 1; i++) {
      if (attrs[i]!.name === 'p') throw new ScramError('malformed SCRAM message: proof is not the last attribute');
    }
    const cbindData = decodeBase64(cbind, 'channel binding');
    const proof = decodeBase64(proofB64, 'proof');
    if (proof.length !== SCRAM_KEY_LEN) throw new ScramError('malformed SCRAM message: invalid proof length');

    const withoutProof = text.slice(0, text.length - proofB64.length - 3);
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;

    // Do all the work before deciding, so that every failure costs about the same.
    const clientSignature = hmac(this.secret.storedKey, authMessage);
    const clientKey = xor(proof, clientSignature);
    const proofOk = timingSafeEqual(sha256(clientKey), this.secret.storedKey);
    const serverSignature = hmac(this.secret.serverKey, authMessage);
    const cbindOk = safeEqual(cbindData, Buffer.from(this.gs2Header, 'latin1'));
    const nonceOk = nonce === this.clientNonce + this.serverNonce;

    if (!cbindOk) return { ok: false, reason: 'SCRAM channel binding check failed' };
    if (!nonceOk) return { ok: false, reason: 'SCRAM nonce mismatch' };
    if (this.doomed) return { ok: false, reason: 'no valid SCRAM secret for user' };
    if (!proofOk) return { ok: false, reason: 'SCRAM proof mismatch (wrong password)' };

    this.state = 'done';
    return { ok: true, serverFinal: `v=${serverSignature.toString('base64')}`, clientKey };
  }
}

// ---------------------------------------------------------------------------
// Client side: the pooler logs in to PostgreSQL.

export type ScramClientCredentials =
  | { password: string | Buffer }
  /** SCRAM passthrough: keys obtained from a client's successful exchange (or derived from a secret). */
  | { clientKey: Buffer; serverKey: Buffer };

export interface ScramClientOptions {
  /** For tests; default is a fresh random nonce. */
  clientNonce?: string;
  /** Name to put in "n="; PostgreSQL ignores it and libpq sends "" (the default). */
  user?: string;
  /** Refuse server-first-messages asking for more PBKDF2 iterations than this. */
  maxIterations?: number;
}

/**
 * One client-side SCRAM-SHA-256 exchange (gs2 flag "n", no channel binding).
 * clientFirst() -> SASLInitialResponse data; serverFirst(AuthenticationSASLContinue data) -> SASLResponse
 * data; serverFinal(AuthenticationSASLFinal data) verifies the server. Every problem throws ScramError
 * (serverFirst rejects its promise).
 */
export class ScramClientExchange {
  private readonly cred: ScramClientCredentials;
  private readonly clientNonce: string;
  private readonly user: string;
  private readonly maxIterations: number;
  private state: 'init' | 'first' | 'computing' | 'final' | 'done' | 'failed' = 'init';
  private clientFirstBare = '';
  private expectedServerSignature: Buffer | null = null;

  constructor(cred: ScramClientCredentials, opts: ScramClientOptions = {}) {
    if ('clientKey' in cred) {
      if (!Buffer.isBuffer(cred.clientKey) || cred.clientKey.length !== SCRAM_KEY_LEN) {
        throw new ScramError('SCRAM passthrough ClientKey must be 32 bytes');
      }
      if (!Buffer.isBuffer(cred.serverKey) || cred.serverKey.length !== SCRAM_KEY_LEN) {
        throw new ScramError('SCRAM passthrough ServerKey must be 32 bytes');
      }
    } else if (typeof cred.password !== 'string' && !Buffer.isBuffer(cred.password)) {
      throw new ScramError('SCRAM password must be a string or buffer');
    }
    this.cred = cred;
    const nonce = opts.clientNonce ?? generateScramNonce();
    if (!PRINTABLE.test(nonce)) throw new ScramError('client nonce must be non-empty printable ASCII without ","');
    this.clientNonce = nonce;
    this.user = opts.user ?? '';
    this.maxIterations = opts.maxIterations ?? SCRAM_MAX_ITERATIONS;
  }

  /** The client-first-message: "n,,n=,r=<nonce>" like libpq. */
  clientFirst(): string {
    if (this.state !== 'init') throw new ScramError('SCRAM client-first-message already sent');
    this.clientFirstBare = `n=${escapeSaslName(this.user)},r=${this.clientNonce}`;
    this.state = 'first';
    return `n,,${this.clientFirstBare}`;
  }

  /** Handle server-first-message; resolves to the client-final-message. */
  async serverFirst(msg: Buffer | string): Promise<string> {
    if (this.state !== 'first') throw new ScramError('SCRAM server-first-message received out of order');
    this.state = 'failed';
    const text = messageText(msg, 'server-first-message');

    const attrs = parseAttributes(text, 'server-first-message');
    if (attrs[0]?.name === 'm') throw new ScramError('server requires an unsupported SCRAM extension (m=)');
    const nonce = expectAttr(attrs, 0, 'r', 'server-first-message');
    const saltB64 = expectAttr(attrs, 1, 's', 'server-first-message');
    const iterStr = expectAttr(attrs, 2, 'i', 'server-first-message');
    if (!PRINTABLE.test(nonce)) throw new ScramError('malformed SCRAM message: invalid server nonce');
    if (!nonce.startsWith(this.clientNonce) || nonce.length <= this.clientNonce.length) {
      throw new ScramError('invalid SCRAM response: server nonce does not extend the client nonce');
    }
    const salt = decodeBase64(saltB64, 'salt');
    if (!/^[1-9][0-9]{0,9}$/.test(iterStr)) {
      throw new ScramError(`malformed SCRAM message: invalid iteration count "${truncate(iterStr)}"`);
    }
    const iterations = Number(iterStr);
    if (iterations > INT32_MAX || iterations > this.maxIterations) {
      throw new ScramError(`SCRAM iteration count ${iterations} exceeds the limit of ${this.maxIterations}`);
    }

    this.state = 'computing';
    let clientKey: Buffer;
    let serverKey: Buffer;
    if ('clientKey' in this.cred) {
      ({ clientKey, serverKey } = this.cred);
    } else {
      try {
        ({ clientKey, serverKey } = keysFromSalted(await saltedPassword(this.cred.password, salt, iterations)));
      } catch (err) {
        this.state = 'failed';
        throw err instanceof ScramError ? err : new ScramError(`SCRAM key derivation failed: ${String(err)}`);
      }
    }

    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${text},${withoutProof}`;
    const proof = xor(clientKey, hmac(sha256(clientKey), authMessage));
    this.expectedServerSignature = hmac(serverKey, authMessage);
    this.state = 'final';
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Handle server-final-message: verify the server signature; throws ScramError on "e=" or mismatch. */
  serverFinal(msg: Buffer | string): void {
    if (this.state !== 'final' || !this.expectedServerSignature) {
      throw new ScramError('SCRAM server-final-message received out of order');
    }
    this.state = 'failed';
    const text = messageText(msg, 'server-final-message');
    const attrs = parseAttributes(text, 'server-final-message');
    const first = attrs[0]!;
    if (first.name === 'e') throw new ScramError(`SCRAM authentication failed on the server: ${truncate(first.value, 100)}`);
    const sigB64 = expectAttr(attrs, 0, 'v', 'server-final-message');
    const sig = decodeBase64(sigB64, 'server signature');
    if (!safeEqual(sig, this.expectedServerSignature)) {
      throw new ScramError('invalid SCRAM server signature: the server does not know the password');
    }
    this.state = 'done';
  }

  /** True once serverFinal() has verified the server. */
  get completed(): boolean {
    return this.state === 'done';
  }
}

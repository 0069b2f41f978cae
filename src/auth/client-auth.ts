/* Client authentication flows (plain, md5, SCRAM-SHA-256) behind one interface, chosen by auth_type. */

import { timingSafeEqual } from 'node:crypto';
import { randomFromPool } from '../util/random.js';
import { AUTH_CLEARTEXT, authMd5, authSasl, authSaslContinue, authSaslFinal } from '../protocol/messages.js';
import { Reader } from '../protocol/reader.js';
import { isMd5Secret, md5Secret, md5Verify } from './md5.js';
import {
  cachedSecretFromPassword,
  dummyScramSecret,
  isScramSecret,
  parseScramSecret,
  saltedPassword,
  ScramError,
  ScramServerExchange,
  SCRAM_MECHANISM,
  type ScramSecret,
} from './scram.js';
import { createHash, createHmac } from 'node:crypto';

/** SCRAM keys recovered from a client login (for passthrough to PostgreSQL). */
export interface ScramKeys {
  clientKey: Buffer;
  serverKey: Buffer;
  /** The auth_file secret they belong to. */
  secret: string;
}

export type AuthStep =
  | { kind: 'send'; msg: Buffer }
  | { kind: 'done'; ok: boolean; final?: Buffer; scramKeys?: ScramKeys; reason?: string };

/** One authentication exchange with one client. */
export interface AuthFlow {
  /** The first authentication request to send. */
  start(): Buffer;
  /** Handle the body of a 'p' message (everything after the length word). */
  onPassword(body: Buffer): Promise<AuthStep>;
}

/** Parsed SCRAM secrets by their text (a login needs the parts twice; users log in again and again). */
const parsedSecrets = new Map<string, ScramSecret | null>();

function parsedSecret(secret: string): ScramSecret | null {
  let p = parsedSecrets.get(secret);
  if (p === undefined) {
    p = parseScramSecret(secret);
    if (parsedSecrets.size >= 4096) parsedSecrets.clear();
    parsedSecrets.set(secret, p);
  }
  return p;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  if (x.length !== y.length) {
    timingSafeEqual(x, x);
    return false;
  }
  return timingSafeEqual(x, y);
}

function cstring(body: Buffer): string {
  return new Reader(body).cstring();
}

/** Verify a clear-text password against any kind of stored secret. */
async function checkPlain(user: string, secret: string | undefined, password: string): Promise<boolean> {
  if (secret === undefined) return false;
  if (isScramSecret(secret)) {
    const s = parseScramSecret(secret);
    if (!s) return false;
    const salted = await saltedPassword(password, s.salt, s.iterations);
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    const stored = createHash('sha256').update(clientKey).digest();
    return timingSafeEqual(stored, s.storedKey);
  }
  if (isMd5Secret(secret)) return safeEqual(md5Secret(user, password), secret);
  return safeEqual(password, secret);
}

/** auth_type=plain: AuthenticationCleartextPassword. */
export class PlainFlow implements AuthFlow {
  constructor(
    private readonly user: string,
    private readonly secret: string | undefined,
  ) {}

  start(): Buffer {
    return AUTH_CLEARTEXT;
  }

  async onPassword(body: Buffer): Promise<AuthStep> {
    const ok = await checkPlain(this.user, this.secret, cstring(body));
    return { kind: 'done', ok };
  }
}

/** auth_type=md5 with a plain or md5 secret: AuthenticationMD5Password with a random salt. */
export class Md5Flow implements AuthFlow {
  private readonly salt = randomFromPool(4);

  constructor(
    private readonly user: string,
    private readonly secret: string | undefined,
  ) {}

  start(): Buffer {
    return authMd5(this.salt);
  }

  async onPassword(body: Buffer): Promise<AuthStep> {
    const response = cstring(body);
    const ok = this.secret !== undefined && md5Verify(this.user, this.secret, this.salt, response);
    return { kind: 'done', ok };
  }
}

/** SCRAM-SHA-256 (auth_type=scram-sha-256, or md5 with a SCRAM secret). */
export class ScramFlow implements AuthFlow {
  private exchange: ScramServerExchange | null = null;
  private step = 0;

  constructor(
    private readonly user: string,
    /** Stored secret: SCRAM, plain (a SCRAM secret is derived and cached), or undefined (unknown user). */
    private readonly secret: string | undefined,
  ) {}

  start(): Buffer {
    return authSasl([SCRAM_MECHANISM]);
  }

  private async scramSecret(): Promise<{ secret: ScramSecret; real: boolean }> {
    const s = this.secret;
    if (s !== undefined && isScramSecret(s)) {
      const parsed = parsedSecret(s);
      if (parsed) return { secret: parsed, real: true };
    } else if (s !== undefined && !isMd5Secret(s)) {
      return { secret: await cachedSecretFromPassword(this.user, s), real: true };
    }
    return { secret: dummyScramSecret(this.user), real: false };
  }

  async onPassword(body: Buffer): Promise<AuthStep> {
    try {
      if (this.step === 0) {
        this.step = 1;
        const r = new Reader(body);
        const mech = r.cstring();
        if (mech !== SCRAM_MECHANISM) {
          return { kind: 'done', ok: false, reason: `client selected an invalid SASL authentication mechanism` };
        }
        const len = r.i32();
        const data = len < 0 ? Buffer.alloc(0) : r.bytes(len);
        const { secret, real } = await this.scramSecret();
        this.real = real;
        this.exchange = new ScramServerExchange(secret);
        return { kind: 'send', msg: authSaslContinue(this.exchange.clientFirst(data)) };
      }
      if (this.step === 1 && this.exchange) {
        this.step = 2;
        const res = this.exchange.clientFinal(body);
        if (!res.ok || !this.real) return { kind: 'done', ok: false };
        const secret = this.secret!;
        const scramKeys = isScramSecret(secret)
          ? { clientKey: res.clientKey, serverKey: parsedSecret(secret)!.serverKey, secret }
          : undefined;
        return { kind: 'done', ok: true, final: authSaslFinal(res.serverFinal), scramKeys };
      }
      return { kind: 'done', ok: false, reason: 'unexpected SASL message' };
    } catch (err) {
      if (err instanceof ScramError) return { kind: 'done', ok: false, reason: `malformed SCRAM message: ${err.message}` };
      throw err;
    }
  }

  private real = false;
}

/** Pick the flow PgBouncer would use for this auth_type and stored secret. */
export function authFlowFor(authType: string, user: string, secret: string | undefined): AuthFlow | null {
  switch (authType) {
    case 'any':
    case 'trust':
      return null;
    case 'plain':
      return new PlainFlow(user, secret);
    case 'md5':
      if (secret !== undefined && isScramSecret(secret)) return new ScramFlow(user, secret);
      return new Md5Flow(user, secret);
    case 'scram-sha-256':
      return new ScramFlow(user, secret);
    default:
      return new Md5Flow(user, undefined);
  }
}

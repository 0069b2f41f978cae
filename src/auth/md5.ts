/* PostgreSQL MD5 password authentication: md5 secrets, the client's salted response, constant-time verification. */

import { createHash, timingSafeEqual } from 'node:crypto';

const MD5_SECRET = /^md5[0-9a-f]{32}$/;

function md5hex(data: string | Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** The secret PostgreSQL stores for an md5 password: 'md5' + md5hex(password + user). */
export function md5Secret(user: string, password: string): string {
  return `md5${md5hex(password + user)}`;
}

/** Whether s is an md5 secret ('md5' followed by 32 lowercase hex digits, as PostgreSQL checks it). */
export function isMd5Secret(s: string): boolean {
  return typeof s === 'string' && MD5_SECRET.test(s);
}

/**
 * What a client answers to AuthenticationMD5Password: 'md5' + md5hex(md5hex(password + user) + salt).
 * passwordOrMd5Secret may be the plain password or an md5 secret (whose hex part is then used directly,
 * which is how a pooler logs in to PostgreSQL with only the stored secret).
 */
export function md5Response(user: string, passwordOrMd5Secret: string, salt: Buffer): string {
  const inner = isMd5Secret(passwordOrMd5Secret) ? passwordOrMd5Secret.slice(3) : md5hex(passwordOrMd5Secret + user);
  return `md5${md5hex(Buffer.concat([Buffer.from(inner, 'latin1'), salt]))}`;
}

/**
 * Check a client's md5 response against the stored password (plain text or md5 secret), in constant time.
 * Responses of the wrong length are simply false.
 */
export function md5Verify(user: string, stored: string, salt: Buffer, response: string): boolean {
  if (typeof response !== 'string') return false;
  const expected = Buffer.from(md5Response(user, stored, salt), 'utf8');
  const got = Buffer.from(response, 'utf8');
  if (got.length !== expected.length) return false;
  return timingSafeEqual(got, expected);
}

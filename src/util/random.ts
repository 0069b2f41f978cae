/* Cryptographic random bytes drawn from a pool refilled 8 KB at a time (logins need a few bytes each). */

import { randomBytes } from 'node:crypto';

let pool = Buffer.alloc(0);
let pos = 0;

/** `n` (≤ 256) unpredictable bytes; the returned buffer is the caller's own. */
export function randomFromPool(n: number): Buffer {
  if (pos + n > pool.length) {
    pool = randomBytes(8192);
    pos = 0;
  }
  const out = Buffer.from(pool.subarray(pos, pos + n));
  pos += n;
  return out;
}

/* Unit tests for src/auth/md5.ts: secrets, salted responses, constant-time verification. */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { isMd5Secret, md5Response, md5Secret, md5Verify } from '../../src/auth/md5.js';

/** Independent formula: 'md5' + md5hex(md5hex(password + user) + salt). */
function reference(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(`${password}${user}`).digest('hex');
  return `md5${createHash('md5').update(inner).update(salt).digest('hex')}`;
}

const SALT = Buffer.from([0x01, 0x02, 0x03, 0x04]);

test('md5Secret: known vector (postgres/postgres, as PostgreSQL stores it)', () => {
  assert.equal(md5Secret('postgres', 'postgres'), 'md53175bce1d3201d16594cebf9d7eb3f9d');
  assert.equal(md5Secret('u', 'p\u00e4ss'), `md5${createHash('md5').update(Buffer.from('p\u00e4ssu', 'utf8')).digest('hex')}`);
});

test('isMd5Secret', () => {
  assert.ok(isMd5Secret('md53175bce1d3201d16594cebf9d7eb3f9d'));
  assert.equal(isMd5Secret('md53175BCE1d3201d16594cebf9d7eb3f9d'), false); // PostgreSQL wants lowercase
  assert.equal(isMd5Secret('md53175bce1d3201d16594cebf9d7eb3f9'), false);
  assert.equal(isMd5Secret('md53175bce1d3201d16594cebf9d7eb3f9d0'), false);
  assert.equal(isMd5Secret('md53175bce1d3201d16594cebf9d7eb3fzz'), false);
  assert.equal(isMd5Secret('SCRAM-SHA-256$4096:AAAA$AAAA:AAAA'), false);
  assert.equal(isMd5Secret('postgres'), false);
  assert.equal(isMd5Secret(''), false);
});

test('md5Response: known vectors, plain password and md5 secret give the same answer', () => {
  assert.equal(md5Response('postgres', 'postgres', SALT), 'md568be9ed08db75f318087ab337aaea044');
  assert.equal(md5Response('postgres', 'postgres', Buffer.from([0xde, 0xad, 0xbe, 0xef])), 'md58ee245854025535aedb7b15709315318');
  assert.equal(md5Response('postgres', md5Secret('postgres', 'postgres'), SALT), 'md568be9ed08db75f318087ab337aaea044');
  for (const [user, pw] of [['alice', 'secret'], ['bob', ''], ['\u00fcser', 'p\u00e4ss'], ['x', 'md5notasecret']] as const) {
    const salt = Buffer.from([0xff, 0x00, 0x80, 0x7f]);
    assert.equal(md5Response(user, pw, salt), reference(user, pw, salt));
    assert.equal(md5Response(user, md5Secret(user, pw), salt), reference(user, pw, salt));
  }
});

test('md5Verify: plain and md5-secret stored passwords', () => {
  const resp = reference('postgres', 'postgres', SALT);
  assert.equal(md5Verify('postgres', 'postgres', SALT, resp), true);
  assert.equal(md5Verify('postgres', md5Secret('postgres', 'postgres'), SALT, resp), true);
});

test('md5Verify: wrong response, user, salt or length is false (never throws)', () => {
  const resp = reference('postgres', 'postgres', SALT);
  assert.equal(md5Verify('postgres', 'wrong', SALT, resp), false);
  assert.equal(md5Verify('other', 'postgres', SALT, resp), false);
  assert.equal(md5Verify('postgres', 'postgres', Buffer.from([1, 2, 3, 5]), resp), false);
  assert.equal(md5Verify('postgres', 'postgres', SALT, resp.toUpperCase()), false);
  assert.equal(md5Verify('postgres', 'postgres', SALT, resp.slice(0, -1)), false);
  assert.equal(md5Verify('postgres', 'postgres', SALT, `${resp}0`), false);
  assert.equal(md5Verify('postgres', 'postgres', SALT, ''), false);
  assert.equal(md5Verify('postgres', 'postgres', SALT, resp.slice(0, -1) + '\u00e9'), false); // same chars, more bytes
  assert.equal(md5Verify('postgres', 'postgres', SALT, 'postgres'), false); // plain password is not a response
  assert.equal(md5Verify('postgres', 'postgres', SALT, undefined as unknown as string), false);
});

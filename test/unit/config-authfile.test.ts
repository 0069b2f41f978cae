/* auth_file (userlist.txt) parsing and secret classification. */

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAuthFile, readAuthFile, secretKind } from '../../src/config/auth-file.js';

const SCRAM =
  'SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVka2V5c3RvcmVka2V5c3RvcmVka2V5c3RvcmVka2U=:c2VydmVya2V5c2VydmVya2V5c2VydmVya2V5c2VydmU=';

describe('parseAuthFile', () => {
  it('reads users, ignores comments, blanks and extra fields', () => {
    const text = [
      '; comment',
      '# another comment',
      '',
      '"alice" "secret"',
      '   "bob"   "md545f2603610af569b6155c45067268c6b" "extra" field',
      `"carol" "${SCRAM}"`,
      '"empty" ""',
    ].join('\n');
    const r = parseAuthFile(text, 'userlist.txt');
    assert.deepEqual(r.warnings, []);
    assert.deepEqual([...r.users], [
      ['alice', 'secret'],
      ['bob', 'md545f2603610af569b6155c45067268c6b'],
      ['carol', SCRAM],
      ['empty', ''],
    ]);
  });

  it('"" escapes a quote inside a field', () => {
    const r = parseAuthFile('"we""ird" "pa""ss word"\n', 'u.txt');
    assert.equal(r.users.get('we"ird'), 'pa"ss word');
  });

  it('like PgBouncer, skips anything between the two fields', () => {
    const r = parseAuthFile('"dave" junk "pw"\n', 'u.txt');
    assert.equal(r.users.get('dave'), 'pw');
  });

  it('warns about malformed lines with file:line and keeps going', () => {
    const text = ['"ok1" "a"', 'alice secret', '"nosecret"', '"user" "unterminated', '"noclose', '"ok2" "b"'].join('\n');
    const r = parseAuthFile(text, 'u.txt');
    assert.deepEqual([...r.users.keys()], ['ok1', 'ok2']);
    assert.deepEqual(
      r.warnings.map((w) => w.line),
      [2, 3, 4, 5],
    );
    assert.ok(r.warnings.every((w) => w.file === 'u.txt' && w.message.startsWith(`u.txt:${w.line}: malformed auth_file line`)));
  });

  it('CRLF and a BOM are fine; a later duplicate wins', () => {
    const r = parseAuthFile('\uFEFF"a" "1"\r\n"a" "2"\r\n', 'u.txt');
    assert.deepEqual([...r.users], [['a', '2']]);
  });

  it('readAuthFile reads from disk and throws when missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgtide-auth-'));
    try {
      const p = join(dir, 'userlist.txt');
      writeFileSync(p, '"x" "y"\n');
      assert.equal(readAuthFile(p).users.get('x'), 'y');
      assert.throws(() => readAuthFile(join(dir, 'missing.txt')), /ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('secretKind', () => {
  it('classifies secrets', () => {
    assert.equal(secretKind('md545f2603610af569b6155c45067268c6b'), 'md5');
    assert.equal(secretKind('md545F2603610AF569B6155C45067268C6B'), 'md5');
    assert.equal(secretKind(SCRAM), 'scram');
    assert.equal(secretKind('md5short'), 'plain');
    assert.equal(secretKind('md545f2603610af569b6155c45067268c6bz'), 'plain');
    assert.equal(secretKind('md5zzzz3610af569b6155c45067268c6b'), 'plain');
    assert.equal(secretKind('hunter2'), 'plain');
    assert.equal(secretKind(''), 'plain');
  });
});

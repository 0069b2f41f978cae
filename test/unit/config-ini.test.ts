/* ini tokenizer: sections, key = value, comments, quoting of keys, %include resolution and loops, line numbers. */

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { MAX_INCLUDE_DEPTH, parseIni, readIni } from '../../src/config/ini.js';

const tmp = mkdtempSync(join(tmpdir(), 'pgtide-ini-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function write(rel: string, text: string): string {
  const p = join(tmp, rel);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
  return p;
}

describe('parseIni basics', () => {
  it('reads sections and keys with file and line', () => {
    const r = parseIni('[databases]\nfoo = host=x\n\n[pgbouncer]\n  pool_mode   =   transaction  \n', 'a.ini');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.sections.map((s) => [s.name, s.line]),
      [['databases', 1], ['pgbouncer', 4]],
    );
    assert.deepEqual(
      r.keys.map((k) => [k.section, k.key, k.value, k.file, k.line]),
      [
        ['databases', 'foo', 'host=x', 'a.ini', 2],
        ['pgbouncer', 'pool_mode', 'transaction', 'a.ini', 5],
      ],
    );
  });

  it('comments only at the start of a line; ; and # later are part of the value', () => {
    const r = parseIni('; c1\n# c2\n   ;indented\n[pgbouncer]\nserver_reset_query = DISCARD ALL ; not a comment\nx = a#b\n', 'a.ini');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.keys.map((k) => k.value),
      ['DISCARD ALL ; not a comment', 'a#b'],
    );
  });

  it('keeps quotes in values and allows empty values', () => {
    const r = parseIni("[pgbouncer]\nserver_reset_query = 'DISCARD ALL'\nlogfile =\nunix_socket_dir = \"\"\n", 'a.ini');
    assert.deepEqual(
      r.keys.map((k) => k.value),
      ["'DISCARD ALL'", '', '""'],
    );
  });

  it('handles CRLF, a BOM, tabs and no final newline', () => {
    const r = parseIni('\uFEFF[pgbouncer]\r\n\tlisten_port\t=\t6432\r\nverbose=1', 'a.ini');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.keys.map((k) => [k.key, k.value, k.line]),
      [
        ['listen_port', '6432', 2],
        ['verbose', '1', 3],
      ],
    );
  });

  it('keys outside any section have section null', () => {
    const r = parseIni('orphan = 1\n[pgbouncer]\n', 'a.ini');
    assert.equal(r.keys[0]?.section, null);
  });

  it('bare key characters include . - * and the fallback database', () => {
    const r = parseIni('[databases]\n* = host=x\nmy-db.v2 = host=y\n', 'a.ini');
    assert.deepEqual(
      r.keys.map((k) => k.key),
      ['*', 'my-db.v2'],
    );
  });

  it('double- and single-quoted keys', () => {
    const r = parseIni('[databases]\n"Foo Bar" = host=x\n"say ""hi""" = host=y\n\'a b\' = host=z\n', 'a.ini');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.keys.map((k) => [k.key, k.quoted]),
      [
        ['Foo Bar', true],
        ['say "hi"', true],
        ['a b', true],
      ],
    );
  });

  it('text after "]" is read like a new line', () => {
    const r = parseIni('[pgbouncer] ; comment\n[databases] foo = host=x\n', 'a.ini');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.keys.map((k) => [k.section, k.key]),
      [['databases', 'foo']],
    );
  });

  it('section names are kept exactly', () => {
    const r = parseIni('[PgBouncer]\n[ databases ]\n', 'a.ini');
    assert.deepEqual(
      r.sections.map((s) => s.name),
      ['PgBouncer', ' databases '],
    );
  });
});

describe('parseIni errors (never throws)', () => {
  it('reports syntax errors with file:line and goes on', () => {
    const r = parseIni('[pgbouncer]\njust words\nmy db = x\n[broken\n"unterminated = 1\npool_mode = session\n', 'b.ini');
    assert.deepEqual(
      r.errors.map((e) => e.line),
      [2, 3, 4, 5],
    );
    assert.ok(r.errors.every((e) => e.file === 'b.ini' && e.message.startsWith(`b.ini:${e.line}: `)));
    assert.match(r.errors[1]?.message ?? '', /must be quoted/);
    assert.match(r.errors[2]?.message ?? '', /closing "\]"/);
    assert.deepEqual(
      r.keys.map((k) => k.key),
      ['pool_mode'],
    );
  });

  it('odd input does not throw', () => {
    for (const text of ['', '\n\n', '=', '[', ']', '%include', '%include   ', '"', "''=1", '\0\0\0', '[]\n=x']) {
      assert.doesNotThrow(() => parseIni(text, 'odd.ini'), JSON.stringify(text));
    }
    assert.match(parseIni('%include\n', 'odd.ini').errors[0]?.message ?? '', /needs a file name/);
  });
});

describe('%include', () => {
  it('includes an absolute path in place; the section carries in and out', () => {
    const inc = write('abs/inc.ini', 'default_pool_size = 30\n[databases]\nappdb = host=db\n');
    const r = parseIni(`[pgbouncer]\n%include ${inc}\nfoo = host=after\n`, join(tmp, 'abs/main.ini'));
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.keys.map((k) => [k.section, k.key, k.file, k.line]),
      [
        ['pgbouncer', 'default_pool_size', inc, 1],
        ['databases', 'appdb', inc, 3],
        ['databases', 'foo', join(tmp, 'abs/main.ini'), 3],
      ],
    );
    assert.equal(r.files.length, 2);
  });

  it('resolves a relative path against the working directory first', () => {
    write('cwd/part.ini', 'listen_port = 1111\n');
    write('cfg/part.ini', 'listen_port = 2222\n');
    const main = write('cfg/main.ini', '[pgbouncer]\n%include part.ini\n');
    const r = readIni(main, { cwd: join(tmp, 'cwd') });
    assert.deepEqual(r.errors, []);
    assert.equal(r.keys[0]?.value, '1111');
    assert.equal(r.keys[0]?.file, 'part.ini');
  });

  it("falls back to the including file's directory", () => {
    write('cfg2/only-here.ini', 'listen_port = 3333\n');
    const main = write('cfg2/main.ini', '[pgbouncer]\n%include only-here.ini\n');
    const r = readIni(main, { cwd: join(tmp, 'cwd') });
    assert.deepEqual(r.errors, []);
    assert.equal(r.keys[0]?.value, '3333');
    assert.equal(r.keys[0]?.file, join(tmp, 'cfg2/only-here.ini'));
  });

  it('reports a missing include at the %include line', () => {
    const r = parseIni('[pgbouncer]\n\n%include /nonexistent/pgtide/nope.ini\n', 'm.ini');
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]?.line, 3);
    assert.match(r.errors[0]?.message ?? '', /^m\.ini:3: cannot read %include file/);
  });

  it('detects include loops', () => {
    const a = join(tmp, 'loop/a.ini');
    const b = join(tmp, 'loop/b.ini');
    write('loop/a.ini', `[pgbouncer]\n%include ${b}\n`);
    write('loop/b.ini', `listen_port = 1\n%include ${a}\n`);
    const r = readIni(a);
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]?.file, b);
    assert.equal(r.errors[0]?.line, 2);
    assert.match(r.errors[0]?.message ?? '', /%include loop/);
    assert.equal(r.keys.length, 1);
  });

  it('detects a file including itself', () => {
    const self = write('loop/self.ini', '%include self.ini\n');
    const r = readIni(self, { cwd: join(tmp, 'loop') });
    assert.match(r.errors[0]?.message ?? '', /%include loop/);
  });

  it(`stops at ${MAX_INCLUDE_DEPTH} levels`, () => {
    for (let i = 0; i <= MAX_INCLUDE_DEPTH + 1; i++) write(`deep/d${i}.ini`, `%include ${join(tmp, `deep/d${i + 1}.ini`)}\n`);
    const r = readIni(join(tmp, 'deep/d0.ini'));
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0]?.message ?? '', /nested more than 10 levels/);
  });

  it('readIni throws when the main file is unreadable', () => {
    assert.throws(() => readIni(join(tmp, 'missing.ini')), /ENOENT/);
  });
});

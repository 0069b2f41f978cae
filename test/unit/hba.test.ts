// auth_hba_file parsing and matching (src/auth/hba.ts).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HbaError, HbaRules } from '../../src/auth/hba.js';

const conn = (o: Partial<{ local: boolean; tls: boolean; database: string; user: string; addr: string }>) => ({
  local: false, tls: false, database: 'app', user: 'u', addr: '127.0.0.1', ...o,
});

describe('HbaRules', () => {
  it('the first matching line decides: type, database, user, address', () => {
    const r = HbaRules.parse(
      [
        '# comment',
        'local   all     all                     peer',
        'hostssl app     secure  0.0.0.0/0       cert',
        'host    app     bob     10.0.0.0/8      reject',
        'host    app,db2 bob     10.1.0.0 255.255.0.0 md5   # mask form, comment',
        'host    sameuser all    ::1/128         scram-sha-256',
        'hostnossl all   "Mixed Case" 127.0.0.1/32 password',
        'host    all     all     all             trust',
      ].join('\n'),
      'h.conf',
    );
    assert.equal(r.match(conn({ local: true }))?.method, 'peer');
    assert.equal(r.match(conn({ user: 'secure', tls: true }))?.method, 'cert');
    assert.equal(r.match(conn({ user: 'secure', tls: false }))?.method, 'trust');
    assert.equal(r.match(conn({ user: 'bob', addr: '10.1.2.3' }))?.method, 'reject', 'line 4 comes first');
    assert.equal(r.match(conn({ user: 'bob', addr: '10.1.2.3', database: 'db2' }))?.method, 'md5', 'line 4 is for app only');
    assert.equal(r.match(conn({ user: 'bob', addr: '11.1.2.3', database: 'db2' }))?.method, 'trust');
    assert.equal(r.match(conn({ user: 'carl', database: 'carl', addr: '::1' }))?.method, 'scram-sha-256');
    assert.equal(r.match(conn({ user: 'Mixed Case' }))?.method, 'password');
    assert.equal(r.match(conn({ user: 'Mixed Case', tls: true }))?.line, 8);
  });

  it('no matching line: null', () => {
    const r = HbaRules.parse('host app app 127.0.0.1/32 md5\n', 'h.conf');
    assert.equal(r.match(conn({ user: 'other' })), null);
    assert.equal(r.match(conn({ user: 'app', addr: '127.0.0.2' })), null);
    assert.equal(r.match(conn({ user: 'app', local: true })), null);
  });

  it('@file lists next to the hba file', () => {
    const dir = mkdtempSync('/tmp/pgtide-hba-');
    try {
      writeFileSync(join(dir, 'admins'), 'alice, bob\ncarol\n');
      const path = join(dir, 'hba.conf');
      writeFileSync(path, 'host all @admins all md5\n');
      const r = HbaRules.load(path);
      for (const u of ['alice', 'bob', 'carol']) assert.equal(r.match(conn({ user: u }))?.method, 'md5');
      assert.equal(r.match(conn({ user: 'dave' })), null);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lines it cannot honour never match and warn; bad lines are errors with file and line', () => {
    const r = HbaRules.parse('host all +admins all md5\nhost all all db.example.com md5\nhost all all samenet md5\n', 'h.conf');
    assert.equal(r.warnings.length, 3);
    assert.equal(r.match(conn({ user: '+admins' }))?.method, 'md5'); // a literal name, not a group
    assert.equal(r.match(conn({ user: 'x' })), null);
    for (const [line, msg] of [
      ['hots all all all md5', /h\.conf:1: invalid connection type "hots"/],
      ['host all all 127.0.0.1/33 md5', /invalid CIDR address/],
      ['host all all 127.0.0.1 md5', /needs a \/prefix or a mask/],
      ['host all all all ldap', /authentication method "ldap" is not supported/],
      ['host all all all', /missing authentication method/],
      ['host all all all peer', /peer authentication is only for local connections/],
    ] as const) {
      assert.throws(() => HbaRules.parse(line, 'h.conf'), (e: Error) => e instanceof HbaError && msg.test(e.message), line);
    }
  });
});

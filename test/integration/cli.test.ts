// The command line: -V, -h, bad flags, missing or bad config files, unknown settings, -d (daemon), -q, pidfile,
// logfile, and PgBouncer-style log lines.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { sharedPostgres, isAlive, type PgServer } from '../harness/postgres.js';
import { startPgtide, iniFor, track, runCli, type CliResult, type PgtideContext, type Pgtide } from '../harness/pgtide.js';
import { waitFor } from '../harness/util.js';

/** Run `node dist/cli.js ...args` to completion (10 s at most). */
const cli = (args: string[], cwd?: string): Promise<CliResult> => runCli(args, { cwd });

/** 1-based line number of the first line of `text` containing `needle`. */
function lineOf(text: string, needle: string): number {
  const i = text.split('\n').findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `${needle} not in the ini`);
  return i + 1;
}

async function selectOne(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    assert.deepEqual((await c.query('select 1 as one')).rows, [{ one: 1 }]);
  } finally {
    await c.end();
  }
}

let server: PgServer;
const pgServer = async () => (server ??= await sharedPostgres());

test('-V prints the version first line "pgtide X.Y.Z" and exits 0', async () => {
  for (const flag of ['-V', '--version']) {
    const r = await cli([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.split('\n')[0]!, /^pgtide \d+\.\d+\.\d+/);
  }
});

test('-h prints usage and exits 0', async () => {
  for (const flag of ['-h', '--help']) {
    const r = await cli([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Usage:\n\s+pgtide \[OPTION\]\.\.\. CONFIG_FILE/);
    for (const opt of ['-d, --daemon', '-q, --quiet', '-v, --verbose', '-V, --version', '-h, --help']) assert.ok(r.stdout.includes(opt), `usage lacks ${opt}`);
  }
});

test('an unknown flag exits non-zero and names the flag', async () => {
  for (const flag of ['--bogus', '-x']) {
    const r = await cli([flag, 'whatever.ini']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`unknown option: ${flag}`));
    assert.equal(r.stdout, '');
  }
});

test('no config file argument: "Need config file", exit 1; a missing file: cannot load config file, exit 1', async () => {
  const r = await cli([]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /Need config file/);
  const dir = mkdtempSync('/tmp/pgtide-cli-');
  try {
    const m = await cli([join(dir, 'nope.ini')]);
    assert.equal(m.code, 1);
    assert.match(m.stderr, /nope\.ini/);
    assert.match(m.stderr, /FATAL cannot load config file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an invalid value exits 1 naming the file, line and key', async () => {
  const srv = await pgServer();
  let text = '';
  const b = await startPgtide({
    pg: srv,
    expectExit: true,
    ini: (ctx) => (text = iniFor(ctx, { settings: { pool_mode: 'transaction', default_pool_size: 'lots', max_client_conn: 50 } })),
  });
  assert.equal(await b.exited, 1);
  const line = lineOf(text, 'default_pool_size');
  const where = `${join(b.dir, 'pgbouncer.ini')}:${line}:`;
  assert.ok(b.log().includes(where), `the error does not name ${where}:\n${b.log()}`);
  assert.equal(b.log().split(where).length - 1, 1, `file:line printed more than once:\n${b.log()}`);
  assert.match(b.log(), /ERROR .*default_pool_size/);
  assert.match(b.log(), /"lots"/);
  assert.match(b.log(), /FATAL cannot load config file/);
  await b.stop();
});

test('an unknown setting gives a warning with file:line and the closest setting, and pgtide keeps running', async (t) => {
  const srv = await pgServer();
  let text = '';
  const b = track(t, await startPgtide({
    pg: srv,
    ini: (ctx) => (text = iniFor(ctx, { settings: { defualt_pool_size: 5 } })),
  }));
  const where = `${join(b.dir, 'pgbouncer.ini')}:${lineOf(text, 'defualt_pool_size')}:`;
  const warning = await b.waitForLog(/WARNING .*defualt_pool_size.*/, 2000);
  assert.ok(warning.includes(where), `warning does not name ${where}: ${warning}`);
  assert.equal(warning.split(where).length - 1, 1, `file:line printed more than once: ${warning}`);
  assert.match(warning, /default_pool_size/);
  await selectOne(b.url('app', 'apppass', 'app'));
  assert.equal(b.proc.exitCode, null);
});

test('-d without a pidfile (unset or empty) is an error, exit 1', async () => {
  const srv = await pgServer();
  for (const pidfile of [undefined, '']) {
    const b = await startPgtide({
      pg: srv,
      args: ['-d'],
      expectExit: true,
      ini: (ctx) => iniFor(ctx, { settings: { logfile: join(ctx.dir, 'pgtide.log'), ...(pidfile === undefined ? {} : { pidfile }) } }),
    });
    assert.equal(await b.exited, 1, b.log());
    assert.match(b.log(), /FATAL .*pidfile/);
    await b.stop();
  }
});

test('-d with pidfile and logfile: the parent exits 0, the daemon serves, logs to the logfile, and goes on SIGTERM', async (t) => {
  const srv = await pgServer();
  let ctxSaved: PgtideContext | undefined;
  const b = track(t, await startPgtide({
    pg: srv,
    args: ['-d'],
    expectExit: true,
    ini: (ctx) => {
      ctxSaved = ctx;
      return iniFor(ctx, { settings: { pidfile: join(ctx.dir, 'pgtide.pid'), logfile: join(ctx.dir, 'pgtide.log') } });
    },
  }));
  const ctx = ctxSaved!;
  const pidfile = join(ctx.dir, 'pgtide.pid');
  const logfile = join(ctx.dir, 'pgtide.log');
  let daemonPid = 0;
  track(t, { close: () => { if (daemonPid && isAlive(daemonPid)) process.kill(daemonPid, 'SIGKILL'); } });

  assert.equal(await b.exited, 0, b.log());
  assert.ok(existsSync(pidfile), 'no pidfile after the parent exited');
  daemonPid = Number(readFileSync(pidfile, 'utf8').trim());
  assert.ok(daemonPid > 0 && daemonPid !== b.pid, `pidfile holds ${daemonPid}`);
  assert.ok(isAlive(daemonPid), 'the daemon is not running');
  await waitFor('the daemon to accept connections', () => selectOne(b.url('app', 'apppass', 'app')).then(() => true, () => false), 5000);
  await waitFor('login lines in the logfile', () => /login attempt: db=app user=app tls=no/.test(readFileSync(logfile, 'utf8')), 2000);
  const log = readFileSync(logfile, 'utf8');
  assert.match(log, /LOG process up: pgtide /);
  assert.match(log, new RegExp(`\\[${daemonPid}\\] LOG listening on 127\\.0\\.0\\.1:${ctx.port}`));
  assert.ok(!b.log().includes('login attempt'), 'the daemon wrote to the parent\'s output');

  process.kill(daemonPid, 'SIGTERM');
  await waitFor('the daemon to exit', () => !isAlive(daemonPid), 5000);
  assert.ok(!existsSync(pidfile), 'pidfile left behind');
  assert.match(readFileSync(logfile, 'utf8'), /got SIGTERM/);
});

test('pidfile is written in the foreground and removed on exit; the logfile gets the log lines', async (t) => {
  const srv = await pgServer();
  const b = track(t, await startPgtide({
    pg: srv,
    ini: (ctx) => iniFor(ctx, { settings: { pidfile: join(ctx.dir, 'pgtide.pid'), logfile: join(ctx.dir, 'pgtide.log') } }),
  }));
  const pidfile = join(b.dir, 'pgtide.pid');
  const logfile = join(b.dir, 'pgtide.log');
  assert.equal(readFileSync(pidfile, 'utf8').trim(), String(b.pid));
  await selectOne(b.url('app', 'apppass', 'app'));
  await waitFor('the logfile to get the login', () => readFileSync(logfile, 'utf8').includes('login attempt: db=app user=app'), 2000);
  // stderr carries the same lines (no -q)
  await b.waitForLog(/login attempt: db=app user=app tls=no/, 2000);
  b.signal('SIGTERM');
  assert.equal(await b.exited, 0);
  assert.ok(!existsSync(pidfile), 'pidfile left behind after SIGTERM');
  assert.match(readFileSync(logfile, 'utf8'), /got SIGTERM/);
});

test('a stale pidfile (dead pid) is replaced; a live one refuses to start', async (t) => {
  const srv = await pgServer();
  const files = { 'pgtide.pid': '999999\n' };
  const b = track(t, await startPgtide({ pg: srv, files, ini: (ctx) => iniFor(ctx, { settings: { pidfile: join(ctx.dir, 'pgtide.pid') } }) }));
  assert.equal(readFileSync(join(b.dir, 'pgtide.pid'), 'utf8').trim(), String(b.pid));
  const second = await startPgtide({
    pg: srv,
    files: { 'pgtide.pid': `${b.pid}\n` },
    expectExit: true,
    ini: (ctx) => iniFor(ctx, { settings: { pidfile: join(ctx.dir, 'pgtide.pid') } }),
  });
  assert.equal(await second.exited, 1);
  assert.match(second.log(), /pidfile/);
  // the refused process must not remove the running one's pidfile
  assert.equal(readFileSync(join(second.dir, 'pgtide.pid'), 'utf8').trim(), String(b.pid));
  await second.stop();
  await selectOne(b.url('app', 'apppass', 'app'));
});

test('-q: nothing on stderr, the logfile still gets every line', async (t) => {
  const srv = await pgServer();
  const b = track(t, await startPgtide({
    pg: srv,
    args: ['-q'],
    ini: (ctx) => iniFor(ctx, { settings: { logfile: join(ctx.dir, 'pgtide.log'), defualt_pool_size: 3 } }),
  }));
  await selectOne(b.url('app', 'apppass', 'app'));
  const logfile = join(b.dir, 'pgtide.log');
  await waitFor('the logfile to get the disconnect', () => readFileSync(logfile, 'utf8').includes('closing because: client close request'), 2000);
  const log = readFileSync(logfile, 'utf8');
  assert.match(log, /WARNING .*defualt_pool_size/);
  assert.match(log, /LOG process up/);
  assert.equal(b.log(), '', 'pgtide -q wrote to stderr/stdout');
});

test('log lines look like PgBouncer\'s: login attempt and closing because: client close request (age=…)', async (t) => {
  const srv = await pgServer();
  const b: Pgtide = track(t, await startPgtide({ pg: srv, ini: (ctx) => iniFor(ctx, {}) }));
  const c = new pg.Client({ connectionString: b.url('app', 'apppass', 'app') });
  await c.connect();
  const port = (c as unknown as { connection: { stream: { localPort: number } } }).connection.stream.localPort;
  await c.query('select 1');
  await c.end();
  const ts = String.raw`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[${b.pid}\]`;
  const who = String.raw`C-\d+: app/app@127\.0\.0\.1:${port}`;
  await b.waitForLog(new RegExp(`^${ts} LOG ${who} login attempt: db=app user=app tls=no$`, 'm'), 2000);
  await b.waitForLog(new RegExp(`^${ts} LOG ${who} closing because: client close request \\(age=\\d+s\\)$`, 'm'), 2000);
  // a server line: new connection to server (from <ip:port>)
  assert.match(b.log(), new RegExp(`^${ts} LOG S-\\d+: app/app@127\\.0\\.0\\.1:${srv.port} new connection to server \\(from 127\\.0\\.0\\.1:\\d+\\)$`, 'm'));
  // the same client id on both lines
  const ids = [...b.log().matchAll(new RegExp(`(C-\\d+): app/app@127\\.0\\.0\\.1:${port} `, 'g'))].map((m) => m[1]);
  assert.ok(ids.length >= 2 && ids.every((id) => id === ids[0]), `client ids differ: ${ids.join(', ')}`);
});

// pgtide demo end to end: it starts its own PostgreSQL and pgtide, the printed commands work as printed (psql through
// the pooled URL, the direct URL, the admin console's SHOW POOLS, the load test shortened to 2 s), and SIGINT stops
// everything: exit code 0, no postmaster left, its directory gone; SIGINT while it starts cleans up too (exit code
// 130). A port in use is one clear line and exit code 1; PostgreSQL dying under it is reported and exits 1, also
// leaving nothing behind. pgtide --help names the subcommand and where the docs are.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { freePort, isAlive, pgEnv } from '../harness/postgres.js';
import { CLI_PATH } from '../harness/pgtide.js';
import { findPostgres } from '../../src/demo/binaries.js';

let noPostgres: string | undefined;
try {
  await findPostgres();
} catch (e) {
  noPostgres = `no PostgreSQL server binaries here: ${(e as Error).message}`;
}

interface Demo {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<number | string>;
}

/** A TMPDIR for the demo that PostgreSQL's user can reach when we are root (else the demo would fall back to /tmp). */
function tmpDir(): string {
  const dir = mkdtempSync('/tmp/pgtide-demo-test-');
  chmodSync(dir, 0o755);
  return dir;
}

function startDemo(args: string[], tmp: string): Demo {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && k !== 'NODE_TEST_CONTEXT') env[k] = v;
  env.TMPDIR = tmp;
  const proc = spawn(process.execPath, [CLI_PATH, 'demo', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, sig) => resolve(code ?? sig ?? 'unknown')));
  return { proc, stdout: () => out, stderr: () => err, exited };
}

/** Wait for `re` in the demo's stdout; fails with its output when it exits first or after `ms`. */
async function waitOut(d: Demo, re: RegExp, ms = 20_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + ms;
  let done = false;
  void d.exited.then(() => (done = true));
  for (;;) {
    const m = re.exec(d.stdout());
    if (m) return m;
    if (done || Date.now() > deadline) {
      throw new Error(`${done ? 'demo exited' : `no ${re} within ${ms} ms`}\n--- stdout ---\n${d.stdout()}\n--- stderr ---\n${d.stderr()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Wait for the exit (at most `ms`); SIGKILL after that, and fail. */
async function exitCode(d: Demo, ms = 20_000): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      d.proc.kill('SIGKILL');
      reject(new Error(`demo still running ${ms} ms after the signal\n${d.stdout()}\n${d.stderr()}`));
    }, ms);
  });
  try {
    return await Promise.race([d.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Run a printed command line as printed, with bash, without the caller's PG* variables; 30 s at most. */
function sh(line: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', line], { env: pgEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

/** Processes whose command line mentions `dir` (a postmaster or backend of the demo's cluster). */
function processesUsing(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dir)) found.push(`${pid}: ${cmd}`);
    } catch {
      /* gone */
    }
  }
  return found;
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ port, host: '127.0.0.1' }, () => resolve(srv));
  });
}

/** The parts of the demo's output the tests use. */
function parseBanner(out: string) {
  const get = (re: RegExp, what: string) => {
    const m = re.exec(out);
    assert.ok(m, `no ${what} in the demo's output:\n${out}`);
    return m[1]!;
  };
  return {
    pooled: get(/^DATABASE_URL="([^"]+)"$/m, 'DATABASE_URL'),
    direct: get(/^DIRECT_DATABASE_URL="([^"]+)"$/m, 'DIRECT_DATABASE_URL'),
    tryLine: get(/^ {2}(\S*psql "postgresql:\/\/[^\n]*select 1.*)$/m, 'psql line'),
    consoleLine: get(/^ {2}(PGPASSWORD=\S+ \S*psql -h 127\.0\.0\.1 .*SHOW POOLS.*)$/m, 'console command'),
    loadLine: get(/^ {2}(\S*pgbench -i .*)$/m, 'load test'),
    dir: get(/^Files: (\S+) /m, 'directory'),
  };
}

test('pgtide demo: the printed URLs and commands work as printed, SIGINT stops both and removes the data', { skip: noPostgres, timeout: 30_000 }, async () => {
  const tmp = tmpDir();
  const [port, pgPort] = [await freePort(), await freePort()];
  const d = startDemo(['--port', String(port), '--pg-port', String(pgPort)], tmp);
  try {
    await waitOut(d, /^Ctrl-C stops pgtide and PostgreSQL/m);
    const b = parseBanner(d.stdout());
    assert.match(b.pooled, new RegExp(`^postgresql://demo:[0-9a-f]+@127\\.0\\.0\\.1:${port}/demo\\?sslmode=disable$`));
    assert.equal(b.direct, b.pooled.replace(`:${port}/`, `:${pgPort}/`));
    assert.ok(b.dir.startsWith(tmp + '/'), `the demo's directory ${b.dir} is not under TMPDIR ${tmp}`);

    // the README's check: psql "$DATABASE_URL" -c 'select 1'
    const viaEnv = await sh(`DATABASE_URL='${b.pooled}'; psql -XAt "$DATABASE_URL" -c 'select 1'`);
    assert.deepEqual([viaEnv.code, viaEnv.out.trim()], [0, '1'], viaEnv.err);
    const tried = await sh(b.tryLine);
    assert.equal(tried.code, 0, tried.err);
    assert.match(tried.out, /^\s+1$/m);
    const direct = await sh(`psql -XAt "${b.direct}" -c 'select current_user, current_setting($$port$$)'`);
    assert.deepEqual([direct.code, direct.out.trim()], [0, `demo|${pgPort}`], direct.err);
    // pgtide logs in to PostgreSQL with the client's SCRAM keys: the userlist holds the secret, not the password
    const userlist = readFileSync(join(b.dir, 'userlist.txt'), 'utf8');
    assert.match(userlist, /^"demo" "SCRAM-SHA-256\$4096:/m);
    assert.doesNotMatch(userlist, new RegExp(new URL(b.pooled).password));

    const shortLoad = b.loadLine.replace('-T 30', '-T 2');
    assert.notEqual(shortLoad, b.loadLine, 'the load test line has no "-T 30"');
    const load = await sh(shortLoad);
    assert.equal(load.code, 0, load.err + load.out);
    assert.match(load.out, /number of clients: 50/);
    assert.match(load.out, /number of failed transactions: 0 /);

    const pools = await sh(b.consoleLine);
    assert.equal(pools.code, 0, pools.err);
    const demoRow = pools.out.split('\n').find((l) => /^\s*demo\s*\|\s*demo\s*\|/.test(l));
    assert.ok(demoRow, `no demo/demo pool in SHOW POOLS:\n${pools.out}`);
    assert.match(demoRow, /\|\s*transaction\s*\|/);

    const postmaster = Number(readFileSync(join(b.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    assert.ok(isAlive(postmaster), 'postmaster not running');
    d.proc.kill('SIGINT');
    assert.equal(await exitCode(d), 0, d.stderr());
    assert.match(d.stdout(), /got SIGINT: stopping pgtide and PostgreSQL\n.*stopped; .* deleted\n$/);
    assert.equal(isAlive(postmaster), false, 'the postmaster is still running');
    assert.deepEqual(processesUsing(b.dir), []);
    assert.equal(existsSync(b.dir), false, `${b.dir} is still there`);
    assert.deepEqual(readdirSync(tmp), []);
  } finally {
    d.proc.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('pgtide demo: a port in use is one clear line and exit code 1, before anything is started', { skip: noPostgres, timeout: 30_000 }, async () => {
  const tmp = tmpDir();
  const busy = await freePort();
  const srv = await listen(busy);
  try {
    for (const [option, who] of [['--port', "pgtide's"], ['--pg-port', "PostgreSQL's"]] as const) {
      const other = option === '--port' ? '--pg-port' : '--port';
      const d = startDemo([option, String(busy), other, String(await freePort())], tmp);
      assert.equal(await exitCode(d), 1);
      assert.equal(d.stderr(), `pgtide demo: ${who} port ${busy} on 127.0.0.1 is in use by another program; stop it or choose another port with ${option}\n`);
      assert.equal(d.stdout(), '');
      assert.deepEqual(readdirSync(tmp), []);
    }
  } finally {
    srv.close();
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('pgtide demo: PostgreSQL dying is reported, exit code 1, nothing left behind', { skip: noPostgres, timeout: 30_000 }, async () => {
  const tmp = tmpDir();
  const d = startDemo(['-q', '--port', String(await freePort()), '--pg-port', String(await freePort())], tmp);
  try {
    await waitOut(d, /^Ctrl-C stops pgtide and PostgreSQL/m);
    const { dir } = parseBanner(d.stdout());
    const postmaster = Number(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(postmaster, 'SIGKILL');
    assert.equal(await exitCode(d), 1, d.stderr());
    assert.match(d.stderr(), /^pgtide demo: PostgreSQL exited unexpectedly \(signal SIGKILL\); the end of its log:\n/);
    assert.match(d.stdout(), /stopped; .* deleted\n$/);
    assert.deepEqual(processesUsing(dir), []);
    assert.deepEqual(readdirSync(tmp), []);
  } finally {
    d.proc.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('pgtide demo: SIGINT while it starts stops and deletes what was started, exit code 130', { skip: noPostgres, timeout: 30_000 }, async () => {
  const tmp = tmpDir();
  const d = startDemo(['-q', '--port', String(await freePort()), '--pg-port', String(await freePort())], tmp);
  try {
    const [, dir] = await waitOut(d, /^pgtide demo: initdb (\S+)\/data /m);
    d.proc.kill('SIGINT');
    assert.equal(await exitCode(d), 130, d.stderr());
    assert.match(d.stderr(), /got SIGINT while starting, cleaning up/);
    assert.match(d.stdout(), /stopped before it was up; what it had started is stopped and deleted\n$/);
    assert.deepEqual(processesUsing(dir!), []);
    assert.deepEqual(readdirSync(tmp), []);
  } finally {
    d.proc.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('pgtide --help names the demo and where the docs are; pgtide demo --help and a bad option', { timeout: 30_000 }, async () => {
  const run = (args: string[]) => new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const p = spawn(process.execPath, [CLI_PATH, ...args], { env: pgEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('close', (code) => resolve({ code, out, err }));
  });
  const top = await run(['--help']);
  assert.equal(top.code, 0);
  assert.match(top.out, /^ {2}pgtide demo \[OPTION\]\.\.\.$/m);
  const docs = /^Documentation: (\S+) and (\S+)\/$/m.exec(top.out);
  assert.ok(docs, top.out);
  assert.ok(existsSync(docs[1]!) && existsSync(join(docs[2]!, 'getting-started.md')), `${docs[1]} or ${docs[2]}/getting-started.md missing`);
  const demo = await run(['demo', '--help']);
  assert.equal(demo.code, 0);
  assert.match(demo.out, /^Usage:\n {2}pgtide demo \[OPTION\]\.\.\.$/m);
  for (const opt of ['--port N', '--pg-port N', '--pg-bin DIR', '--embedded', '-q, --quiet', '-h, --help']) assert.ok(demo.out.includes(opt), `demo usage lacks ${opt}`);
  const bad = await run(['demo', '--bogus']);
  assert.deepEqual([bad.code, bad.out, bad.err], [1, '', 'pgtide demo: unknown option for pgtide demo: --bogus\nTry "pgtide demo --help" for more information.\n']);
});

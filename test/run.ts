// Test entry point (`npm test [-- filter…]`): one PostgreSQL for the run, then node:test over test/unit and test/integration.

import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PG_ENV, startPostgres, type PgServer, type PgServerInfo } from './harness/postgres.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const RUN_TIMEOUT_MS = 14 * 60_000;

function testFiles(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? testFiles(p) : e.name.endsWith('.test.ts') ? [p] : [];
  });
}

const filters = process.argv.slice(2);
const files = ['unit', 'integration']
  .flatMap((d) => testFiles(join(ROOT, 'test', d)))
  .map((f) => relative(ROOT, f))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error(`test/run.ts: no test files${filters.length ? ` matching ${filters.join(', ')}` : ''}`);
  process.exit(1);
}

let runner: ReturnType<typeof spawn> | undefined;
let pg: PgServer | undefined;
let interrupted: NodeJS.Signals | undefined;
const killRunner = (sig: NodeJS.Signals) => {
  // The runner has its own process group: this reaches it, every test process and every pgtide they started.
  if (runner?.pid) {
    try { process.kill(-runner.pid, sig); } catch { /* group gone */ }
  }
};
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    interrupted = sig;
    if (!runner) process.exit(130); // still starting: exit hooks stop PostgreSQL
    killRunner('SIGTERM');
  });
}

// Unit tests alone need no server.
if (files.some((f) => !f.startsWith(join('test', 'unit')))) {
  const t0 = Date.now();
  pg = await startPostgres({ maxConnections: 300 });
  console.log(`PostgreSQL ready on 127.0.0.1:${pg.port} (socket ${pg.socketDir}) in ${Date.now() - t0} ms`);
}

const env: NodeJS.ProcessEnv = { ...process.env };
if (pg) {
  const info: PgServerInfo = { host: pg.host, port: pg.port, socketDir: pg.socketDir, dataDir: pg.dataDir, dir: pg.dir, logFile: pg.logFile };
  env[PG_ENV] = JSON.stringify(info);
}

runner = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=120000', '--test-force-exit', ...files], {
  cwd: ROOT, env, stdio: 'inherit', detached: true,
});
const timeout = setTimeout(() => {
  console.error(`test/run.ts: tests still running after ${RUN_TIMEOUT_MS / 60_000} min, killing them`);
  killRunner('SIGTERM');
  setTimeout(() => killRunner('SIGKILL'), 10_000).unref();
}, RUN_TIMEOUT_MS);

const code = await new Promise<number | null>((resolve) => runner!.once('exit', (c, s) => {
  if (s) console.error(`test/run.ts: test runner killed by ${s}`);
  resolve(c);
}));
clearTimeout(timeout);
killRunner('SIGKILL'); // anything left in the group
if (pg) {
  if (code !== 0 && !interrupted) console.error(`--- PostgreSQL log tail (${pg.logFile}) ---\n${pg.logTail(30)}`);
  await pg.stop();
}
process.exit(interrupted ? 130 : code ?? 1);

// `npm run bench:before-after [-- options]`: a throwaway PostgreSQL (max_connections 100, as PostgreSQL's default) and
// the built `pgtide bench --before-after` against it; the report goes to stdout and bench/results/before-after-<time>.md/.json.

import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startPostgres } from '../test/harness/postgres.js';
import { PGTIDE_CLI, REPO_ROOT } from './poolers.js';

function stamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

async function main(): Promise<number> {
  const resultsDir = join(REPO_ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const base = join(resultsDir, `before-after-${stamp(new Date())}`);
  process.stderr.write('[bench:before-after] starting a throwaway PostgreSQL (max_connections = 100)\n');
  // PostgreSQL's defaults where they matter here (max_connections 100, no connection logging); the harness's
  // fsync = off and synchronous_commit = off do not matter to this read-only load
  const pg = await startPostgres({ maxConnections: 100, extraConf: 'shared_buffers = 128MB\nlog_connections = off\nlog_disconnections = off\n' });
  try {
    const args = ['bench', '--before-after', '--json', `${base}.json`, ...process.argv.slice(2), pg.url('app', 'apppass', 'app')];
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
    const child = spawn(process.execPath, [PGTIDE_CLI, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    const md = createWriteStream(`${base}.md`);
    child.stdout.on('data', (d: Buffer) => {
      process.stdout.write(d);
      md.write(d);
    });
    const code = await new Promise<number>((resolve) => child.once('close', (c) => resolve(c ?? 1)));
    await new Promise<void>((resolve) => md.end(resolve));
    process.stderr.write(code === 0 ? `[bench:before-after] report: ${base}.md, raw figures: ${base}.json\n` : `[bench:before-after] pgtide bench exited with code ${code}\n`);
    return code;
  } finally {
    await pg.stop();
  }
}

main().then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    process.stderr.write(`bench:before-after failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);

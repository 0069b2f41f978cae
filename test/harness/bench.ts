// `pgtide bench` as a command for the integration tests: run it with its own TMPDIR (so its work dirs are findable)
// and no PG* variables, and a temp dir per test.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { CLI_PATH } from './pgtide.js';
import type { Ctx } from './util.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `node dist/cli.js ...args` with TMPDIR = `tmp` and no PG* variables (plus `extraEnv`). */
export function benchCli(args: string[], tmp: string, timeoutMs = 90_000, extraEnv: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && k !== 'NODE_TEST_CONTEXT') env[k] = v;
    Object.assign(env, { TMPDIR: tmp }, extraEnv);
    const p = spawn(process.execPath, [CLI_PATH, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`pgtide ${args.join(' ')} still running after ${timeoutMs / 1000} s\n${stdout}${stderr}`));
    }, timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A temp dir removed after the test. */
export function tempDir(t: Ctx): string {
  const dir = mkdtempSync('/tmp/pgtide-bench-test-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// `pgtide bench` as a command for the integration tests: run it with its own TMPDIR (so its work dirs are findable)
// and no PG* variables, and a temp dir per test.

import { mkdtempSync, rmSync } from 'node:fs';
import { runCli, type CliResult } from './pgtide.js';
import type { Ctx } from './util.js';

export type { CliResult } from './pgtide.js';

/** Run `node dist/cli.js ...args` with TMPDIR = `tmp` and no PG* variables (plus `extraEnv`). */
export function benchCli(args: string[], tmp: string, timeoutMs = 90_000, extraEnv: Record<string, string> = {}): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  Object.assign(env, { TMPDIR: tmp }, extraEnv);
  return runCli(args, { env, timeoutMs });
}

/** A temp dir removed after the test. */
export function tempDir(t: Ctx): string {
  const dir = mkdtempSync('/tmp/pgtide-bench-test-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

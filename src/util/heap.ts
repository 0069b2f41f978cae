/* V8 heap tuning for pgtide's own process, and the heap figures SHOW MEM reports.
 *
 * V8 grows its young generation (new space) from 1 MB up to 32 MB while many new objects survive their first
 * collections. A burst of logins does exactly that: each client's objects live on. The grown space then stays
 * committed until V8's memory reducer shrinks it, about 20 s after the burst here. pgtide's hot path allocates
 * little, so it gains nothing from a large young generation. The CLI therefore keeps it at its initial size. With
 * 10,000 idle clients that saves about 1.6 KiB per client (docs/benchmarks.md, "Idle-client memory").
 * The library (src/api) never calls this: an application that embeds a Pooler keeps its own heap settings. */

import v8 from 'node:v8';

/** The flag the CLI sets: a young generation that does not grow past its initial size. */
export const YOUNG_GENERATION_FLAG = '--semi-space-growth-factor=1';

/**
 * Keep V8's young generation at its initial size, unless the command line or NODE_OPTIONS already sizes it
 * (`node --max-semi-space-size=16 dist/cli.js …` or `--semi-space-growth-factor=…` keeps V8's own behaviour).
 * True when the flag was set.
 */
export function tuneHeap(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  if (/semi[-_]space/.test(`${execArgv.join(' ')} ${nodeOptions}`)) return false;
  v8.setFlagsFromString(YOUNG_GENERATION_FLAG);
  return true;
}

/** V8's young generation now: bytes committed, in use and still free. */
export function newSpace(): { size: number; used: number; available: number } {
  for (const s of v8.getHeapSpaceStatistics()) {
    if (s.space_name === 'new_space') return { size: s.space_size, used: s.space_used_size, available: s.space_available_size };
  }
  return { size: 0, used: 0, available: 0 };
}

/* V8 heap tuning for pgtide's own process, and the heap figures SHOW MEM reports.
 *
 * V8 grows its young generation (new space) from 1 MB up to 32 MB while many new objects survive their first
 * collections. A burst of logins does exactly that: each client's objects live on. The grown space then stays
 * committed until V8's memory reducer shrinks it, about 20 s after the burst here. So the CLI keeps the young
 * generation at its initial size: with 10,000 idle clients that saves about 1.6 KiB per client (docs/benchmarks.md,
 * "Idle-client memory"). While many clients wait for a server, though, their queued requests outlive a small young
 * generation's collections and get copied into the old one: at 1,000 busy clients that cost about 5 % of the
 * throughput. So the janitor lets it grow again while a queue is there (YoungGeneration below).
 * The library (src/api) never calls tuneHeap: an application that embeds a Pooler keeps its own heap settings. */

import v8 from 'node:v8';

/** The flag the CLI sets: a young generation that does not grow past its initial size. */
export const YOUNG_GENERATION_FLAG = '--semi-space-growth-factor=1';
/** V8's own growth factor, set again while clients queue for servers. */
export const YOUNG_GROWTH_FLAG = '--semi-space-growth-factor=2';
/** Clients waiting for a server (all pools) at a janitor tick that count as a queue. */
export const QUEUE_CLIENTS = 16;
/** How long after the last queue the young generation may still grow. */
export const GROWTH_HOLD_MS = 5000;

/** Whether the young generation may grow now: off until tuneHeap has taken control, then set by the janitor. */
export class YoungGeneration {
  private tuned = false;
  private growing = true;
  private lastQueue = -Infinity;

  constructor(private readonly setFlags: (flags: string) => void = (f) => v8.setFlagsFromString(f)) {}

  /** tuneHeap set the flag: from now on the janitor's ticks decide. */
  takeControl(): void {
    this.tuned = true;
    this.growing = false;
  }

  /** A janitor tick: `waiting` clients wait for a server. Returns the new state when it changed, else null. */
  tick(now: number, waiting: number): boolean | null {
    if (!this.tuned) return null;
    if (waiting >= QUEUE_CLIENTS) this.lastQueue = now;
    const grow = now - this.lastQueue < GROWTH_HOLD_MS;
    if (grow === this.growing) return null;
    this.growing = grow;
    this.setFlags(grow ? YOUNG_GROWTH_FLAG : YOUNG_GENERATION_FLAG);
    return grow;
  }
}

/** The process's one YoungGeneration (the janitor ticks it). */
export const youngGeneration = new YoungGeneration();

/**
 * Keep V8's young generation at its initial size, unless the command line or NODE_OPTIONS already sizes it
 * (`node --max-semi-space-size=16 dist/cli.js …` or `--semi-space-growth-factor=…` keeps V8's own behaviour).
 * True when the flag was set.
 */
export function tuneHeap(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  if (/semi[-_]space/.test(`${execArgv.join(' ')} ${nodeOptions}`)) return false;
  v8.setFlagsFromString(YOUNG_GENERATION_FLAG);
  youngGeneration.takeControl();
  return true;
}

/** V8's young generation now: bytes committed, in use and still free. */
export function newSpace(): { size: number; used: number; available: number } {
  for (const s of v8.getHeapSpaceStatistics()) {
    if (s.space_name === 'new_space') return { size: s.space_size, used: s.space_used_size, available: s.space_available_size };
  }
  return { size: 0, used: 0, available: 0 };
}

/* What the library's Pooler shares with the CLI and with nobody else (kept out of the published declarations): the
 * engine under each Pooler, and how a Pooler is made from an already loaded configuration. */

import type { Config } from '../config/loader.js';
import type { PoolerOptions } from '../config/options.js';
import type { WorkerLink } from '../cluster/worker.js';
import type { Pooler as Engine } from '../pooler.js';

/** How a Pooler is made: from options or an ini (the public ways), or by the CLI with its process's extra parts. */
export interface Init {
  config: Config;
  /** The options it was built from, or null for an ini. */
  options: PoolerOptions | null;
  /** Builds the configuration again for RELOAD; null: from `options`, or the engine's default (the config file). */
  source: (() => Config) | null;
  stderr: boolean;
  /** The CLI: its own logging setup, its own answer to the console's SHUTDOWN, and the worker link with workers > 1. */
  cli: { link: WorkerLink | null } | null;
}

export const internal = {
  /** Set just before `new Pooler(…)` by a maker that has its Init ready; the constructor takes and clears it. */
  pending: null as Init | null,
  /** The engine (../pooler.ts) under each library Pooler. */
  engines: new WeakMap<object, Engine>(),
};

/* The CLI's way to the library's Pooler: made over an already loaded and checked configuration (with the worker link
 * when it is one of several workers), and the engine under it for signals and the cluster link. Not exported by
 * index.ts. */

import type { Config } from '../config/loader.js';
import type { PoolerOptions } from '../config/options.js';
import type { WorkerLink } from '../cluster/worker.js';
import type { Pooler as Engine } from '../pooler.js';
import { Pooler } from './pooler.js';
import { internal } from './internal.js';

/** A Pooler for the CLI: it keeps its own logging setup and its own answers to the console's SHUTDOWN and to signals. */
export function cliPooler(config: Config, link: WorkerLink | null): Pooler {
  internal.pending = { config, options: null, source: null, stderr: false, cli: { link } };
  try {
    return new Pooler(undefined as unknown as PoolerOptions);
  } finally {
    internal.pending = null;
  }
}

/** The engine under a Pooler. */
export function engineOf(p: Pooler): Engine {
  const e = internal.engines.get(p);
  if (!e) throw new Error('not a pgtide Pooler');
  return e;
}

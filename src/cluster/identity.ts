/* Which process this is: 0 for a single pooler (workers = 1) or the primary, 1…workers for a worker. A worker's
 * client and server ids start at index × 10^9 so they are unique across workers (SHOW CLIENTS, KILL_CLIENT, logs),
 * and its BackendKeyData process ids carry its index in the high bits (cancel requests find their worker). */

import { WORKER_SHIFT } from './messages.js';

/** Room for this many client (and server) ids per worker. */
const ID_SPAN = 1_000_000_000;

let index = 0;
let clientSeq = 0;
let serverSeq = 0;

/** Set once, at a worker's start, before any connection exists. */
export function setWorkerIndex(i: number): void {
  index = i;
}

export function workerIndex(): number {
  return index;
}

export function newClientId(): number {
  return index * ID_SPAN + ++clientSeq;
}

export function newServerId(): number {
  return index * ID_SPAN + ++serverSeq;
}

/** A BackendKeyData process id from 32 random bits: positive, never 0, and a worker's index in its high bits. */
export function cancelPid(random: number): number {
  if (index === 0) return (random & 0x7fffffff) || 1;
  return (index << WORKER_SHIFT) | (random & ((1 << WORKER_SHIFT) - 1));
}

/* The messages between the primary and its workers (workers > 1), sent over node:cluster's IPC channel with the
 * 'advanced' serialization (structured clone: Buffers arrive as Uint8Arrays). Only connect/disconnect-time events and
 * console traffic go through it; a client's queries never do. */

import type { Cell, Column } from '../admin/rows.js';

/** Environment variable that gives a forked worker its index (1…workers). */
export const WORKER_ENV = 'PGTIDE_WORKER';

/** Bits of a client's BackendKeyData process id that name the worker (index << WORKER_SHIFT): 1…64 fit in 31 bits. */
export const WORKER_SHIFT = 24;

/** A table of rows, as a SHOW command answers it. */
export interface Table {
  columns: readonly Column[];
  rows: Cell[][];
}

/** Something every worker is asked to do, with an answer each. */
export type Op =
  /**
   * A console command (PAUSE, SET…) as typed: the answer is its protocol messages. `verb` in lower case ('set' for
   * SET) and `arg` (the database, or SET's key) let the primary replay state changes to a restarted worker.
   */
  | { kind: 'command'; text: string; verb: string; arg?: string }
  /** SIGHUP or the console's RELOAD: re-read the config file. */
  | { kind: 'reload' }
  /** SIGUSR1 / SIGUSR2. */
  | { kind: 'pause' }
  | { kind: 'resume' }
  /** SIGINT (then 'exit' for a second one), SHUTDOWN WAIT_FOR_SERVERS. */
  | { kind: 'safe-stop' }
  /** SHUTDOWN WAIT_FOR_CLIENTS. */
  | { kind: 'wait-clients' }
  /** SIGTERM, SHUTDOWN: close everything and exit now. */
  | { kind: 'exit' };

/** One worker's answer to a gather (SHOW) request. */
export interface Part {
  index: number;
  pid: number;
  table: Table | null;
}

/** The primary's own figures per worker, for SHOW WORKERS. */
export interface WorkerInfo {
  index: number;
  pid: number;
  /** Client slots (max_client_conn) leased to the worker. */
  clientSlots: number;
  serverSlots: number;
  restarts: number;
  startedAt: number;
}

/** Server-slot request fields: the pool and the worker's view of its limits (0 = no limit). */
export interface SlotAsk {
  pool: string;
  db: string;
  user: string;
  /** pool_size alone (0 = no limit): a grant above it is a reserve_pool connection. */
  poolSize: number;
  poolMax: number;
  dbMax: number;
  userMax: number;
}

export type ToPrimary =
  | { t: 'ready' }
  /** More client slots (max_client_conn over all workers): up to `want`. Answered with `re` {ok, n}. */
  | { t: 'cl?'; id: number; want: number; max: number }
  /** Client slots given back. */
  | { t: 'cl-'; n: number }
  /** One server slot; `wait`: queue until one is free (else refused at once). Answered with `re` {ok}. */
  | ({ t: 'sv?'; id: number; wait: boolean } & SlotAsk)
  /** A server slot taken without asking (the pooler's own connections: auth_query, LISTEN). */
  | { t: 'sv+'; pool: string; db: string; user: string }
  /** A server slot is free (its connection closed); `surrendered`: it was asked back. */
  | { t: 'sv-'; pool: string; db: string; user: string; surrendered: boolean }
  /** The worker's queued requests for the pool are not needed any more: each is answered `re` {ok: false}. */
  | { t: 'sv~'; pool: string }
  /** A CancelRequest for a client of another worker. */
  | { t: 'cancel'; pid: number; key: number }
  /** SHOW: ask every worker for its rows. Answered with `re` {parts, workers}. */
  | { t: 'gather'; id: number; what: string }
  /** Run an Op on every worker. Answered with `re` {answers}. */
  | { t: 'bcast'; id: number; op: Op }
  /** The console's SHUTDOWN: the primary stops every worker. */
  | { t: 'shutdown'; how: 'immediate' | 'wait-for-servers' | 'wait-for-clients' }
  /** The answer to a `show` or `op` of the primary. */
  | { t: 'ans'; id: number; table?: Table | null; data?: Uint8Array | null; ok?: boolean }
  /** The answer to `reclaim`: the client slots given back. */
  | { t: 'reclaimed'; id: number; n: number };

export type ToWorker =
  | { t: 're'; id: number; ok?: boolean; n?: number; reserve?: boolean; parts?: Part[]; workers?: WorkerInfo[]; answers?: (Uint8Array | boolean | null)[] }
  /** Another worker needs client slots and none is free: give back the spare ones of the lease. */
  | { t: 'reclaim'; id: number }
  | { t: 'surrender'; pool: string; db: string; user: string; n: number; reset: boolean }
  | { t: 'evict'; db: string | null; user: string | null; except: string | null }
  | { t: 'cancel'; pid: number; key: number }
  | { t: 'show'; id: number; what: string }
  | { t: 'op'; id: number; op: Op };

/** The primary's key for a pool. */
export function poolKey(db: string, user: string): string {
  return `${db}\0${user}`;
}

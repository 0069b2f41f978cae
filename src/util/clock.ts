/* A cached millisecond clock, refreshed by the janitor tick and at the start of each I/O event batch. */

export const clock = {
  /** Milliseconds since the epoch, at most one janitor tick old. */
  now: Date.now(),
  refresh(): number {
    this.now = Date.now();
    return this.now;
  },
};

/** Microsecond-resolution monotonic time for statistics (wait/query/xact times). */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

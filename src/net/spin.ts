/* busy_poll_us: after I/O, the event loop keeps polling (epoll with a zero timeout) for a while instead of sleeping.
 *
 * A process that sleeps in epoll_wait and is woken by a reply pays for the wake-up (on a virtual machine, an idle
 * vCPU halted and resumed by the hypervisor); at one client that happens twice per query. While an Immediate is
 * pending, libuv polls without blocking, so a chain of Immediates keeps the process on its CPU and the reply is
 * read as soon as it arrives. The chain ends once `busyPollUs` pass without any I/O, so an idle pooler sleeps. */

import { performance } from 'node:perf_hooks';

/** Microseconds to keep polling after the last I/O (0 = off). One value per process: the last pooler configured sets it. */
let busyPollUs = 0;
/** Bumped by every read; the spinner compares it to see whether I/O happened since it last looked. */
let seq = 0;
let seenSeq = 0;
/** performance.now() when the spinner last saw I/O. */
let quietSince = 0;
let spinning = false;
/** Milliseconds, monotonic; replaced only by tests (setBusyPollClock). */
let now: () => number = () => performance.now();

export function setBusyPoll(us: number): void {
  busyPollUs = us;
}

/** A socket was read: keep polling for busyPollUs from now (hot path: a counter and a comparison when on). */
export function ioActivity(): void {
  if (busyPollUs === 0) return;
  seq++;
  if (!spinning) {
    spinning = true;
    seenSeq = seq;
    quietSince = now();
    setImmediate(spin);
  }
}

function spin(): void {
  if (seq !== seenSeq) {
    seenSeq = seq;
    quietSince = now();
    setImmediate(spin);
  } else if ((now() - quietSince) * 1000 < busyPollUs) {
    setImmediate(spin);
  } else {
    spinning = false;
  }
}

/** Tests: the clock the budget is measured with (milliseconds), or the real one again with no argument. */
export function setBusyPollClock(clock?: () => number): void {
  now = clock ?? (() => performance.now());
}

/** Whether the event loop is being kept polling now (for tests). */
export function busyPolling(): boolean {
  return spinning;
}

/* Hot-path socket writes: one native write per call, without the stream layer's per-write object and tick. */

import type { Socket } from 'node:net';

/**
 * A write request as the native stream expects it. The native write fills the shared state with whether the write
 * went asynchronous; only then does it keep the request (and the caller must keep the buffer alive until oncomplete).
 */
interface WriteReq {
  handle: unknown;
  oncomplete: ((this: WriteReq, status: number) => void) | null;
  async: boolean;
  bytes: number;
  buffer: Buffer | null;
  writer: SocketWriter | null;
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

interface StreamHandle {
  writeBuffer(req: WriteReq, data: Buffer): number;
}

/**
 * Node's stream binding (the one net.Socket.write ends in). Without it (another runtime, --throw-deprecation, or
 * PGTIDE_STREAM_WRITES=1 to compare), every write goes through socket.write().
 */
const binding: StreamWrapBinding | null = (() => {
  if (process.env.PGTIDE_STREAM_WRITES === '1') return null;
  try {
    const b = (process as unknown as { binding(name: string): unknown }).binding('stream_wrap') as Partial<StreamWrapBinding>;
    if (typeof b.WriteWrap !== 'function' || !(b.streamBaseState instanceof Int32Array) || typeof b.kLastWriteWasAsync !== 'number') return null;
    return b as StreamWrapBinding;
  } catch {
    return null;
  }
})();

export const FAST_WRITES = binding !== null;

function onComplete(this: WriteReq, status: number): void {
  const w = this.writer;
  this.writer = null;
  this.buffer = null;
  if (w !== null) w.completed(status);
}

/**
 * Writes to one socket. A write the kernel takes whole (the usual case) costs one native call and reuses one request
 * object; a write it cannot take at once is queued by libuv in order behind earlier ones, and `write` returns false
 * until it is done, when the owner's onWriterDrain runs (as 'drain' would). Anything the stream layer still holds (cork, an earlier
 * socket.write that is not out yet), TLS sockets, and sockets not open yet go through socket.write(), so bytes never
 * overtake each other.
 */
/** The request object for the next write: one serves all sockets until a write goes asynchronous and keeps it. */
let spareReq: WriteReq | null = null;

/** Who is told when queued writes are done. */
export interface WriterOwner {
  onWriterDrain(): void;
}

// ---- turn batching: small writes to clients go out together at the end of the event-loop turn ----
//
// A burst of replies written one by one, each as it comes, wakes a waiting client program once per reply: it
// runs on the other core, reads the one reply, and sleeps again until the next. Written together at the end of the
// turn, they wake it once. pgbench at 100 clients makes 40 % fewer poll calls per transaction that way, and needs
// a fifth less CPU (docs/benchmarks.md). The bytes are copied into one slab (they may come from a read buffer that
// is reused at once); a socket's batched bytes always go before anything else written to it.

/** Writes larger than this are not batched (the copy would cost more than the wake-up it saves). */
const BATCH_MAX_PIECE = 8192;
const SLAB_SIZE = 64 * 1024;
/** PGTIDE_BATCH=0 turns batching off (to compare). */
const BATCHING = process.env.PGTIDE_BATCH !== '0';

let slab: Buffer | null = null;
let slabUsed = 0;
/** The writers with batched bytes, in order, and where each one's bytes end in the slab (they start where the previous end). */
const batchWriters: SocketWriter[] = [];
const batchEnds: number[] = [];
let turnEndScheduled = false;

function onTurnEnd(): void {
  turnEndScheduled = false;
  flushBatch();
}

/** Write out everything batched, in order. */
function flushBatch(): void {
  const n = batchWriters.length;
  if (n === 0) return;
  const s = slab!;
  let start = 0;
  let held = false;
  for (let i = 0; i < n; i++) {
    const w = batchWriters[i]!;
    const end = batchEnds[i]!;
    w.batched = false;
    if (!w.sock.destroyed) {
      w.write(s.subarray(start, end));
      if (w.queued()) held = true; // libuv or the stream layer points into the slab until it is written
    }
    start = end;
  }
  batchWriters.length = 0;
  batchEnds.length = 0;
  slabUsed = 0;
  if (held) slab = null; // a fresh one next time; this one lives until its writes are done
}

/**
 * Writes to this socket must go through socket.write() (also when there is no native binding): bytes still in the
 * stream layer (they go first), not connected or not writable yet, or TLS.
 */
function streamOnly(sock: Socket): boolean {
  return sock.writableLength !== 0 || sock.connecting || !sock.writable || (sock as { encrypted?: boolean }).encrypted === true;
}

export class SocketWriter {
  /** Fast writes libuv has not finished yet (their buffers must not be reused). */
  private pending = 0;
  private drainHooked = false;
  /** Bytes of this socket wait in the turn's batch. */
  batched = false;

  constructor(
    readonly sock: Socket,
    private readonly owner: WriterOwner,
  ) {}

  /**
   * Like write(), but a small write to a socket that takes fast writes and has nothing queued waits (copied) until the
   * end of this event-loop turn, together with the other sockets' (see turn batching above). Returns true then.
   */
  writeSoon(data: Buffer): boolean {
    const len = data.length;
    const sock = this.sock;
    if (!BATCHING || len > BATCH_MAX_PIECE || this.pending > 0 || binding === null || streamOnly(sock)) {
      return this.write(data);
    }
    let s = slab;
    if (s === null || slabUsed + len > SLAB_SIZE) {
      flushBatch();
      s = slab ??= Buffer.allocUnsafeSlow(SLAB_SIZE);
    }
    s.set(data, slabUsed);
    slabUsed += len;
    const n = batchWriters.length;
    if (n > 0 && batchWriters[n - 1] === this) {
      batchEnds[n - 1] = slabUsed; // the same socket again: one write
    } else {
      batchWriters.push(this);
      batchEnds.push(slabUsed);
      this.batched = true;
    }
    if (!turnEndScheduled) {
      turnEndScheduled = true;
      setImmediate(onTurnEnd);
    }
    return true;
  }

  /** Write out this socket's batched bytes now (before the socket is written to another way, ended or destroyed). */
  flushSoon(): void {
    if (this.batched) flushBatch();
  }

  /** Like socket.write(data): false when the caller should wait for onWriterDrain before writing much more. */
  write(data: Buffer): boolean {
    if (this.batched) flushBatch();
    const sock = this.sock;
    const h = (sock as unknown as { _handle: StreamHandle | null })._handle;
    if (binding === null || h === null || streamOnly(sock)) {
      if (sock.write(data)) return true;
      if (!this.drainHooked) {
        // listened to only once the stream layer is full (idle connections carry no 'drain' listener)
        this.drainHooked = true;
        sock.on('drain', () => {
          if (this.pending === 0) this.owner.onWriterDrain();
        });
      }
      return false;
    }
    let req = spareReq;
    if (req === null) {
      req = new binding.WriteWrap();
      req.oncomplete = onComplete;
      req.async = false;
      req.bytes = 0;
      req.buffer = null;
      req.writer = null;
      spareReq = req;
    }
    req.handle = h;
    const err = h.writeBuffer(req, data);
    if (err !== 0) {
      req.handle = null;
      // like the stream layer: the error is reported on the next tick, not inside the caller's stack
      process.nextTick(() => {
        if (!sock.destroyed) sock.destroy(Object.assign(new Error(`write failed (${err})`), { errno: err }));
      });
      return true;
    }
    if (binding.streamBaseState[binding.kLastWriteWasAsync] === 0) {
      req.handle = null; // the shared request must not keep this socket's handle alive
      return true;
    }
    // libuv holds the rest of `data` and this request until it is written
    req.buffer = data;
    req.writer = this;
    spareReq = null;
    this.pending++;
    return false;
  }

  /** Bytes given to write() are not all out yet: a buffer they came from must not be reused. */
  queued(): boolean {
    return this.pending > 0 || this.sock.writableLength > 0;
  }

  /** libuv finished a queued fast write. */
  completed(status: number): void {
    this.pending--;
    const sock = this.sock;
    if (status < 0) {
      if (!sock.destroyed) sock.destroy(Object.assign(new Error(`write failed (${status})`), { errno: status }));
      return;
    }
    if (this.pending === 0 && !sock.destroyed) this.owner.onWriterDrain();
  }
}

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

export class SocketWriter {
  /** Fast writes libuv has not finished yet (their buffers must not be reused). */
  private pending = 0;
  private drainHooked = false;

  constructor(
    readonly sock: Socket,
    private readonly owner: WriterOwner,
  ) {}

  /** Like socket.write(data): false when the caller should wait for onWriterDrain before writing much more. */
  write(data: Buffer): boolean {
    const sock = this.sock;
    const h = (sock as unknown as { _handle: StreamHandle | null })._handle;
    if (binding === null || h === null || sock.writableLength !== 0 || sock.connecting || !sock.writable || (sock as { encrypted?: boolean }).encrypted) {
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

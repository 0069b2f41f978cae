/* Client sockets read through net's `onread` mode into one buffer shared by all of them, as server connections read
 * into theirs: no Readable stream on the read path, and no 64 KB allocation per read (by default Node reads each
 * chunk into a fresh ArrayBuffer, then shrinks it). Reads run one at a time on the one thread, so one buffer serves
 * every client. Each read's bytes are copied at once into a Buffer of their own size (from Node's small-buffer pool
 * under 4 KB): what the pooler keeps of a read (a held request, a write the kernel did not take at once) is never
 * overwritten by the next read, and every chunk handed on is its own, as with 'data' events.
 *
 * net.Server cannot give the sockets it accepts an `onread`. The accepted socket (pauseOnConnect: nothing has been
 * read yet) is switched to it in place: the two fields net.Socket's constructor sets for `onread` (found by their
 * symbols' names) and the handle's user buffer. Where that is not possible, the socket is left to 'data' events. */

import type net from 'node:net';

const READ_SIZE = 64 * 1024;
const shared = Buffer.allocUnsafeSlow(READ_SIZE);

/** A read's bytes, with `this` the socket (net calls the callback as the socket's method). */
export type ChunkHandler = (this: net.Socket, chunk: Buffer) => void;

type Slots = Record<symbol, unknown> & { _handle?: { useUserBuffer?: (b: Buffer) => void } | null };

let kBuffer: symbol | null | undefined;
let kBufferCb: symbol | null | undefined;

function findSymbols(sock: object): void {
  const syms = Object.getOwnPropertySymbols(sock);
  kBuffer = syms.find((s) => s.description === 'kBuffer') ?? null;
  kBufferCb = syms.find((s) => s.description === 'kBufferCb') ?? null;
}

/**
 * Switch an accepted, paused socket to reads through the shared buffer, each copied out and given to `onChunk`.
 * Returns false (nothing changed) when it cannot be done; either way the caller resumes the socket when it may be
 * read.
 */
export function adoptSocket(sock: net.Socket, onChunk: ChunkHandler): boolean {
  if (kBuffer === undefined) findSymbols(sock);
  const s = sock as unknown as Slots;
  const handle = s._handle;
  if (kBuffer === null || kBufferCb === null || !handle || typeof handle.useUserBuffer !== 'function') return false;
  if (s[kBuffer!] !== null || s[kBufferCb!] !== null) return false; // not the fields expected
  s[kBuffer!] = shared;
  s[kBufferCb!] = readerFor(onChunk);
  handle.useUserBuffer(shared);
  // only pause() and resume() start and stop the handle now. The Readable side never reads; marked as reading, its
  // own resume a tick later cannot start the handle again after a pause made in between
  const rs = (sock as unknown as { _readableState?: { reading: boolean } })._readableState;
  if (rs !== undefined) rs.reading = true;
  return true;
}

let readerHandler: ChunkHandler | null = null;
let reader: ((this: net.Socket, n: number, buf: Buffer) => boolean) | null = null;

/** The read callback for a handler, made once (no closure per socket). */
function readerFor(onChunk: ChunkHandler): (this: net.Socket, n: number, buf: Buffer) => boolean {
  if (reader === null || readerHandler !== onChunk) {
    readerHandler = onChunk;
    reader = function (this: net.Socket, n: number, buf: Buffer): boolean {
      const chunk = Buffer.allocUnsafe(n);
      buf.copy(chunk, 0, 0, n);
      onChunk.call(this, chunk);
      return true;
    };
  }
  return reader;
}

/* Incremental framing of typed protocol messages on one socket: headers are scanned, bodies are
 * handed to the owner only when it asks for them, everything else is streamed on as byte ranges
 * of the chunk it arrived in (no copies, no per-message allocation). */

export const enum Verdict {
  Forward = 0,
  Skip = 1,
}

export abstract class Framer {
  /** Partial message kept across chunks (a split header, or a split message whose body we need). */
  private accBuf: Buffer | null = null;
  private accLen = 0;
  /** Bytes the accumulated message needs in total; 5 while its header is incomplete. */
  private accNeed = 0;
  /** Bytes of a streamed message still to come, and whether they are dropped. */
  private remain = 0;
  private remainSkip = false;
  /** A handler sets this to have everything so far emitted, then act() called. */
  protected actionPending = false;
  /** Set when the owner has closed: processing stops at once. */
  protected stopped = false;
  /**
   * Set by onMessage to stop before the message it was given (it returns Skip): the bytes before it are emitted, and
   * onSuspend gets the message and the rest of the chunk, to be fed again later.
   */
  protected suspendPending = false;

  /** Whether the owner needs the whole message of this type (length word `length`) before deciding. */
  protected abstract wantBody(type: number, length: number): boolean;
  /** A whole message (buf[start..end) includes type and length). */
  protected abstract onMessage(type: number, buf: Buffer, start: number, end: number): Verdict;
  /** The header of a message that will be streamed. */
  protected abstract onHeader(type: number, length: number): Verdict;
  /** Forward bytes to the peer. */
  protected abstract emit(data: Buffer): void;
  /** Carry out what a handler asked for via actionPending. */
  protected abstract act(): void;
  /** What is left of the input once onMessage asked to stop before a message (suspendPending). */
  protected onSuspend(_rest: Buffer): void {}
  /** Largest length word accepted. */
  protected abstract maxMessage(): number;
  /** A length word that is impossible or too large: the owner closes the connection. */
  protected abstract onBadLength(type: number, length: number): void;

  /** True when no partial message is held (the connection is between messages). */
  protected atBoundary(): boolean {
    return this.accLen === 0 && this.remain === 0;
  }

  /** Drop any partial state (the connection is being reused or closed). */
  protected resetFraming(): void {
    this.accBuf = null;
    this.accLen = 0;
    this.accNeed = 0;
    this.remain = 0;
    this.remainSkip = false;
  }

  protected feed(chunk: Buffer): void {
    const len = chunk.length;
    let pos = 0;
    let run = 0;
    if (this.remain > 0) {
      const n = this.remain < len ? this.remain : len;
      this.remain -= n;
      pos = n;
      if (this.remainSkip) run = n;
      if (this.remain > 0) {
        if (run < pos) this.emit(run === 0 && pos === len ? chunk : chunk.subarray(run, pos));
        return;
      }
      if (this.actionPending) {
        // the handler of the message that just ended asked for an action: after its last bytes
        this.actionPending = false;
        if (run < pos) this.emit(chunk.subarray(run, pos));
        run = pos;
        this.act();
        if (this.stopped) return;
      }
    } else if (this.accLen > 0) {
      pos = this.fillAcc(chunk, 0);
      if (this.stopped) return;
      run = pos;
    }
    while (len - pos >= 5) {
      const type = chunk[pos]!;
      const mlen = chunk.readUInt32BE(pos + 1);
      if (mlen < 4 || mlen > this.maxMessage()) {
        if (run < pos) this.emit(chunk.subarray(run, pos));
        this.onBadLength(type, mlen);
        return;
      }
      const end = pos + 1 + mlen;
      if (this.wantBody(type, mlen)) {
        if (end > len) break;
        const v = this.onMessage(type, chunk, pos, end);
        if (this.stopped) return;
        if (this.suspendPending) {
          this.suspendPending = false;
          if (run < pos) this.emit(chunk.subarray(run, pos));
          this.onSuspend(chunk.subarray(pos));
          return;
        }
        if (v === Verdict.Skip) {
          if (run < pos) this.emit(chunk.subarray(run, pos));
          run = end;
        }
      } else {
        const v = this.onHeader(type, mlen);
        if (this.stopped) return;
        if (v === Verdict.Skip) {
          if (run < pos) this.emit(chunk.subarray(run, pos));
          run = end;
        }
        if (end > len) {
          this.remain = end - len;
          this.remainSkip = v === Verdict.Skip;
          pos = len;
          break;
        }
      }
      pos = end;
      if (this.actionPending) {
        this.actionPending = false;
        if (run < pos) this.emit(run === 0 && pos === len ? chunk : chunk.subarray(run, pos));
        run = pos;
        this.act();
        if (this.stopped) return;
      }
    }
    if (pos < len) {
      if (run < pos) this.emit(chunk.subarray(run, pos));
      this.startAcc(chunk, pos);
      return;
    }
    if (run < len) this.emit(run === 0 ? chunk : chunk.subarray(run, len));
  }

  private startAcc(chunk: Buffer, pos: number): void {
    const avail = chunk.length - pos;
    if (avail >= 5) {
      // whole header present, body split: we want this body (streamed ones never get here)
      const total = 1 + chunk.readUInt32BE(pos + 1);
      this.accBuf = Buffer.allocUnsafe(total);
      this.accNeed = total;
    } else {
      this.accBuf = Buffer.allocUnsafe(5);
      this.accNeed = 5;
    }
    chunk.copy(this.accBuf, 0, pos);
    this.accLen = avail;
  }

  /** Complete the accumulated message from chunk[pos..]; returns the new position. */
  private fillAcc(chunk: Buffer, pos: number): number {
    const len = chunk.length;
    let acc = this.accBuf!;
    let n = this.accNeed - this.accLen;
    if (n > len - pos) n = len - pos;
    chunk.copy(acc, this.accLen, pos, pos + n);
    this.accLen += n;
    pos += n;
    if (this.accLen < this.accNeed) return pos;
    if (this.accNeed === 5) {
      const type = acc[0]!;
      const mlen = acc.readUInt32BE(1);
      if (mlen < 4 || mlen > this.maxMessage()) {
        this.resetFraming();
        this.onBadLength(type, mlen);
        return len;
      }
      const total = 1 + mlen;
      if (!this.wantBody(type, mlen)) {
        const v = this.onHeader(type, mlen);
        this.resetFraming();
        if (this.stopped) return len;
        if (v === Verdict.Forward) this.emit(acc);
        let rest = total - 5;
        let m = rest < len - pos ? rest : len - pos;
        if (m > 0 && v === Verdict.Forward) this.emit(chunk.subarray(pos, pos + m));
        pos += m;
        rest -= m;
        this.remain = rest;
        this.remainSkip = v === Verdict.Skip;
        if (rest === 0 && this.actionPending) {
          this.actionPending = false;
          this.act();
        }
        return pos;
      }
      if (total > 5) {
        const grown = Buffer.allocUnsafe(total);
        acc.copy(grown, 0, 0, 5);
        this.accBuf = acc = grown;
        this.accNeed = total;
        return this.fillAcc(chunk, pos);
      }
    }
    const type = acc[0]!;
    this.resetFraming();
    const v = this.onMessage(type, acc, 0, acc.length);
    if (this.stopped) return len;
    if (this.suspendPending) {
      this.suspendPending = false;
      this.onSuspend(pos < len ? Buffer.concat([acc, chunk.subarray(pos)]) : acc);
      return len;
    }
    if (v === Verdict.Forward) this.emit(acc);
    if (this.actionPending) {
      this.actionPending = false;
      this.act();
    }
    return pos;
  }
}

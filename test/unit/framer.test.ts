/* The framer must give the same result however the byte stream is split into chunks. */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Framer, Verdict } from '../../src/net/framer.js';

function msg(type: string, body: Buffer | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeUInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

/** Wants bodies of 'Z' and 'S', skips 'N', streams the rest; 'X' triggers an action. */
class Probe extends Framer {
  out: Buffer[] = [];
  events: string[] = [];
  max = 1 << 20;
  bad: number[] = [];

  push(chunk: Buffer): void {
    this.feed(chunk);
  }
  protected wantBody(type: number): boolean {
    return type === 0x5a || type === 0x53;
  }
  protected onMessage(type: number, buf: Buffer, start: number, end: number): Verdict {
    this.events.push(`${String.fromCharCode(type)}:${buf.toString('latin1', start + 5, end)}`);
    return type === 0x53 ? Verdict.Skip : Verdict.Forward;
  }
  protected onHeader(type: number, length: number): Verdict {
    this.events.push(`h${String.fromCharCode(type)}${length}`);
    if (type === 0x58) {
      this.actionPending = true;
      return Verdict.Skip;
    }
    return type === 0x4e ? Verdict.Skip : Verdict.Forward;
  }
  protected emit(data: Buffer): void {
    this.out.push(Buffer.from(data));
  }
  protected act(): void {
    this.events.push(`act@${Buffer.concat(this.out).length}`);
  }
  protected maxMessage(): number {
    return this.max;
  }
  protected onBadLength(_type: number, length: number): void {
    this.bad.push(length);
    this.stopped = true;
  }
}

const stream = Buffer.concat([
  msg('D', 'row-one'),
  msg('N', 'notice dropped'),
  msg('S', 'TimeZone\0UTC\0'),
  msg('D', Buffer.alloc(300, 7)),
  msg('Z', 'I'),
  msg('X', ''),
  msg('C', 'SELECT 1'),
]);
const forwarded = Buffer.concat([msg('D', 'row-one'), msg('D', Buffer.alloc(300, 7)), msg('Z', 'I'), msg('C', 'SELECT 1')]);

function run(chunks: Buffer[]): Probe {
  const p = new Probe();
  for (const c of chunks) p.push(c);
  return p;
}

test('one chunk: forwards, skips and hands bodies over', () => {
  const p = run([stream]);
  assert.deepEqual(Buffer.concat(p.out), forwarded);
  assert.deepEqual(p.events, ['hD11', 'hN18', 'S:TimeZone\0UTC\0', 'hD304', 'Z:I', 'hX4', `act@${forwarded.length - msg('C', 'SELECT 1').length}`, 'hC12']);
});

test('every split point in two chunks gives the same output and events', () => {
  const ref = run([stream]);
  for (let i = 1; i < stream.length; i++) {
    const p = run([stream.subarray(0, i), stream.subarray(i)]);
    assert.deepEqual(Buffer.concat(p.out), forwarded, `split at ${i}`);
    assert.deepEqual(p.events, ref.events, `split at ${i}`);
  }
});

test('byte-at-a-time feeding gives the same output', () => {
  const ref = run([stream]);
  const chunks: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) chunks.push(stream.subarray(i, i + 1));
  const p = run(chunks);
  assert.deepEqual(Buffer.concat(p.out), forwarded);
  assert.deepEqual(p.events, ref.events);
});

test('random three-way splits', () => {
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let k = 0; k < 500; k++) {
    const a = 1 + rnd(stream.length - 2);
    const b = a + 1 + rnd(stream.length - a - 1);
    const p = run([stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)]);
    assert.deepEqual(Buffer.concat(p.out), forwarded, `splits ${a},${b}`);
  }
});

test('a length word below 4 or above the maximum stops the stream', () => {
  const bad = Buffer.from([0x44, 0, 0, 0, 2]);
  const p = run([Buffer.concat([msg('D', 'ok'), bad, msg('D', 'never')])]);
  assert.deepEqual(p.bad, [2]);
  assert.deepEqual(Buffer.concat(p.out), msg('D', 'ok'));
  const q = new Probe();
  q.max = 100;
  q.push(msg('D', Buffer.alloc(200)));
  assert.deepEqual(q.bad, [204]);
  assert.equal(q.out.length, 0);
});

test('a bad length split across chunks is still caught', () => {
  const p = new Probe();
  p.push(Buffer.from([0x44, 0, 0]));
  p.push(Buffer.from([0, 1, 0x44]));
  assert.deepEqual(p.bad, [1]);
});

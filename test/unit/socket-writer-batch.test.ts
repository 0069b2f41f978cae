// Turn batching in src/net/socket-writer.ts, on real loopback sockets: small writes made with writeSoon() during one
// event-loop turn go out at its end, one native write per socket run; whatever else is written to a socket
// (write(), a large piece) never overtakes its batched bytes; more than a slab's worth in one turn, a socket
// destroyed with bytes batched, and a socket whose peer stops reading all keep every byte in order.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { SocketWriter } from '../../src/net/socket-writer.js';

interface Pair {
  w: SocketWriter;
  server: net.Socket;
  client: net.Socket;
  got: () => Buffer;
  ended: Promise<void>;
}

/** `n` connected loopback socket pairs; the server side of each wrapped in a SocketWriter, the client side collecting. */
async function pairs(n: number): Promise<{ ps: Pair[]; close: () => void }> {
  const accepted: net.Socket[] = [];
  const srv = net.createServer((s) => accepted.push(s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  const ps: Pair[] = [];
  for (let i = 0; i < n; i++) {
    const client = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => client.once('connect', r));
    while (accepted.length <= i) await new Promise((r) => setImmediate(r));
    const server = accepted[i]!;
    const chunks: Buffer[] = [];
    client.on('data', (d: Buffer) => chunks.push(d));
    const ended = new Promise<void>((r) => client.on('close', () => r()));
    client.on('error', () => {});
    server.on('error', () => {});
    ps.push({ w: new SocketWriter(server, { onWriterDrain: () => {} }), server, client, got: () => Buffer.concat(chunks), ended });
  }
  return { ps, close: () => srv.close() };
}

/** Counts the native writes made on a socket's handle. */
function countWrites(s: net.Socket): () => number {
  const h = (s as unknown as { _handle: { writeBuffer: (...a: unknown[]) => number } })._handle;
  const orig = h.writeBuffer;
  let n = 0;
  h.writeBuffer = function (this: unknown, ...a: unknown[]) {
    n++;
    return orig.apply(this, a);
  };
  return () => n;
}

const turn = () => new Promise((r) => setImmediate(r));

test('writes of one turn go out at its end, one native write per socket; order kept against write() and large pieces', async () => {
  const { ps, close } = await pairs(3);
  const counts = ps.map((p) => countWrites(p.server));
  const expect = ps.map(() => [] as string[]);
  // one socket alone, 100 small writes: nothing is written during the turn, one write at its end
  for (let i = 0; i < 100; i++) {
    assert.equal(ps[0]!.w.writeSoon(Buffer.from(`a${i};`)), true);
    expect[0]!.push(`a${i};`);
  }
  assert.equal(counts[0]!(), 0, 'nothing written before the turn ends');
  await turn();
  assert.equal(counts[0]!(), 1, 'one native write for the whole turn');

  // interleaved sockets, a direct write and a large piece in between: each socket's bytes in the order written
  const big = 'B'.repeat(20_000);
  for (let i = 0; i < 3000; i++) { // about 80 KB of small pieces: more than one slab
    for (let k = 0; k < 3; k++) {
      const s = `${k}:${i};`;
      ps[k]!.w.writeSoon(Buffer.from(s));
      expect[k]!.push(s);
    }
    if (i === 500) {
      ps[1]!.w.write(Buffer.from('DIRECT;'));
      expect[1]!.push('DIRECT;');
    }
    if (i === 900) {
      ps[2]!.w.writeSoon(Buffer.from(big)); // too large to batch: written at once, after what was batched
      expect[2]!.push(big);
    }
  }
  await turn();
  for (const p of ps) p.server.end();
  await Promise.all(ps.map((p) => p.ended));
  ps.forEach((p, k) => assert.equal(p.got().toString(), expect[k]!.join(''), `socket ${k}: every byte, in order`));
  close();
});

test('a socket destroyed with bytes batched is skipped; the others get theirs', async () => {
  const { ps, close } = await pairs(2);
  ps[0]!.w.writeSoon(Buffer.from('lost'));
  ps[1]!.w.writeSoon(Buffer.from('kept'));
  ps[0]!.server.destroy();
  await turn();
  ps[1]!.server.end();
  await Promise.all(ps.map((p) => p.ended));
  assert.equal(ps[1]!.got().toString(), 'kept');
  assert.equal(ps[0]!.got().length, 0);
  close();
});

test('a peer that stops reading: its batched bytes wait in libuv (the slab is not reused under them) and all arrive in order; a neighbour goes on', { timeout: 30_000 }, async () => {
  const { ps, close } = await pairs(2);
  const [p, q] = [ps[0]!, ps[1]!];
  p.client.pause();
  const expect: string[] = [];
  const expectQ: string[] = [];
  let full = false;
  // fill the kernel buffers: a full socket makes writeSoon() answer false; later pieces must not overtake, and the
  // neighbour's batched pieces of later turns must not land in the slab memory libuv still writes from
  for (let round = 0; round < 400 && !full; round++) {
    for (let i = 0; i < 200; i++) {
      const s = `${round}.${i}:${'x'.repeat(100)};`;
      if (!p.w.writeSoon(Buffer.from(s))) full = true;
      expect.push(s);
    }
    await turn();
  }
  assert.ok(full, 'the socket filled up');
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 50; i++) {
      const s = `n${round}.${i}:${'z'.repeat(1200)};`; // 60 KB a turn: over all of the slab
      q.w.writeSoon(Buffer.from(s));
      expectQ.push(s);
    }
    const s = `tail${round};`;
    p.w.writeSoon(Buffer.from(s));
    expect.push(s);
    await turn();
  }
  p.client.resume();
  await new Promise<void>((r) => {
    const check = () => (p.w.queued() ? setTimeout(check, 20) : r());
    check();
  });
  p.server.end();
  q.server.end();
  await Promise.all([p.ended, q.ended]);
  assert.equal(p.got().toString(), expect.join(''));
  assert.equal(q.got().toString(), expectQ.join(''));
  close();
});

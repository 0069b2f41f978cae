// Client sockets read through one shared buffer (src/net/adopt.ts), on real loopback sockets: every chunk handed on is
// a copy of its own, so chunks kept by one socket (a held request) survive reads of the others into the same buffer;
// a paused socket delivers nothing until it is resumed, and nothing is lost; the end of the stream still closes it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { adoptSocket } from '../../src/net/adopt.js';

const kGot = Symbol('got');
type Collecting = net.Socket & { [kGot]: Buffer[] };

function collect(this: net.Socket, chunk: Buffer): void {
  (this as Collecting)[kGot].push(chunk);
}

/** `n` accepted sockets, adopted, each with the client socket that talks to it. */
async function adoptedPairs(n: number): Promise<{ pairs: { server: Collecting; client: net.Socket }[]; close: () => void }> {
  const accepted: net.Socket[] = [];
  const srv = net.createServer({ pauseOnConnect: true }, (s) => accepted.push(s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  const pairs: { server: Collecting; client: net.Socket }[] = [];
  for (let i = 0; i < n; i++) {
    const client = net.connect(port, '127.0.0.1');
    client.on('error', () => {});
    await new Promise<void>((r) => client.once('connect', r));
    while (accepted.length <= i) await new Promise((r) => setImmediate(r));
    const server = accepted[i]! as Collecting;
    server[kGot] = [];
    server.on('error', () => {});
    assert.equal(adoptSocket(server, collect), true, 'Node 20 sockets can be adopted');
    server.resume();
    pairs.push({ server, client });
  }
  return { pairs, close: () => srv.close() };
}

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), what);
}

const total = (s: Collecting) => s[kGot].reduce((n, c) => n + c.length, 0);

test('chunks read into the shared buffer are copies: what one socket keeps is not overwritten by later reads', async () => {
  const { pairs, close } = await adoptedPairs(3);
  try {
    for (let round = 0; round < 20; round++) {
      for (const [i, p] of pairs.entries()) p.client.write(Buffer.alloc(50 + i, 0x41 + ((round + i) % 26)));
      await until(`round ${round} read`, () => pairs.every((p, i) => total(p.server) === (round + 1) * (50 + i)));
    }
    // every chunk kept still holds what was sent: one letter per round and socket
    for (const [i, p] of pairs.entries()) {
      const all = Buffer.concat(p.server[kGot]);
      for (let round = 0; round < 20; round++) {
        const part = all.subarray(round * (50 + i), (round + 1) * (50 + i));
        assert.ok(part.every((b) => b === 0x41 + ((round + i) % 26)), `socket ${i}, round ${round}`);
      }
    }
    // a read larger than one chunk of the shared buffer arrives whole, in order
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    const before = total(pairs[0]!.server);
    pairs[0]!.client.write(big);
    await until('the large write read', () => total(pairs[0]!.server) === before + big.length);
    assert.ok(Buffer.concat(pairs[0]!.server[kGot]).subarray(before).equals(big));
  } finally {
    for (const p of pairs) p.client.destroy();
    close();
  }
});

test('a paused adopted socket delivers nothing until resumed, then everything; its peer closing closes it', async () => {
  const { pairs, close } = await adoptedPairs(1);
  const { server, client } = pairs[0]!;
  try {
    server.pause();
    client.write('held back');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(total(server), 0);
    assert.equal(server.isPaused(), true);
    server.resume();
    await until('resumed read', () => total(server) === 9);
    assert.equal(Buffer.concat(server[kGot]).toString(), 'held back');
    const closed = new Promise<void>((r) => server.once('close', () => r()));
    server.on('end', () => server.end());
    client.end();
    await closed;
  } finally {
    client.destroy();
    close();
  }
});

// Framer micro-benchmark (`npm run bench:framer`): ns per chunk and per message for the reply of a pgbench select-only
// transaction, whole and split at every byte boundary, and for a 100-row result streamed in 64 KB chunks.

import { Framer, Verdict } from '../src/net/framer.js';

const BE = { DataRow: 0x44, RowDescription: 0x54, CommandComplete: 0x43, ReadyForQuery: 0x5a } as const;

function msg(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h[0] = type;
  h.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}

/** What a server sends for `SELECT abalance FROM pgbench_accounts WHERE aid = …` (simple protocol). */
const selectReply = Buffer.concat([
  msg(BE.RowDescription, Buffer.concat([Buffer.from([0, 1]), Buffer.from('abalance\0'), Buffer.alloc(18)])),
  msg(BE.DataRow, Buffer.from([0, 1, 0, 0, 0, 1, 0x30])),
  msg(BE.CommandComplete, Buffer.from('SELECT 1\0')),
  msg(BE.ReadyForQuery, Buffer.from('I')),
]);

function bigResult(rows: number): Buffer {
  const parts = [msg(BE.RowDescription, Buffer.concat([Buffer.from([0, 1]), Buffer.from('v\0'), Buffer.alloc(18)]))];
  const v = Buffer.alloc(500, 0x78);
  for (let i = 0; i < rows; i++) parts.push(msg(BE.DataRow, Buffer.concat([Buffer.from([0, 1, 0, 0, 0x01, 0xf4]), v])));
  parts.push(msg(BE.CommandComplete, Buffer.from(`SELECT ${rows}\0`)), msg(BE.ReadyForQuery, Buffer.from('I')));
  return Buffer.concat(parts);
}

/** Like the server side of a connection: bodies wanted for ReadyForQuery only, everything else streamed. */
class Counting extends Framer {
  messages = 0;
  bytes = 0;
  protected wantBody(type: number): boolean {
    return type === BE.ReadyForQuery;
  }
  protected onMessage(): Verdict {
    this.messages++;
    return Verdict.Forward;
  }
  protected onHeader(): Verdict {
    this.messages++;
    return Verdict.Forward;
  }
  protected emit(data: Buffer): void {
    this.bytes += data.length;
  }
  protected act(): void {}
  protected maxMessage(): number {
    return 0x7fffffff;
  }
  protected onBadLength(): void {
    throw new Error('bad length');
  }
  push(chunk: Buffer): void {
    this.feed(chunk);
  }
}

function run(label: string, chunks: Buffer[], msgsPerRound: number, rounds: number): void {
  const f = new Counting();
  for (let i = 0; i < Math.min(rounds, 20_000); i++) for (const c of chunks) f.push(c); // warm-up
  f.messages = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) for (const c of chunks) f.push(c);
  const ns = Number(process.hrtime.bigint() - t0);
  if (f.messages !== msgsPerRound * rounds) throw new Error(`${label}: counted ${f.messages} messages, expected ${msgsPerRound * rounds}`);
  const perChunk = ns / (rounds * chunks.length);
  const perMsg = ns / f.messages;
  console.log(`| ${label} | ${chunks.length} | ${perChunk.toFixed(0)} | ${perMsg.toFixed(1)} |`);
}

console.log('| input | chunks per round | ns per chunk | ns per message |');
console.log('| --- | --- | --- | --- |');
run('select-only reply, one chunk', [selectReply], 4, 2_000_000);
const splits: Buffer[] = [];
for (let i = 1; i < selectReply.length; i++) splits.push(selectReply.subarray(0, i), selectReply.subarray(i));
run('select-only reply, split at every byte', splits, 4 * (selectReply.length - 1), 20_000);
const big = bigResult(1000);
const chunks: Buffer[] = [];
for (let off = 0; off < big.length; off += 65536) chunks.push(big.subarray(off, Math.min(off + 65536, big.length)));
run('1000 rows of 500 bytes in 64 KB chunks', chunks, 1003, 2_000);

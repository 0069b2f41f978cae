// busy_poll_us (src/net/spin.ts): after a read, the event loop keeps polling (a chain of Immediates) until the
// setting's microseconds pass without another read, then sleeps again; at 0 it never polls.

import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { busyPolling, ioActivity, setBusyPoll, setBusyPollClock } from '../../src/net/spin.js';

/** Resolves once the spinner has stopped; fails after `ms`. */
async function stopped(ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (busyPolling()) {
    if (Date.now() > deadline) throw new Error(`still polling after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Event-loop turns from now until the spinner has stopped (checked once per turn); fails after `limit` turns. */
function turnsUntilStopped(limit: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let turns = 0;
    const tick = () => {
      if (!busyPolling()) resolve(turns);
      else if (++turns > limit) reject(new Error(`still polling after ${limit} turns`));
      else setImmediate(tick);
    };
    setImmediate(tick);
  });
}

afterEach(async () => {
  setBusyPollClock();
  setBusyPoll(0);
  await stopped(2000);
});

test('busy_poll_us = 0 (the default): a read starts no polling', () => {
  setBusyPoll(0);
  ioActivity();
  assert.equal(busyPolling(), false);
});

test('busy_poll_us > 0: a read starts polling, which ends by itself once no read comes', async () => {
  setBusyPoll(2000);
  ioActivity();
  assert.equal(busyPolling(), true);
  ioActivity(); // a second read while polling starts nothing more
  assert.equal(busyPolling(), true);
  await stopped(2000);
  // and a later read starts it again
  ioActivity();
  assert.equal(busyPolling(), true);
  await stopped(2000);
});

test('reads while polling keep it going: it ends only after the budget passes with none', async () => {
  setBusyPoll(1000); // 1 ms
  // reads every turn for 20 ms: polling must last at least that long
  const until = Date.now() + 20;
  let reads = 0;
  let gaps = 0;
  await new Promise<void>((resolve) => {
    const read = () => {
      // each later read must find it still polling (the first turn may come after the budget: the test runner's own
      // work can run between the first read and it)
      if (reads > 1 && !busyPolling()) gaps++;
      ioActivity();
      reads++;
      if (Date.now() < until) setImmediate(read);
      else resolve();
    };
    read();
  });
  assert.ok(reads > 1);
  assert.equal(gaps, 0, 'polling stopped although reads kept coming');
  await stopped(2000);
});

test('setting it to 0 while polling lets the running chain end at once', async () => {
  setBusyPoll(1_000_000); // 1 s: would poll long after the last read
  ioActivity();
  setBusyPoll(0);
  const turns = await turnsUntilStopped(100_000);
  assert.ok(turns <= 3, `polled ${turns} turns after being turned off`);
});

test('the budget counts from the last read, not the first (a clock the test moves)', async () => {
  let ms = 0;
  setBusyPollClock(() => ms);
  setBusyPoll(1000); // 1 ms
  const turns = async (n: number) => {
    for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
  };
  ioActivity(); // t = 0
  await turns(3);
  ms = 0.9;
  ioActivity(); // t = 0.9 ms: the budget starts again
  await turns(3);
  ms = 1.5; // 1.5 ms after the first read, 0.6 ms after the last
  await turns(3);
  assert.equal(busyPolling(), true, 'polling ended one budget after the first read, not the last');
  ms = 2.0; // 1.1 ms after the last read
  assert.ok((await turnsUntilStopped(10)) <= 1, 'polling went on past the budget after the last read');
});

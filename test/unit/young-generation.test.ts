// The young generation's growth policy (src/util/heap.ts): the V8 flag it sets on each change, with a fake clock.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GROWTH_HOLD_MS, QUEUE_CLIENTS, YoungGeneration, YOUNG_GENERATION_FLAG, YOUNG_GROWTH_FLAG } from '../../src/util/heap.js';

function policy(): { y: YoungGeneration; flags: string[] } {
  const flags: string[] = [];
  return { y: new YoungGeneration((f) => flags.push(f)), flags };
}

test('before tuneHeap takes control, ticks change nothing', () => {
  const { y, flags } = policy();
  assert.equal(y.tick(0, 1000), null);
  assert.equal(y.tick(10_000, 0), null);
  assert.deepEqual(flags, []);
});

test('a queue lets it grow; it stops growing once no queue was seen for the hold time', () => {
  const { y, flags } = policy();
  y.takeControl();
  assert.equal(y.tick(0, 0), null, 'kept small from the start: no flag to set');
  assert.equal(y.tick(333, QUEUE_CLIENTS - 1), null, 'a few waiting clients are not a queue');
  assert.equal(y.tick(666, QUEUE_CLIENTS), true);
  assert.deepEqual(flags, [YOUNG_GROWTH_FLAG]);
  assert.equal(y.tick(999, 500), null, 'already growing');
  assert.equal(y.tick(999 + GROWTH_HOLD_MS - 1, 0), null, 'within the hold time');
  assert.equal(y.tick(999 + GROWTH_HOLD_MS, 0), false);
  assert.deepEqual(flags, [YOUNG_GROWTH_FLAG, YOUNG_GENERATION_FLAG]);
  assert.equal(y.tick(20_000, 0), null);
  assert.equal(y.tick(20_333, QUEUE_CLIENTS), true, 'a new queue: growing again');
  assert.deepEqual(flags, [YOUNG_GROWTH_FLAG, YOUNG_GENERATION_FLAG, YOUNG_GROWTH_FLAG]);
});

// The primary's account of global limits (workers > 1): client slot leases, server slots per pool/database/user, queued
// requests granted fairly, slots asked back from workers that hold more than their share, a dead worker's slots freed.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEMAND_MEMORY_MS, SlotTable, type SlotRequest } from '../../src/cluster/slots.js';

const P = { pool: 'app\0app', db: 'app', user: 'app' };
let nextId = 1;
const req = (worker: number, limits: Partial<SlotRequest> = {}): SlotRequest => ({
  worker, id: nextId++, ...P, poolSize: 3, poolMax: 3, dbMax: 0, userMax: 0, ...limits,
});

describe('SlotTable', () => {
  it('leases client slots (max_client_conn) to workers, never more than max in all', () => {
    const t = new SlotTable();
    assert.equal(t.leaseClients(1, 3, 5), 3);
    assert.equal(t.leaseClients(2, 3, 5), 2, 'only two left');
    assert.equal(t.leaseClients(2, 1, 5), 0);
    assert.deepEqual(t.clientHolders(2), [1], 'who could give some back');
    t.returnClients(1, 2);
    assert.equal(t.leasedBy(1), 1);
    assert.equal(t.leaseClients(2, 4, 5), 2);
    t.returnClients(1, 9); // more than it has: only what it has
    assert.equal(t.leasedBy(1), 0);
    assert.equal(t.clientsLeased, 4);
    assert.equal(t.leaseClients(1, 5, 3), 0, 'max lowered below what is leased: nothing more');
    t.workerGone(2);
    assert.equal(t.clientsLeased, 0);
  });

  it('grants up to the pool size over all workers, queues waiting requests, refuses top-ups', () => {
    const t = new SlotTable();
    assert.equal(t.ask(req(1), true, 0), 'granted');
    assert.equal(t.ask(req(2), true, 0), 'granted');
    assert.equal(t.ask(req(1), true, 0), 'granted');
    assert.equal(t.poolTotal(P.pool), 3);
    assert.equal(t.ask(req(2), false, 0), 'refused');
    const waiting = req(2);
    assert.equal(t.ask(waiting, true, 0), 'queued');
    assert.deepEqual(t.release(1, P), [waiting], 'the freed slot goes to the queued request');
    assert.equal(t.heldBy(2, P.pool), 2);
    assert.equal(t.heldBy(1, P.pool), 1);
  });

  it('a freed slot goes to the queued worker holding the fewest slots of the pool', () => {
    const t = new SlotTable();
    for (const w of [1, 1, 2]) t.ask(req(w), true, 0);
    const first = req(1);
    const second = req(3);
    t.ask(first, true, 0);
    t.ask(second, true, 0);
    assert.deepEqual(t.release(2, P).map((r) => r.worker), [3], 'worker 3 holds none, worker 1 holds two');
    assert.deepEqual(t.withdraw(1, P.pool), [first]);
    assert.deepEqual(t.queued, []);
  });

  it('asks slots back: from a worker that does not want the pool first, then from one above its share, never twice', () => {
    const t = new SlotTable();
    // worker 1 holds all three slots and wants more; worker 2 asked for one long ago
    t.ask(req(2), true, 0);
    t.ask(req(1), true, 0);
    t.ask(req(1), true, 0);
    const now = 10 * DEMAND_MEMORY_MS;
    t.ask(req(1), true, now); // queued: worker 1 wants a fourth
    // worker 2 no longer wants the pool: its slot is asked back for worker 1
    assert.deepEqual(t.surrenders(now).map((s) => [s.worker, s.n, s.reset]), [[2, 1, false]]);
    assert.deepEqual(t.surrenders(now), [], 'already asked: not asked again');
    // worker 2 gives it back (its server closed): worker 1 gets it, nothing is left to ask
    assert.deepEqual(t.release(2, P, true).map((r) => r.worker), [1]);
    assert.deepEqual(t.surrenders(now), []);
    // now worker 2 wants two while worker 1 holds all three: fair share is ceil(3 / 2) = 2, so one comes back
    t.ask(req(2), true, now);
    t.ask(req(2), true, now);
    assert.deepEqual(t.surrenders(now).map((s) => [s.worker, s.n]), [[1, 1]]);
    assert.deepEqual(t.release(1, P, true).map((r) => r.worker), [2]);
    assert.deepEqual(t.surrenders(now), [], 'worker 1 is at its share (2), worker 2 below it (1)');
    // worker 2 no longer needs its last queued request
    assert.equal(t.withdraw(2, P.pool).length, 1);
    assert.deepEqual(t.surrenders(now), []);
  });

  it('ends a surrender when nobody waits any more', () => {
    const t = new SlotTable();
    for (let i = 0; i < 3; i++) t.ask(req(1), true, 0);
    t.ask(req(2), true, 5 * DEMAND_MEMORY_MS);
    const now = 5 * DEMAND_MEMORY_MS;
    assert.deepEqual(t.surrenders(now).map((s) => [s.worker, s.n, s.reset]), [[1, 1, false]]);
    t.withdraw(2, P.pool);
    assert.deepEqual(t.surrenders(now).map((s) => [s.worker, s.n, s.reset]), [[1, 0, true]]);
  });

  it('max_db_connections: a request held back by the database asks the holders to evict an idle server', () => {
    const t = new SlotTable();
    const other = { pool: 'app\0bob', db: 'app', user: 'bob' };
    t.ask({ ...req(1, { dbMax: 2 }), ...other }, true, 0);
    t.ask({ ...req(2, { dbMax: 2 }), ...other }, true, 0);
    const r = req(2, { dbMax: 2 });
    assert.equal(t.ask(r, true, 0), 'queued');
    assert.deepEqual(t.surrenders(0), [], 'not held back by its own pool');
    assert.deepEqual(t.evictions().sort((a, b) => a.worker - b.worker), [
      { worker: 1, db: 'app', user: null, except: null },
      { worker: 2, db: 'app', user: null, except: P.pool },
    ]);
    assert.deepEqual(t.release(1, other), [r]);
    assert.deepEqual(t.evictions(), []);
  });

  it('a worker that is gone frees its slots and its queued requests', () => {
    const t = new SlotTable();
    for (let i = 0; i < 3; i++) t.ask(req(1), true, 0);
    t.ask(req(1), true, 0);
    const waiting = req(2);
    t.ask(waiting, true, 0);
    assert.deepEqual(t.workerGone(1), [waiting]);
    assert.equal(t.poolTotal(P.pool), 1);
    assert.equal(t.queued.length, 0);
    assert.equal(t.serversOf(1), 0);
    // the pooler's own connections are counted without asking
    t.take(3, P);
    t.take(3, P);
    assert.equal(t.ask(req(2), false, 0), 'refused');
  });
});

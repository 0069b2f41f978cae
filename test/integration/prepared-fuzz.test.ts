// Extended protocol through transaction pooling, checked against PostgreSQL itself: random batches of Parse, Bind,
// Describe, Execute, Close, Flush and Sync (with simple queries, transaction blocks and DEALLOCATE ALL between them;
// some batches sent in two parts, the second after the replies to the first may have come; some pipelined, sent
// together with the next before any reply) are sent by 8 clients at once through pgtide, whose clients share 2
// servers that keep at most 3 statements each, and one by one straight to PostgreSQL on a connection of their own.
// Every client must see exactly the replies its own session gives, message for message. The documented differences
// (docs/transaction-mode.md) are kept out of the programs or normalised: a statement's server-side name in error
// texts, a Parse-only batch of invalid SQL, 42P05 closing the connection, a Bind's own error in a failed transaction
// block. FUZZ_SEED=<n> runs other programs; FUZZ_DUMP=<client> prints one client's batches and replies up to the
// first difference.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sharedPostgres } from '../harness/postgres.js';
import { pgtideWith, track } from '../harness/pgtide.js';
import { consoleRows, rng, stillServes, waitFor } from '../harness/util.js';
import { bind, closeMsg, dataRowText, describe, errorFields, execute, finishLogin, flush, parse, query, Raw, rawLogin, startupPacket, sync } from '../harness/raw.js';

/** Query texts and how many parameters each takes. None is invalid SQL (see the header). */
const QUERIES: { sql: string; params: number; types?: number[] }[] = [
  { sql: 'select $1::int + 1 as x', params: 1 },
  { sql: 'select $1::text || $2::text as y, 7 as z', params: 2 },
  { sql: 'select 1 as one', params: 0 },
  { sql: 'select g from generate_series(1, $1::int) as g', params: 1 },
  { sql: 'select 1/0 as boom', params: 0 },
  { sql: 'select $1 as untyped', params: 1, types: [23] },
  { sql: 'select current_setting($1) as s', params: 1 },
];
const NAMES = ['', 'a', 'b', 'c', 'd', 'e'];
const PORTALS = ['', 'p'];

interface Step {
  /** What the batch is, for the failure message. */
  text: string;
  bytes: Buffer;
  /** Sent in two writes a few milliseconds apart, split after a Flush at this offset (replies to the first part may come first). */
  split?: number;
  /** Sent together with the batch after it, before reading any reply (pipelined). */
  piped?: boolean;
}

/** One client's program: a list of batches, each ending where PostgreSQL answers ReadyForQuery. */
function program(seed: number, batches: number): Step[] {
  const rand = rng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;
  // the query each name was last parsed with, as far as the program knows (a failed batch may have undone it)
  const known = new Map<string, number>();
  const steps: Step[] = [];
  const params = (n: number): string[] => Array.from({ length: n }, (_, i) => (i === 0 && rand() < 0.7 ? String(1 + Math.floor(rand() * 4)) : `v${Math.floor(rand() * 100)}`));
  for (let s = 0; s < batches; s++) {
    const r = rand();
    if (r < 0.1) {
      const sql = pick(['select 42 as answer', 'BEGIN', 'COMMIT', 'ROLLBACK', 'DEALLOCATE ALL', "select current_setting('application_name') as an"]);
      if (sql === 'DEALLOCATE ALL') known.clear();
      steps.push({ text: `Query(${sql})`, bytes: query(sql) });
      continue;
    }
    const parts: Buffer[] = [];
    const text: string[] = [];
    let split: number | undefined;
    const n = 1 + Math.floor(rand() * 6);
    for (let m = 0; m < n; m++) {
      const k = rand();
      if (k < 0.25) {
        const name = pick(NAMES);
        const qi = Math.floor(rand() * QUERIES.length);
        const q = QUERIES[qi]!;
        if (name !== '') {
          // a name in use is closed first in the same batch: a Parse of a name the client holds is 42P05, which
          // pgtide (like PgBouncer) answers by closing the connection
          parts.push(closeMsg('S', name));
          text.push(`Close(S,${name})`);
        }
        parts.push(parse(name, q.sql, q.types ?? []));
        text.push(`Parse(${name},${qi})`);
        known.set(name, qi);
      } else if (k < 0.55) {
        const name = rand() < 0.85 && known.size > 0 ? pick([...known.keys()]) : pick(NAMES);
        const qi = known.get(name);
        const count = qi !== undefined && rand() < 0.92 ? QUERIES[qi]!.params : Math.floor(rand() * 3);
        const portal = pick(PORTALS);
        const ps = params(count);
        parts.push(bind(name, ps, portal));
        text.push(`Bind(${portal},${name},[${ps.join(',')}])`);
        if (rand() < 0.8) {
          const max = rand() < 0.3 ? 1 : 0;
          parts.push(execute(portal, max));
          text.push(`Execute(${portal},${max})`);
        }
      } else if (k < 0.68) {
        const kind = rand() < 0.6 ? 'S' : 'P';
        const name = kind === 'S' ? (known.size > 0 && rand() < 0.8 ? pick([...known.keys()]) : pick(NAMES)) : pick(PORTALS);
        parts.push(describe(kind, name));
        text.push(`Describe(${kind},${name})`);
      } else if (k < 0.8) {
        const portal = pick(PORTALS);
        const max = rand() < 0.5 ? 1 : 0;
        parts.push(execute(portal, max));
        text.push(`Execute(${portal},${max})`);
      } else if (k < 0.9) {
        const kind = rand() < 0.7 ? 'S' : 'P';
        const name = kind === 'S' ? pick(NAMES) : pick(PORTALS);
        parts.push(closeMsg(kind, name));
        text.push(`Close(${kind},${name})`);
        if (kind === 'S') known.delete(name);
      } else {
        parts.push(flush());
        text.push('Flush');
        if (split === undefined && rand() < 0.5) {
          split = parts.reduce((n, b) => n + b.length, 0);
          text.push('|');
        }
      }
    }
    parts.push(sync());
    text.push('Sync');
    // piped only when it makes or drops no named statement: a batch sent before the answer to one that does relies
    // on it having worked (transaction-mode.md)
    const piped = split === undefined && rand() < 0.3;
    steps.push({ text: text.join(' ') + (piped ? ' >>' : ''), bytes: Buffer.concat(parts), split, piped });
  }
  // no transaction block left open: it would keep its server from the clients still running
  steps.push({ text: 'Query(ROLLBACK)', bytes: query('ROLLBACK') });
  return steps;
}

/** Every message up to ReadyForQuery, as text: payloads that matter spelled out, ParameterStatus and notices left out. */
async function answer(r: Raw, out: string[] = []): Promise<string[]> {
  for (;;) {
    let m;
    try {
      m = await r.msg(10_000);
    } catch {
      out.push('no reply in 10 s');
      return out;
    }
    if (!m) {
      out.push('closed');
      return out;
    }
    switch (m.type) {
      case 'S':
      case 'N':
        continue;
      case 'D':
        out.push(dataRowText(m.body));
        break;
      case 'T': {
        const fields: string[] = [];
        let pos = 2;
        for (let i = m.body.readInt16BE(0); i > 0; i--) {
          const end = m.body.indexOf(0, pos);
          fields.push(`${m.body.toString('utf8', pos, end)}/${m.body.readInt32BE(end + 7)}`);
          pos = end + 19;
        }
        out.push(`T:${fields.join(',')}`);
        break;
      }
      case 't': {
        const oids: number[] = [];
        for (let i = 0, n = m.body.readInt16BE(0); i < n; i++) oids.push(m.body.readInt32BE(2 + 4 * i));
        out.push(`t:${oids.join(',')}`);
        break;
      }
      case 'E': {
        const f = errorFields(m.body);
        // error texts name a statement by its server-side name through pgtide (PGTIDE_<n>): the name is not compared
        out.push(`E:${f.C}:${(f.M ?? '').replace(/prepared statement "[^"]*"/g, 'prepared statement "…"')}`);
        break;
      }
      case 'C':
        out.push(`C:${m.body.toString('utf8', 0, m.body.length - 1)}`);
        break;
      case 'Z':
        out.push(`Z:${m.body.toString('latin1', 0, 1)}`);
        return out;
      default:
        out.push(m.type);
    }
  }
}

/**
 * The documented difference in a failed transaction block: a Bind of a statement the server has not prepared yet
 * fails at the Parse pgtide adds (25P02, as any Bind there would), where PostgreSQL may report the Bind's own error
 * first (a wrong parameter count). Such a reply is taken as PostgreSQL's; any other is returned as it is.
 */
function failedTxSame(seen: string[], truth: string[]): string[] {
  const n = seen.length;
  if (n !== truth.length || n < 2 || seen[n - 1] !== 'Z:E' || truth[n - 1] !== 'Z:E') return seen;
  if (!seen[n - 2]!.startsWith('E:25P02:') || !/^E:08P01:bind message supplies/.test(truth[n - 2]!)) return seen;
  for (let j = 0; j < n - 2; j++) if (seen[j] !== truth[j]) return seen;
  return truth;
}

async function runProgram(r: Raw, steps: Step[]): Promise<string[][]> {
  const got: string[][] = [];
  for (let i = 0; i < steps.length; ) {
    // a run of piped batches and the one after it go out together; a split batch goes in two parts
    let j = i;
    while (j < steps.length - 1 && steps[j]!.piped) j++;
    const s = steps[i]!;
    if (j === i && s.split !== undefined) {
      r.send(s.bytes.subarray(0, s.split));
      await new Promise((res) => setTimeout(res, 3));
      r.send(s.bytes.subarray(s.split));
    } else {
      r.send(Buffer.concat(steps.slice(i, j + 1).map((x) => x.bytes)));
    }
    for (; i <= j; i++) {
      const a = await answer(r);
      got.push(a);
      if (a.includes('closed') || a.includes('no reply in 10 s')) return got;
    }
  }
  return got;
}

test('random extended-protocol batches from 8 clients over 2 servers get exactly the replies of their own PostgreSQL sessions', { timeout: 120_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { pool_mode: 'transaction', default_pool_size: 2, max_prepared_statements: 3, admin_users: 'app' }));
  const CLIENTS = 8;
  const BATCHES = 250;
  const SEED = Number(process.env.FUZZ_SEED ?? 7000);
  const programs = Array.from({ length: CLIENTS }, (_, i) => program(SEED + i, BATCHES));

  // the truth: each program alone on a PostgreSQL connection of its own (trustuser: no password over 127.0.0.1)
  const truth = await Promise.all(programs.map(async (steps) => {
    const r = await Raw.open(server.port);
    t.after(() => r.close());
    r.send(startupPacket({ user: 'trustuser', database: 'app' }));
    await finishLogin(r, 'trustuser', '');
    return runProgram(r, steps);
  }));

  // through pgtide, all at once
  const clients = await Promise.all(programs.map(async () => {
    const r = await rawLogin(b);
    t.after(() => r.close());
    return r;
  }));
  const seen = await Promise.all(programs.map((steps, i) => runProgram(clients[i]!, steps)));

  if (process.env.FUZZ_DUMP) {
    const i = Number(process.env.FUZZ_DUMP);
    for (let s = 0; s < programs[i]!.length; s++) {
      const same = JSON.stringify(seen[i]![s]) === JSON.stringify(truth[i]![s]);
      console.log(`${same ? ' ' : '!'} ${s}: ${programs[i]![s]!.text}\n    pgtide: ${seen[i]![s]?.join(' ')}${same ? '' : `\n    pg:     ${truth[i]![s]?.join(' ')}`}`);
      if (!same) break;
    }
  }
  let batches = 0;
  for (let i = 0; i < CLIENTS; i++) {
    for (let s = 0; s < programs[i]!.length; s++) {
      assert.deepEqual(
        failedTxSame(seen[i]![s]!, truth[i]![s]!), truth[i]![s],
        `client ${i}, batch ${s}: ${programs[i]![s]!.text}\n  pgtide:     ${seen[i]![s]?.join(' ')}\n  PostgreSQL: ${truth[i]![s]?.join(' ')}`,
      );
      batches++;
    }
  }
  assert.equal(batches, CLIENTS * (BATCHES + 1));
  // the unnamed statement did follow its clients to other servers
  const ss = (await consoleRows(b, 'SHOW SESSION_STATE')).find((x) => x.user === 'app');
  assert.ok(ss && Number(ss.unnamed_reprepares) > 0, `unnamed statement never prepared again: ${JSON.stringify(ss)}`);
  await waitFor('servers back in the pool', async () => (await consoleRows(b, 'SHOW POOLS')).every((p) => Number(p.sv_active) === 0) || null);
  await stillServes(b);
  assert.doesNotMatch(b.log(), /internal error/);
});

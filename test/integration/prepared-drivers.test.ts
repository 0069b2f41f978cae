// Acceptance tests for protocol-level prepared statements in transaction pooling (max_prepared_statements):
// named statements from pg, postgres.js (prepare: true), Prisma 7 (driver adapter), Drizzle, a raw "JDBC-style"
// Parse/Describe/Bind/Close client, DEALLOCATE ALL, a table altered between two executions, and pgbench -M prepared.
//
// MODE is the only switch: 'transaction' is what the feature is about; flipping it to 'session' locally proves the
// tests themselves are right (everything passes when a client keeps its server). Pool sizes grow in session mode
// where a small pool would make clients wait for a server forever.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import postgres from 'postgres';
import { drizzle } from 'drizzle-orm/node-postgres';
import { pgTable, integer, text } from 'drizzle-orm/pg-core';
import { eq, sql as dsql } from 'drizzle-orm';
import { PrismaPg } from '@prisma/adapter-pg';
import { sharedPostgres, pgBin, pgEnv, run, type PgServer } from '../harness/postgres.js';
import { pgtideWith, startPgtide, iniFor, track, REPO_ROOT, type Pgtide } from '../harness/pgtide.js';
import { sleep, stillServes, type PgError } from '../harness/util.js';
import { bind, closeMsg, describe, errorFields, execute, parse, query, rawLogin as loginRaw, sync, type Msg, type Raw } from '../harness/raw.js';

const MODE: 'transaction' | 'session' = 'transaction';
const TX = (MODE as string) === 'transaction';

/** default_pool_size: `n` in transaction mode, at least `sessionNeeds` in session mode (one server per client there). */
const poolSize = (n: number, sessionNeeds: number): number => (TX ? n : Math.max(n, sessionNeeds));

/** pgtide in MODE with prepared statement tracking on. */
function bouncer(server: PgServer, size: number, extra: Record<string, string | number> = {}): Promise<Pgtide> {
  return pgtideWith(server, { pool_mode: MODE, default_pool_size: size, max_client_conn: 200, max_prepared_statements: 200, ...extra });
}

/** Run SQL as app straight against PostgreSQL (table setup, ALTER TABLE behind the pooler's back). */
async function direct(server: PgServer, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: server.url('app', 'apppass', 'app') });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** Run `total` jobs over `workers` concurrent loops; job i gets its index. */
async function workersRun(workers: number, total: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false; // the first failure stops every worker, so nothing keeps running after the test
  await Promise.all(Array.from({ length: workers }, async () => {
    try {
      while (!failed && next < total) await job(next++);
    } catch (e) {
      failed = true;
      throw e;
    }
  }));
}

/**
 * Track a pg client/pool, postgres.js sql or Prisma client: ended when the test ends, but waiting at most 2 s for that
 * (a query stuck in a broken pooler must not hang the teardown; stopping pgtide afterwards cuts it off), errors ignored.
 */
function endSoon<T extends object>(t: { after(fn: () => unknown): unknown }, x: T, end: (x: T) => unknown): T {
  if ('on' in x && typeof x.on === 'function') (x as unknown as pg.Client).on('error', () => {});
  track(t, { end: () => Promise.race([Promise.resolve().then(() => end(x)).catch(() => {}), sleep(2000)]) });
  return x;
}
const endPg = (x: { end(): Promise<void> }) => x.end();

// ---------------------------------------------------------------------------------------------------------------
// 1. node-postgres named statements

test('pg: 2500 named-statement calls from 50 workers over 20 client connections all get their own answer', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await bouncer(server, poolSize(5, 22)));
  const pool = endSoon(t, new pg.Pool({ connectionString: b.url('app', 'apppass', 'app'), max: 20 }), endPg);
  const pidsByClient = new Map<pg.PoolClient, Set<number>>();
  let strings = 0;

  await workersRun(50, 2500, async (i) => {
    const c = await pool.connect();
    try {
      let pid: number;
      if (i % 3 === 0) {
        const r = await c.query<{ s: string; pid: number }>({ name: 'get-s', text: "select $1::text || '!' as s, pg_backend_pid() as pid", values: [`v${i}`] });
        assert.equal(r.rows.length, 1);
        assert.equal(r.rows[0]!.s, `v${i}!`, `call ${i} got someone else's answer`);
        pid = r.rows[0]!.pid;
        strings++;
      } else {
        const r = await c.query<{ n: number; pid: number }>({ name: 'get-n', text: 'select $1::int as n, pg_backend_pid() as pid', values: [i] });
        assert.equal(r.rows.length, 1);
        assert.equal(r.rows[0]!.n, i, `call ${i} got someone else's answer`);
        pid = r.rows[0]!.pid;
      }
      let pids = pidsByClient.get(c);
      if (!pids) pidsByClient.set(c, (pids = new Set()));
      pids.add(pid);
    } finally {
      c.release();
    }
  });

  assert.equal(strings, 834);
  assert.equal(pidsByClient.size, 20, 'the pg.Pool opened 20 client connections');
  const perClient = [...pidsByClient.values()].map((s) => s.size);
  const allPids = new Set([...pidsByClient.values()].flatMap((s) => [...s]));
  if (TX) {
    assert.ok(allPids.size <= 5, `${allPids.size} backends for default_pool_size 5`);
    assert.ok(Math.max(...perClient) >= 2, `no client connection ever changed server (backends per client: ${perClient})`);
  } else {
    assert.ok(perClient.every((n) => n === 1), `session mode: one backend per client (${perClient})`);
  }
  await stillServes(b);
});

// ---------------------------------------------------------------------------------------------------------------
// 2. postgres.js with its default prepare: true

test('postgres.js prepare:true: 200 concurrent queries and 20 transactions over 20 connections', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  await direct(server, 'drop table if exists prep_pjs; create table prep_pjs (id int primary key, worker int not null, v text not null)');
  track(t, { close: () => direct(server, 'drop table if exists prep_pjs') }); // after the clients and pgtide
  const b = track(t, await bouncer(server, poolSize(4, 22)));
  const sql = endSoon(t, postgres(b.url('app', 'apppass', 'app'), { max: 20, onnotice: () => {} }), (x) => x.end({ timeout: 1 }));
  assert.notEqual((sql.options as { prepare?: boolean }).prepare, false, 'postgres.js prepares by default');

  const check = async (i: number): Promise<void> => {
    switch (i % 5) {
      case 0: {
        const r = await sql<{ n: number }[]>`select ${i}::int as n`;
        assert.deepEqual(r.map((x) => x.n), [i], `query ${i}`);
        break;
      }
      case 1: {
        const r = await sql<{ n2: number; s: string }[]>`select ${i}::int * 2 as n2, ${'s' + i}::text as s`;
        assert.deepEqual(r.map((x) => [x.n2, x.s]), [[i * 2, `s${i}`]], `query ${i}`);
        break;
      }
      case 2: {
        const r = await sql<{ c: number }[]>`select count(*)::int as c from generate_series(1, ${(i % 50) + 1}::int)`;
        assert.deepEqual(r.map((x) => x.c), [(i % 50) + 1], `query ${i}`);
        break;
      }
      case 3: {
        const r = await sql<{ v: number }[]>`select v from generate_series(${i}::int, ${i + 2}::int) v`;
        assert.deepEqual(r.map((x) => x.v), [i, i + 1, i + 2], `query ${i}`);
        break;
      }
      default: {
        const r = await sql<{ b: string; t: string }[]>`select ${i}::bigint + 1 as b, ${'x'.repeat(i % 7)}::text as t`;
        assert.deepEqual(r.map((x) => [String(x.b), x.t]), [[String(i + 1), 'x'.repeat(i % 7)]], `query ${i}`);
      }
    }
  };

  const txn = async (w: number): Promise<void> => {
    const got = await sql.begin(async (tx) => {
      const x1 = await tx<{ x: string }[]>`select txid_current()::text as x`;
      for (let k = 0; k < 5; k++) await tx`insert into prep_pjs (id, worker, v) values (${w * 100 + k}, ${w}, ${`w${w}-${k}`})`;
      const rows = await tx<{ id: number; v: string }[]>`select id, v from prep_pjs where worker = ${w} order by id`;
      const x2 = await tx<{ x: string }[]>`select txid_current()::text as x`;
      assert.equal(x1[0]!.x, x2[0]!.x, 'one transaction');
      return rows.map((r) => [r.id, r.v]);
    });
    assert.deepEqual(got, Array.from({ length: 5 }, (_, k) => [w * 100 + k, `w${w}-${k}`]), `transaction ${w}`);
  };

  for (let round = 0; round < 2; round++) {
    await Promise.all([
      ...Array.from({ length: 200 }, (_, i) => check(round * 1000 + i)),
      ...(round === 0 ? Array.from({ length: 20 }, (_, w) => txn(w)) : []),
    ]);
  }
  const [{ count }] = await sql<{ count: number }[]>`select count(*)::int as count from prep_pjs`;
  assert.equal(count, 100);
  await stillServes(b);
});

// ---------------------------------------------------------------------------------------------------------------
// 3. Prisma 7 through @prisma/adapter-pg

const PRISMA_SCHEMA = `generator client {
  provider     = "prisma-client"
  output       = "./generated"
  runtime      = "nodejs"
  moduleFormat = "esm"
}

datasource db {
  provider = "postgresql"
}

model Item {
  id   Int    @id @default(autoincrement())
  name String
  qty  Int

  @@map("prep_prisma_item")
}
`;

interface PrismaItem { id: number; name: string; qty: number }
interface ItemDelegate {
  create(a: { data: { name: string; qty: number } }): Promise<PrismaItem>;
  findUnique(a: { where: { id: number } }): Promise<PrismaItem | null>;
  findMany(a?: { where?: { name?: { startsWith: string } }; orderBy?: { id: 'asc' | 'desc' } }): Promise<PrismaItem[]>;
  update(a: { where: { id: number }; data: { qty?: number; name?: string } }): Promise<PrismaItem>;
  delete(a: { where: { id: number } }): Promise<PrismaItem>;
  count(a?: object): Promise<number>;
}
interface PrismaLike {
  item: ItemDelegate;
  $transaction<T>(arg: Promise<unknown>[] | ((tx: { item: ItemDelegate }) => Promise<T>), opts?: object): Promise<T>;
  $disconnect(): Promise<void>;
}

/** `prisma generate` into a fresh temp dir (schema written there; node_modules linked so the client's imports resolve). */
async function generatePrismaClient(t: { after(fn: () => unknown): unknown }): Promise<string> {
  const dir = mkdtempSync('/tmp/pgtide-prisma-');
  track(t, { close: () => rmSync(dir, { recursive: true, force: true }) });
  writeFileSync(join(dir, 'schema.prisma'), PRISMA_SCHEMA);
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  // No query engine with a driver adapter; generate still asks for a schema engine (not downloadable here) but never runs it.
  await run(join(REPO_ROOT, 'node_modules', '.bin', 'prisma'), ['generate', '--schema', join(dir, 'schema.prisma')], {
    cwd: dir,
    env: { ...pgEnv(), PRISMA_SCHEMA_ENGINE_BINARY: process.execPath, PRISMA_HIDE_UPDATE_MESSAGE: '1', CHECKPOINT_DISABLE: '1' },
    timeoutMs: 60_000,
  });
  const client = join(dir, 'generated', 'client.ts');
  assert.ok(existsSync(client), `prisma generate wrote no ${client}`);
  return client;
}

test('Prisma 7 (adapter-pg, named statements): CRUD, batch and interactive transactions, 50 concurrent findUnique', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  await direct(server, 'drop table if exists prep_prisma_item; create table prep_prisma_item (id serial primary key, name text not null, qty int not null)');
  track(t, { close: () => direct(server, 'drop table if exists prep_prisma_item') }); // after the clients and pgtide
  const clientPath = await generatePrismaClient(t);
  const { PrismaClient } = (await import(pathToFileURL(clientPath).href)) as { PrismaClient: new (o: { adapter: unknown }) => PrismaLike };

  const b = track(t, await bouncer(server, poolSize(3, 12)));
  const adapter = new PrismaPg(
    { connectionString: b.url('app', 'apppass', 'app'), max: 10 },
    { statementNameGenerator: (q) => 'prisma_' + createHash('sha1').update(q.sql).digest('hex').slice(0, 16) },
  );
  const prisma = endSoon(t, new PrismaClient({ adapter }), (x) => x.$disconnect());

  const a = await prisma.item.create({ data: { name: 'alpha', qty: 1 } });
  assert.equal(a.name, 'alpha');
  assert.equal(a.qty, 1);
  assert.deepEqual(await prisma.item.findUnique({ where: { id: a.id } }), a);
  assert.deepEqual(await prisma.item.update({ where: { id: a.id }, data: { qty: 2 } }), { ...a, qty: 2 });

  const [bItem, cItem, n] = (await prisma.$transaction([
    prisma.item.create({ data: { name: 'beta', qty: 10 } }),
    prisma.item.create({ data: { name: 'gamma', qty: 20 } }),
    prisma.item.count(),
  ])) as unknown as [PrismaItem, PrismaItem, number];
  assert.deepEqual([bItem.name, bItem.qty, cItem.name, cItem.qty, n], ['beta', 10, 'gamma', 20, 3]);

  const moved = await prisma.$transaction(async (tx) => {
    const from = await tx.item.findUnique({ where: { id: bItem.id } });
    const to = await tx.item.findUnique({ where: { id: cItem.id } });
    assert.ok(from && to);
    await tx.item.update({ where: { id: from.id }, data: { qty: from.qty - 5 } });
    await tx.item.update({ where: { id: to.id }, data: { qty: to.qty + 5 } });
    return tx.item.findMany({ orderBy: { id: 'asc' } });
  }, { timeout: 20_000, maxWait: 20_000 });
  assert.deepEqual((moved as PrismaItem[]).map((x) => [x.name, x.qty]), [['alpha', 2], ['beta', 5], ['gamma', 25]]);

  // a failing interactive transaction rolls back
  await assert.rejects(prisma.$transaction(async (tx) => {
    await tx.item.update({ where: { id: a.id }, data: { qty: 999 } });
    throw new Error('rollback please');
  }, { timeout: 20_000, maxWait: 20_000 }), /rollback please/);
  assert.equal((await prisma.item.findUnique({ where: { id: a.id } }))!.qty, 2);

  const more = await Promise.all(Array.from({ length: 20 }, (_, i) => prisma.item.create({ data: { name: `many-${i}`, qty: i } })));
  const ids = [a, bItem, cItem, ...more];
  const want = new Map<number, [string, number]>([[a.id, ['alpha', 2]], [bItem.id, ['beta', 5]], [cItem.id, ['gamma', 25]]]);
  more.forEach((m, i) => want.set(m.id, [`many-${i}`, i]));
  const found = await Promise.all(Array.from({ length: 50 }, (_, i) => prisma.item.findUnique({ where: { id: ids[i % ids.length]!.id } })));
  found.forEach((f, i) => {
    const id = ids[i % ids.length]!.id;
    assert.ok(f, `findUnique ${i} found nothing`);
    assert.deepEqual([f.id, f.name, f.qty], [id, ...want.get(id)!], `findUnique ${i} got someone else's row`);
  });

  assert.deepEqual(await prisma.item.delete({ where: { id: a.id } }), { ...a, qty: 2 });
  assert.equal(await prisma.item.findUnique({ where: { id: a.id } }), null);
  assert.equal(await prisma.item.count(), 22);
  await prisma.$disconnect();
  await stillServes(b);
});

// ---------------------------------------------------------------------------------------------------------------
// 4. Drizzle ORM prepared statements

const drzItems = pgTable('prep_drizzle', { id: integer('id').primaryKey(), label: text('label').notNull() });

test('Drizzle: .prepare(name) statements with placeholders, 500 executions from 25 workers', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  await direct(server, 'drop table if exists prep_drizzle; create table prep_drizzle (id int primary key, label text not null)');
  track(t, { close: () => direct(server, 'drop table if exists prep_drizzle') }); // after the clients and pgtide
  const b = track(t, await bouncer(server, poolSize(3, 12)));
  const pool = endSoon(t, new pg.Pool({ connectionString: b.url('app', 'apppass', 'app'), max: 10 }), endPg);
  const db = drizzle({ client: pool });

  const insert = db.insert(drzItems).values({ id: dsql.placeholder('id'), label: dsql.placeholder('label') }).prepare('drz_insert');
  const byId = db.select().from(drzItems).where(eq(drzItems.id, dsql.placeholder('id'))).prepare('drz_by_id');
  const echo = db.select({ n: dsql<number>`${dsql.placeholder('n')}::int * 3`.mapWith(Number) }).from(dsql`(select 1) as one`).prepare('drz_echo');

  await workersRun(25, 100, async (i) => { await insert.execute({ id: i, label: `label-${i}` }); });
  await workersRun(25, 400, async (i) => {
    if (i % 4 === 3) {
      assert.deepEqual(await echo.execute({ n: i }), [{ n: i * 3 }], `echo ${i}`);
    } else {
      const id = (i * 7) % 100;
      assert.deepEqual(await byId.execute({ id }), [{ id, label: `label-${id}` }], `byId ${i}`);
    }
  });
  const { rows } = await pool.query<{ c: number }>('select count(*)::int as c from prep_drizzle');
  assert.equal(rows[0]!.c, 100);
  await stillServes(b);
});

// ---------------------------------------------------------------------------------------------------------------
// Raw protocol client (test/harness/raw.ts), with the message builders under the names this file uses.

const Parse = (name: string, sql: string) => parse(name, sql);
const DescribeS = (name: string) => describe('S', name);
const CloseS = (name: string) => closeMsg('S', name);
const Bind = (portal: string, stmt: string, params: string[]) => bind(stmt, params, portal);
const Execute = (portal = '') => execute(portal);
const Sync = sync;
const Query = query;

/** Raw connection through pgtide as app (md5 against userlist.txt), at ReadyForQuery, closed when the test ends. */
async function rawLogin(t: { after(fn: () => unknown): unknown }, b: Pgtide): Promise<Raw> {
  return track(t, await loginRaw(b));
}

/** Read messages up to and including ReadyForQuery; assert their types are exactly `types` (an ErrorResponse is shown). */
async function expectMsgs(r: Raw, types: string, what: string): Promise<Msg[]> {
  const got: Msg[] = [];
  for (;;) {
    const m = await r.msg();
    assert.ok(m, `${what}: connection closed after '${got.map((x) => x.type).join('')}'`);
    got.push(m);
    if (m.type === 'Z') break;
  }
  const seen = got.map((x) => x.type).join('');
  const errs = got.filter((x) => x.type === 'E').map((x) => { const f = errorFields(x.body); return `${f.C}: ${f.M}`; });
  assert.equal(seen, types, `${what}: got messages '${seen}'${errs.length ? ` with error ${errs.join('; ')}` : ''}`);
  return got;
}

/** First column of a DataRow. */
const dataCell = (m: Msg): string | null => {
  const len = m.body.readInt32BE(2);
  return len < 0 ? null : m.body.subarray(6, 6 + len).toString('utf8');
};

/** Column names of a RowDescription. */
function rowDescNames(m: Msg): string[] {
  const n = m.body.readInt16BE(0);
  const names: string[] = [];
  let off = 2;
  for (let i = 0; i < n; i++) {
    const end = m.body.indexOf(0, off);
    names.push(m.body.subarray(off, end).toString('utf8'));
    off = end + 1 + 18;
  }
  return names;
}

/** Simple query on a raw connection; its first cell (asserting no error). */
async function rawSelect(r: Raw, sql: string): Promise<string | null> {
  r.send(Query(sql));
  const msgs = await expectMsgs(r, 'TDCZ', sql);
  return dataCell(msgs[1]!);
}

/** A pg client through pgtide holding a transaction open, with its backend pid. */
async function holder(t: { after(fn: () => unknown): unknown }, b: Pgtide): Promise<{ c: pg.Client; pid: number }> {
  const c = endSoon(t, new pg.Client({ connectionString: b.url('app', 'apppass', 'app') }), endPg);
  await c.connect();
  await c.query('begin');
  const { rows } = await c.query<{ pid: number }>('select pg_backend_pid() as pid');
  return { c, pid: rows[0]!.pid };
}

// ---------------------------------------------------------------------------------------------------------------
// 5. JDBC-style: Parse + Describe, later Describe alone on another server, Bind/Execute, Close

test('raw protocol: Parse/Describe, then Describe and Bind on another server, Close, then Bind fails with 26000', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await bouncer(server, poolSize(2, 4))); // session: raw + 2 holders + stillServes
  const r = await rawLogin(t, b);

  // Parse + Describe inside an explicit transaction, to learn which server parsed s1
  r.send(Query('begin'));
  await expectMsgs(r, 'CZ', 'begin');
  r.send(Parse('s1', 'select $1::int + 1 as x'), DescribeS('s1'), Sync());
  const first = await expectMsgs(r, '1tTZ', 'Parse s1 + Describe');
  assert.deepEqual(rowDescNames(first[2]!), ['x']);
  assert.equal(first[1]!.body.readInt16BE(0), 1, 'one parameter');
  assert.equal(first[1]!.body.readInt32BE(2), 23, 'parameter is int4');
  const parsedOn = Number(await rawSelect(r, 'select pg_backend_pid()'));
  r.send(Query('commit'));
  await expectMsgs(r, 'CZ', 'commit');

  // Two other clients take both servers of the pool (2 in transaction mode); the one on the server that parsed s1 keeps
  // it, the other lets go: the raw client's next transactions can only run on a server that never saw s1.
  const h1 = await holder(t, b);
  const h2 = await holder(t, b);
  const [keep, free] = h1.pid === parsedOn ? [h1, h2] : [h2, h1];
  if (TX) assert.equal(keep.pid, parsedOn, 'one of the holders got the server that parsed s1');
  await free.c.query('commit');
  const now = Number(await rawSelect(r, 'select pg_backend_pid()'));
  if (TX) assert.notEqual(now, parsedOn, 'the raw client moved to another server');
  else assert.equal(now, parsedOn, 'session mode keeps the server');

  r.send(DescribeS('s1'), Sync());
  const again = await expectMsgs(r, 'tTZ', 'Describe s1 alone (no ParseComplete expected)');
  assert.deepEqual(rowDescNames(again[1]!), ['x']);

  r.send(Bind('', 's1', ['41']), Execute(), Sync());
  const exec = await expectMsgs(r, '2DCZ', 'Bind s1 + Execute');
  assert.equal(dataCell(exec[1]!), '42');
  assert.equal(exec[2]!.body.toString('utf8').replace(/\0$/, ''), 'SELECT 1');

  // busy traffic from the holders in between, then execute again with other values
  await keep.c.query('commit');
  await Promise.all([h1.c, h2.c].map(async (c, k) => {
    for (let i = 0; i < 20; i++) assert.equal((await c.query<{ v: number }>('select $1::int as v', [k * 100 + i])).rows[0]!.v, k * 100 + i);
  }));
  for (const v of [1, 99, -5]) {
    r.send(Bind('', 's1', [String(v)]), Execute(), Sync());
    assert.equal(dataCell((await expectMsgs(r, '2DCZ', `Bind s1 (${v})`))[1]!), String(v + 1));
  }

  r.send(CloseS('s1'), Sync());
  await expectMsgs(r, '3Z', 'Close s1');
  r.send(Bind('', 's1', ['1']), Sync());
  const err = await expectMsgs(r, 'EZ', 'Bind after Close');
  const f = errorFields(err[0]!.body);
  assert.equal(f.C, '26000', `${f.C}: ${f.M}`);
  assert.equal(f.M, 'prepared statement "s1" does not exist');

  // the name is free again, and the connection still works
  r.send(Parse('s1', 'select $1::text as y'), Bind('', 's1', ['again']), Execute(), Sync());
  assert.equal(dataCell((await expectMsgs(r, '12DCZ', 'Parse s1 again'))[2]!), 'again');
  assert.equal(await rawSelect(r, 'select 7'), '7');
  await stillServes(b);
});

// ---------------------------------------------------------------------------------------------------------------
// 6. DEALLOCATE ALL, then the same statement name again

test('DEALLOCATE ALL then reusing the statement name (pg fresh client, raw Parse again)', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await bouncer(server, poolSize(1, 2)));
  const url = b.url('app', 'apppass', 'app');

  const c1 = endSoon(t, new pg.Client({ connectionString: url }), endPg);
  await c1.connect();
  try {
    assert.equal((await c1.query<{ n: number }>({ name: 'dq', text: 'select $1::int as n', values: [5] })).rows[0]!.n, 5);
    assert.equal((await c1.query<{ n: number }>({ name: 'dq', text: 'select $1::int as n', values: [6] })).rows[0]!.n, 6);
    const dealloc = await c1.query('DEALLOCATE ALL');
    assert.equal(dealloc.command, 'DEALLOCATE');
  } finally {
    await c1.end();
  }
  // a fresh pg client (empty statement cache) parses 'dq' again, on the one server of the pool
  const c2 = endSoon(t, new pg.Client({ connectionString: url }), endPg);
  await c2.connect();
  for (const v of [7, 8, 9]) assert.equal((await c2.query<{ n: number }>({ name: 'dq', text: 'select $1::int as n', values: [v] })).rows[0]!.n, v);
  await c2.query('DEALLOCATE ALL');
  await c2.end();

  const r = await rawLogin(t, b);
  r.send(Parse('s1', 'select $1::int + 1 as x'), Sync());
  await expectMsgs(r, '1Z', 'Parse s1');
  r.send(Bind('', 's1', ['1']), Execute(), Sync());
  assert.equal(dataCell((await expectMsgs(r, '2DCZ', 'Bind s1 before DEALLOCATE ALL'))[1]!), '2');
  r.send(Query('DEALLOCATE ALL'));
  const d = await expectMsgs(r, 'CZ', 'DEALLOCATE ALL');
  assert.equal(d[0]!.body.toString('utf8').replace(/\0$/, ''), 'DEALLOCATE ALL');
  r.send(Bind('', 's1', ['1']), Sync());
  const gone = errorFields((await expectMsgs(r, 'EZ', 'Bind s1 after DEALLOCATE ALL'))[0]!.body);
  assert.equal(gone.C, '26000', `${gone.C}: ${gone.M}`);
  r.send(Parse('s1', 'select $1::int + 1 as x'), Sync());
  await expectMsgs(r, '1Z', 'Parse s1 after DEALLOCATE ALL (must not say "already exists")');
  r.send(Bind('', 's1', ['41']), Execute(), Sync());
  assert.equal(dataCell((await expectMsgs(r, '2DCZ', 'Bind s1 after re-Parse'))[1]!), '42');
  // a different text under the same name after another DEALLOCATE ALL
  r.send(Query('DEALLOCATE ALL'));
  await expectMsgs(r, 'CZ', 'DEALLOCATE ALL (2)');
  r.send(Parse('s1', "select $1::text || '?' as q"), Bind('', 's1', ['ok']), Execute(), Sync());
  assert.equal(dataCell((await expectMsgs(r, '12DCZ', 'Parse s1 with new text'))[2]!), 'ok?');
  assert.equal(await rawSelect(r, 'select 3'), '3');
  await stillServes(b);
});

// ---------------------------------------------------------------------------------------------------------------
// 7. ALTER TABLE between two executions

test('ALTER TABLE between executions: a fresh client preparing the same name/text sees the new columns', { timeout: 60_000 }, async (t) => {
  const server = await sharedPostgres();
  await direct(server, 'drop table if exists prep_alter; create table prep_alter (a int); insert into prep_alter values (1)');
  track(t, { close: () => direct(server, 'drop table if exists prep_alter') }); // after the clients and pgtide
  const b = track(t, await bouncer(server, poolSize(1, 3)));
  const url = b.url('app', 'apppass', 'app');
  const q = { name: 'sel-t', text: 'select * from prep_alter' };

  const c1 = endSoon(t, new pg.Client({ connectionString: url }), endPg);
  await c1.connect();
  const before = await c1.query(q);
  assert.deepEqual(before.fields.map((f) => f.name), ['a']);
  assert.deepEqual(before.rows, [{ a: 1 }]);

  await direct(server, 'alter table prep_alter add column b int; update prep_alter set b = 2');

  const c2 = endSoon(t, new pg.Client({ connectionString: url }), endPg);
  await c2.connect();
  const fresh = await c2.query(q);
  assert.deepEqual(fresh.fields.map((f) => f.name), ['a', 'b']);
  assert.deepEqual(fresh.rows, [{ a: 1, b: 2 }]);
  const fresh2 = await c2.query(q);
  assert.deepEqual(fresh2.rows, [{ a: 1, b: 2 }]);

  // the client that prepared before the ALTER: PostgreSQL itself says 0A000 for its own old statement; either that or
  // the new result is acceptable, and the client and pooler keep working
  try {
    const old = await c1.query(q);
    assert.deepEqual(old.rows, [{ a: 1, b: 2 }]);
  } catch (e) {
    assert.equal((e as PgError).code, '0A000', `unexpected error ${(e as PgError).code}: ${(e as Error).message}`);
    assert.match((e as Error).message, /cached plan must not change result type/);
  }
  assert.deepEqual((await c1.query('select 1 as one')).rows, [{ one: 1 }]);
  assert.deepEqual((await c2.query(q)).rows, [{ a: 1, b: 2 }]);
  await stillServes(b);
});

// ---------------------------------------------------------------------------------------------------------------
// 8. pgbench -M prepared / -M extended

const BENCH_DB = 'prep_bench';

/** Run pgbench with app's password; never rejects: exit code (null when killed after `timeoutMs`), stdout, stderr. */
function pgbench(args: string[], timeoutMs: number): Promise<{ code: number | null; killed: boolean; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(pgBin('pgbench'), args, { env: pgEnv({ PGPASSWORD: 'apppass' }), timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 },
      (error, stdout, stderr) => {
        const e = error as (Error & { code?: number | string; killed?: boolean }) | null;
        resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, killed: !!e?.killed, out: stdout, err: stderr });
      });
  });
}

test('pgbench -M prepared and -M extended: 100 clients, TPC-B-like, no failed transactions', { timeout: 75_000 }, async (t) => {
  const server = await sharedPostgres();
  await server.psql(`DROP DATABASE IF EXISTS ${BENCH_DB} WITH (FORCE);\nCREATE DATABASE ${BENCH_DB} OWNER app;`);
  track(t, { close: () => server.psql(`DROP DATABASE IF EXISTS ${BENCH_DB} WITH (FORCE)`) }); // after the clients and pgtide
  await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(server.port), '-U', 'app', BENCH_DB],
    { env: pgEnv({ PGPASSWORD: 'apppass' }), timeoutMs: 60_000 });

  const b = track(t, await startPgtide({
    pg: server,
    ini: (ctx) => iniFor(ctx, {
      databases: `${BENCH_DB} = host=127.0.0.1 port=${server.port} dbname=${BENCH_DB}`,
      settings: { pool_mode: MODE, default_pool_size: poolSize(20, 105), max_client_conn: 150, max_prepared_statements: 200, log_connections: 0, log_disconnections: 0 },
    }),
  }));

  // both runs always happen (20 s each at most; a healthy run takes ~2 s), then each is checked.
  // -j 2 with 100 clients: pgbench 15 in -M prepared runs a *synchronous* PQprepare (Parse+Sync) before each statement's
  // first use, with 50 clients per thread. If such a Parse had to wait for a server, the thread would wait for servers
  // held by its own clients sitting in BEGIN: pgtide answers a Parse+Sync batch between transactions itself (the
  // statement is prepared lazily where it is first run), which is what this run checks too.
  const runs: { mode: string; res: Awaited<ReturnType<typeof pgbench>> }[] = [];
  for (const mode of ['prepared', 'extended']) {
    const res = await pgbench(['-n', '-M', mode, '-c', '100', '-j', '2', '-t', '20', '-h', '127.0.0.1', '-p', String(b.port), '-U', 'app', BENCH_DB], 20_000);
    runs.push({ mode, res });
  }
  const problems: string[] = [];
  for (const { mode, res } of runs) {
    const all = `${res.out}\n${res.err}`;
    const bad = [
      res.killed && 'still running after 20 s (killed)',
      !res.killed && res.code !== 0 && `exit code ${res.code}`,
      !res.out.includes(`query mode: ${mode}`) && `no "query mode: ${mode}"`,
      !/number of transactions actually processed: 2000\/2000/.test(res.out) && 'not 2000/2000 transactions processed',
      !/number of failed transactions: 0 /.test(res.out) && 'failed transactions',
      /ERROR|aborted|FATAL/.test(all) && 'ERROR/aborted/FATAL in its output',
    ].filter(Boolean);
    if (bad.length) problems.push(`pgbench -M ${mode}: ${bad.join(', ')}\n${all.slice(-2000)}`);
  }
  assert.deepEqual(problems, [], `${problems.join('\n')}\n--- pgtide log tail ---\n${b.log().slice(-2000)}`);
  const c = endSoon(t, new pg.Client({ connectionString: b.url('app', 'apppass', BENCH_DB) }), endPg);
  await c.connect();
  const { rows } = await c.query<{ n: number }>('select count(*)::int as n from pgbench_history');
  assert.equal(rows[0]!.n, 4000, 'every pgbench transaction left its history row');
  await stillServes(b, { db: BENCH_DB });
});

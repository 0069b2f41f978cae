// Security hygiene: a login storm from one address waits for login slots instead of crowding out running traffic
// (max_concurrent_logins_per_host), and no password or secret shows in the log or in any SHOW output.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { sharedPostgres } from '../harness/postgres.js';
import { pgtideWith, startPgtide, iniFor, track } from '../harness/pgtide.js';
import { Raw, startupPacket } from '../harness/raw.js';
import { appClient } from '../harness/util.js';

test('max_concurrent_logins_per_host: logins beyond the limit wait unread for a slot; running clients are not held up', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const b = track(t, await pgtideWith(server, { max_concurrent_logins_per_host: 2, pool_mode: 'transaction' }));
  const running = await appClient(t, b); // logged in before the storm
  const open = async () => {
    const r = await Raw.open(b.port);
    t.after(() => r.close());
    r.send(startupPacket({ user: 'app', database: 'app' }));
    return r;
  };
  const a = await open();
  const c = await open();
  assert.equal((await a.msg())?.type, 'R', 'first login asked for its password');
  assert.equal((await c.msg())?.type, 'R');
  const d = await open(); // third from the same address: waits
  await assert.rejects(d.msg(500), /timed out/);
  for (let i = 0; i < 5; i++) assert.equal((await running.query('select 1 as one')).rows[0].one, 1);
  a.close(); // a slot frees up
  assert.equal((await d.msg(3000))?.type, 'R', 'the waiting login goes on');
});

test('no password or secret in the log or in SHOW output', { timeout: 30_000 }, async (t) => {
  const server = await sharedPostgres();
  const scram = await server.scramSecret('app');
  const b = track(t, await startPgtide({
    pg: server,
    ini: (ctx) => iniFor(ctx, {
      databases: `app = host=127.0.0.1 port=${server.port} dbname=app\nforced = host=127.0.0.1 port=${server.port} dbname=app user=md5user password=md5pass`,
      settings: { admin_users: 'app', log_connections: 1, log_disconnections: 1, verbose: 2 },
    }),
    files: { 'userlist.txt': `"app" "${scram}"\n"md5user" "md5pass"\n"trustuser" ""\n` },
  }));
  for (const [user, pw, db] of [['app', 'apppass', 'app'], ['md5user', 'md5pass', 'app'], ['app', 'apppass', 'forced'], ['app', 'wrong-pw-x', 'app']]) {
    const c = new pg.Client({ host: '127.0.0.1', port: b.port, user, password: pw, database: db });
    c.on('error', () => {});
    await c.connect().then(() => c.query('select 1'), () => undefined).finally(() => c.end().catch(() => {}));
  }
  const admin = track(t, new pg.Client({ host: '127.0.0.1', port: b.port, user: 'app', password: 'apppass', database: 'pgbouncer' }));
  await admin.connect();
  let shown = '';
  for (const what of ['CONFIG', 'DATABASES', 'USERS', 'POOLS', 'CLIENTS', 'SERVERS', 'SOCKETS', 'FDS', 'LISTS', 'STATS']) {
    shown += JSON.stringify((await admin.query(`SHOW ${what}`)).rows);
  }
  const secrets = ['apppass', 'md5pass', 'wrong-pw-x', scram, scram.split('$')[2]!.split(':')[1]!];
  for (const s of secrets) {
    assert.ok(!shown.includes(s), `SHOW output contains a secret (${s.slice(0, 8)}…)`);
    assert.ok(!b.log().includes(s), `the log contains a secret (${s.slice(0, 8)}…)`);
  }
});

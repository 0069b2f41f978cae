/* Compile-time checks of the library's published types, run by `npm run typecheck` (never executed): settings names
 * and value types come from the settings table, events and stats rows are typed. Each @ts-expect-error must stay an
 * error: if one of these lines compiled, typecheck would fail with "Unused '@ts-expect-error' directive". */

import { Pooler, type PoolerOptions, type PoolRow, type SettingsOptions } from '../../src/index.js';

export const good: PoolerOptions = {
  databases: { app: { host: '127.0.0.1', port: 5432, dbname: 'app' }, other: 'host=127.0.0.1 dbname=other' },
  users: { app: { pool_mode: 'session', max_user_connections: 5 } },
  settings: {
    pool_mode: 'transaction',
    default_pool_size: 25,
    listen_port: 0,
    query_timeout: 1.5,
    log_connections: false,
    admin_users: ['app'],
    stats_users: 'app,monitor',
  },
  auth: { users: [{ name: 'app', password: 'secret' }, { name: 'bob', secret: 'SCRAM-SHA-256$4096:…' }] },
};

export const typo: SettingsOptions = {
  // @ts-expect-error a misspelled setting name is a compile error
  defualt_pool_size: 25,
};

export const wrongEnum: SettingsOptions = {
  // @ts-expect-error pool_mode is 'session' | 'transaction' | 'statement'
  pool_mode: 'txn',
};

export const wrongType: SettingsOptions = {
  // @ts-expect-error an integer setting takes a number
  default_pool_size: '25',
};

export const wrongBool: SettingsOptions = {
  // @ts-expect-error a 0/1 setting takes a boolean
  log_connections: 1,
};

export const wrongDatabaseKey: PoolerOptions = {
  // @ts-expect-error a database entry has no key "hots"
  databases: { app: { hots: '127.0.0.1' } },
};

// @ts-expect-error databases is required
export const noDatabases: PoolerOptions = { settings: { listen_port: 0 } };

export async function events(p: Pooler): Promise<void> {
  p.on('log', (r) => {
    const level: 'FATAL' | 'ERROR' | 'WARNING' | 'LOG' | 'DEBUG' | 'NOISE' = r.level;
    void level;
  });
  p.on('reload', (r) => void r.restartNeeded.includes('listen_port'));
  p.on('error', (e) => void e.level);
  // @ts-expect-error there is no 'listen' event ('listening' is)
  p.on('listen', () => {});
  const info = await p.listen();
  const port: number = info.port;
  void port;
  const row: PoolRow | undefined = p.stats().pools[0];
  const waiting: number | undefined = row?.cl_waiting;
  void waiting;
  // @ts-expect-error SHOW POOLS has no cl_idle column
  void row?.cl_idle;
  const q: number = p.stats().databases[0]!.total_query_count + p.stats().totals.avg_wait_time;
  void q;
  // @ts-expect-error graceful is a boolean
  await p.close({ graceful: 'yes' });
  await p.close({ graceful: true, waitFor: 'servers', timeout: 1000 });
}

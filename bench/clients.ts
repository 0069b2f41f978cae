// Benchmark raw clients (test/harness/raw.ts): many held idle connections, opened a few at a time, and the probe of
// which authentication a server asks a user for.

import { finishLogin, Raw, rawSelect, startupPacket } from '../test/harness/raw.js';

export interface Login {
  user: string;
  password: string;
  db: string;
}

/** Connections held open (logged in, when a login was given) and doing nothing. */
export interface Held {
  clients: Raw[];
  /** How many of them the server has closed since they were opened. */
  closed(): number;
  /** Close them all (RST, so that no TIME_WAIT sockets pile up on the client side). */
  destroy(): void;
}

/** Open one connection and, with a login, complete startup + password + ReadyForQuery. */
export async function openOne(port: number, login?: Login): Promise<Raw> {
  const r = await Raw.open(port);
  if (login) {
    try {
      r.send(startupPacket({ user: login.user, database: login.db }));
      await finishLogin(r, login.user, login.password);
    } catch (e) {
      r.destroy();
      throw e;
    }
  }
  return r;
}

/**
 * Open `n` connections, `concurrency` at a time (so the listen backlog never overflows and no SYN is retried), and
 * keep them. On the first failure the ones opened so far are closed and the error is thrown.
 */
export async function openMany(port: number, n: number, login: Login | undefined, concurrency: number): Promise<Held> {
  const clients: Raw[] = [];
  let next = 0;
  let failure: Error | undefined;
  const worker = async () => {
    while (next < n && !failure) {
      next++;
      try {
        clients.push(await openOne(port, login));
      } catch (e) {
        failure ??= new Error(`connection ${clients.length + 1} of ${n}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  const held: Held = {
    clients,
    closed: () => clients.reduce((k, r) => k + (r.closed ? 1 : 0), 0),
    destroy: () => { for (const r of clients) r.sock.resetAndDestroy(); },
  };
  if (failure) {
    held.destroy();
    throw failure;
  }
  return held;
}

/** Log in, run `SELECT 1`, close; resolves with the time it took in ms. */
export async function loginAndSelect(port: number, login: Login): Promise<number> {
  const t = process.hrtime.bigint();
  const r = await openOne(port, login);
  try {
    const v = await rawSelect(r, 'SELECT 1');
    if (v !== '1') throw new Error(`SELECT 1 returned ${v}`);
  } finally {
    r.destroy();
  }
  return Number(process.hrtime.bigint() - t) / 1e6;
}

/**
 * The first authentication request a server sends for `user` (no password is sent): 'SCRAM-SHA-256' for
 * AuthenticationSASL offering it, 'md5', 'cleartext', 'trust' (AuthenticationOk right away), or what else came.
 */
export async function authMethod(port: number, user: string, db: string): Promise<string> {
  const r = await Raw.open(port);
  try {
    r.send(startupPacket({ user, database: db }));
    const m = await r.msg(5000);
    if (!m) return 'connection closed';
    if (m.type === 'E') return `error: ${m.body.toString('utf8').replace(/\0/g, ' ').trim()}`;
    if (m.type !== 'R') return `message '${m.type}'`;
    const code = m.body.readInt32BE(0);
    if (code === 10) {
      const mechs = m.body.subarray(4).toString('utf8').split('\0').filter(Boolean);
      return mechs.includes('SCRAM-SHA-256') ? 'SCRAM-SHA-256' : `SASL ${mechs.join(',')}`;
    }
    return code === 5 ? 'md5' : code === 3 ? 'cleartext' : code === 0 ? 'trust' : `auth request ${code}`;
  } finally {
    r.destroy();
  }
}

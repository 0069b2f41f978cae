// Benchmark idle-client memory: a fresh pooler (or a bare Node.js socket server) per measurement, its RSS and PSS
// before and after N logged-in clients are held open, and whether it still serves a query meanwhile.

import { spawn } from 'node:child_process';
import { freePort, isAlive, onProcessExit } from '../test/harness/postgres.js';
import { rawSelect } from '../test/harness/raw.js';
import { loginAndSelect, openMany, openOne, type Held, type Login } from './clients.js';
import { startPooler, type PoolerKind, type PoolerSettings } from './poolers.js';
import { cpuTicks, memoryKiB, openFilesLimit, sleep } from './procs.js';

/** What holds the idle clients: a pooler, or the reference the issue names, a Node.js server that only accepts sockets. */
export type IdleTarget = 'bare-node' | PoolerKind;

export interface Memory {
  rssKiB: number;
  pssKiB?: number;
}

export interface IdleRecord {
  round: number;
  clients: number;
  target: IdleTarget;
  /** Position of this target within its (round, clients) group, 0-based. */
  position: number;
  pid?: number;
  /** After start-up and one login + SELECT 1 (poolers) or one connect (bare Node.js), settled. */
  before?: Memory;
  /** With the clients held open, settled. */
  after?: Memory;
  /** (after − before) ÷ clients, KiB. */
  rssPerClientKiB?: number;
  pssPerClientKiB?: number;
  /** Time to open (and log in) all clients, s. */
  openSeconds?: number;
  /** Time waited for the process to go idle once the clients were open, s. */
  settleSeconds?: number;
  /** Held clients the server closed before the measurement ended (should be 0). */
  closedByServer?: number;
  /** A fresh login + SELECT 1 while the clients are held (poolers only), ms. */
  freshQueryMs?: number;
  /** SELECT 1 on one of the held clients (poolers only), ms. */
  heldQueryMs?: number;
  /** Soft open-files limit of the process. */
  fdLimit?: number;
  error?: string;
}

export interface IdleOptions {
  round: number;
  clients: number;
  position: number;
  /** Settings of the poolers (max_client_conn is raised to fit the clients). */
  poolerSettings: PoolerSettings;
  login: Login;
  /** Connections being opened at the same time. */
  concurrency: number;
  say(msg: string): void;
}

interface Proc {
  pid: number;
  port: number;
  alive(): boolean;
  stop(): Promise<void>;
  /** Sockets the server holds (bare Node.js only: it reports them on stdout). */
  connections?(): number;
}

/** A Node.js server that accepts sockets and does nothing with them; it prints how many it holds when that changes. */
const BARE_NODE_SCRIPT = `
const net = require('net');
let n = 0, said = -1;
const srv = net.createServer((s) => { n++; s.on('error', () => {}); s.on('close', () => { n--; }); });
srv.listen({ host: '127.0.0.1', port: Number(process.argv[1]), backlog: 511 }, () => console.log('listening'));
setInterval(() => { if (n !== said) { said = n; console.log('n ' + n); } }, 100);
`;

export async function startBareNode(): Promise<Proc> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['-e', BARE_NODE_SCRIPT, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const kill = () => { try { proc.kill('SIGKILL'); } catch { /* gone */ } };
  const unregister = onProcessExit(kill);
  let count = 0;
  let listening = false;
  let exited = false;
  let output = '';
  const exit = new Promise<void>((resolve) => proc.once('exit', () => { exited = true; resolve(); }));
  proc.stderr!.on('data', (b: Buffer) => { output = (output + b.toString()).slice(-2000); });
  let pending = '';
  proc.stdout!.on('data', (b: Buffer) => {
    pending += b.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const l of lines) {
      if (l === 'listening') listening = true;
      else if (l.startsWith('n ')) count = Number(l.slice(2));
    }
  });
  const p: Proc = {
    pid: proc.pid!,
    port,
    alive: () => !exited && isAlive(proc.pid!),
    async stop() {
      kill();
      await exit;
      unregister();
    },
    connections: () => count,
  };
  const deadline = Date.now() + 10_000;
  while (!listening && !exited && Date.now() < deadline) await sleep(20);
  if (!listening) {
    await p.stop();
    throw new Error(`bare Node.js server did not start: ${output.trim() || 'no output'}`);
  }
  return p;
}

/**
 * Wait until the process has used at most one clock tick of CPU in each of two consecutive 500 ms windows (logins and
 * garbage collection done), at most `maxMs`; resolves with the seconds waited.
 */
async function settle(pid: number, maxMs = 20_000): Promise<number> {
  const t0 = Date.now();
  let quiet = 0;
  let prev = cpuTicks(pid);
  while (Date.now() - t0 < maxMs && quiet < 2) {
    await sleep(500);
    const now = cpuTicks(pid);
    if (now === undefined || prev === undefined) break;
    quiet = now - prev <= 1 ? quiet + 1 : 0;
    prev = now;
  }
  return (Date.now() - t0) / 1000;
}

const perClient = (a: number | undefined, b: number | undefined, n: number) => (a !== undefined && b !== undefined ? (b - a) / n : undefined);

/** One measurement: fresh process, memory before, N clients held, memory after, queries while held; never throws. */
export async function measureIdle(target: IdleTarget, o: IdleOptions): Promise<IdleRecord> {
  const rec: IdleRecord = { round: o.round, clients: o.clients, target, position: o.position };
  let proc: Proc | undefined;
  let held: Held | undefined;
  try {
    proc = target === 'bare-node'
      ? await startBareNode()
      : await startPooler(target, { ...o.poolerSettings, maxClientConn: Math.max(2000, o.clients + 100) });
    rec.pid = proc.pid;
    rec.fdLimit = openFilesLimit(proc.pid);
    if (rec.fdLimit !== undefined && rec.fdLimit < o.clients + 100) {
      throw new Error(`its open-files limit is ${rec.fdLimit}, too low for ${o.clients} clients`);
    }
    // Warm up what every client uses (for a pooler: its server connection and the login path), then the baseline.
    if (target === 'bare-node') (await openOne(proc.port)).destroy();
    else await loginAndSelect(proc.port, o.login);
    await settle(proc.pid);
    rec.before = memoryKiB(proc.pid);

    const t = Date.now();
    held = await openMany(proc.port, o.clients, target === 'bare-node' ? undefined : o.login, o.concurrency);
    if (proc.connections) {
      const deadline = Date.now() + 30_000;
      while (proc.connections() < o.clients && Date.now() < deadline) await sleep(50);
      if (proc.connections() < o.clients) throw new Error(`the bare Node.js server holds ${proc.connections()} of ${o.clients} sockets`);
    }
    rec.openSeconds = (Date.now() - t) / 1000;
    rec.settleSeconds = await settle(proc.pid);
    rec.after = memoryKiB(proc.pid);
    rec.rssPerClientKiB = perClient(rec.before?.rssKiB, rec.after?.rssKiB, o.clients);
    rec.pssPerClientKiB = perClient(rec.before?.pssKiB, rec.after?.pssKiB, o.clients);

    if (target !== 'bare-node') {
      rec.freshQueryMs = await loginAndSelect(proc.port, o.login);
      const one = held.clients[held.clients.length - 1]!;
      const q = process.hrtime.bigint();
      const v = await rawSelect(one, 'SELECT 1');
      if (v !== '1') throw new Error(`SELECT 1 on a held client returned ${v}`);
      rec.heldQueryMs = Number(process.hrtime.bigint() - q) / 1e6;
    }
    rec.closedByServer = held.closed();
    if (!proc.alive()) throw new Error('the process died');
  } catch (e) {
    rec.error = (e as Error).message.split('\n')[0];
  } finally {
    held?.destroy();
    await proc?.stop().catch(() => {});
  }
  o.say(`idle r${o.round} ${o.clients} clients ${target}: ` + (rec.error
    ? `ERROR ${rec.error}`
    : `RSS ${kib(rec.before?.rssKiB)} → ${kib(rec.after?.rssKiB)} MiB, ${rec.rssPerClientKiB?.toFixed(2)} KiB/client ` +
      `(PSS ${rec.pssPerClientKiB?.toFixed(2)}), opened in ${rec.openSeconds?.toFixed(1)} s, settled in ${rec.settleSeconds?.toFixed(1)} s` +
      (rec.freshQueryMs !== undefined ? `, fresh login + SELECT 1 ${rec.freshQueryMs.toFixed(1)} ms, held SELECT 1 ${rec.heldQueryMs?.toFixed(1)} ms` : '') +
      `, ${rec.closedByServer} closed by the server`));
  return rec;
}

const kib = (x: number | undefined) => (x === undefined ? '?' : (x / 1024).toFixed(1));

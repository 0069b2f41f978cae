/* Ports for `pgtide demo`: is a 127.0.0.1 port free, and the first free one from a default on. */

import { createServer } from 'node:net';

/** A port that cannot be used; the message names it and what to do. */
export class PortInUse extends Error {}

/** Whether a TCP listener can bind 127.0.0.1:port right now (the way pgtide and PostgreSQL will). */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

export interface PortChoice {
  port: number;
  /** Set when the default was taken and another port is used: says so. */
  note?: string;
}

/**
 * The port to use: `explicit` (an option) must be free, else PortInUse; without it `preferred`, or the next free one
 * up to 100 above it, skipping `avoid`.
 */
export async function choosePort(what: string, option: string, explicit: number | undefined, preferred: number, avoid: number[] = []): Promise<PortChoice> {
  if (explicit !== undefined) {
    if (avoid.includes(explicit)) throw new PortInUse(`${what}'s port ${explicit} is already taken by the demo itself; choose another with ${option}`);
    if (await portFree(explicit)) return { port: explicit };
    throw new PortInUse(`${what}'s port ${explicit} on 127.0.0.1 is in use by another program; stop it or choose another port with ${option}`);
  }
  for (let p = preferred; p < preferred + 100 && p <= 65535; p++) {
    if (avoid.includes(p)) continue;
    if (await portFree(p)) return p === preferred ? { port: p } : { port: p, note: `${what}'s port ${preferred} is in use, using ${p} instead` };
  }
  throw new PortInUse(`${what}: ports ${preferred} to ${preferred + 99} on 127.0.0.1 are all in use; choose one with ${option}`);
}

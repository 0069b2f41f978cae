/* The admin console's commands that change things (PgBouncer's admin_cmd_*): PAUSE, RESUME, DISABLE, ENABLE, KILL,
 * KILL_CLIENT, RECONNECT, WAIT_CLOSE, RELOAD, SET, SHUTDOWN, SUSPEND. Admin users only; the caller checks that. */

import { errorResponse, READY_IDLE } from '../protocol/messages.js';
import { SqlState } from '../protocol/sqlstate.js';
import { PoolerError } from '../util/errors.js';
import { log } from '../util/log.js';
import { findParam, formatSettingValue, parseSettingValue, type SettingName, type Settings } from '../config/params.js';
import { buildClientTls, buildServerTls } from '../net/tls.js';
import type { ClientConn } from '../pool/client.js';
import type { Database } from '../pool/pool.js';
import { loadHba, UNSUPPORTED_AUTH, type Pooler } from '../pooler.js';
import { commandComplete } from './rows.js';
import { ADMIN_DB } from './console.js';

/** An answer: the messages up to and including ReadyForQuery, now or later (PAUSE, WAIT_CLOSE). */
export type Answer = Buffer | Promise<Buffer>;

export function consoleError(code: string, message: string, detail?: string): Buffer {
  return Buffer.concat([errorResponse({ severity: 'ERROR', code, message, detail }), READY_IDLE]);
}

function ok(tag: string): Buffer {
  return Buffer.concat([commandComplete(tag), READY_IDLE]);
}

const E = SqlState.ObjectNotInPrerequisiteState;

export const COMMAND_VERBS = new Set([
  'pause', 'resume', 'suspend', 'disable', 'enable', 'reconnect', 'kill', 'kill_client', 'wait_close', 'reload',
  'shutdown',
]);

/** Commands that take no argument (PgBouncer answers a syntax error to `RELOAD x`). */
const NO_ARG = new Set(['reload', 'suspend']);

function noSuchDb(name: string): Buffer {
  return consoleError(SqlState.InvalidCatalogName, `no such database: ${name}`);
}

/** Look a database argument up; the console's own database is refused as PgBouncer refuses it. */
function findDb(p: Pooler, name: string, what: string): Database | Buffer {
  if (name === ADMIN_DB) return consoleError(E, `cannot ${what} admin db: ${name}`);
  const db = p.findDatabase(name);
  if (!db || db.dead) return noSuchDb(name);
  return db;
}

/** Run an admin command (verb in lower case); null when the verb is not one of them. */
export function runCommand(p: Pooler, _c: ClientConn | null, verb: string, arg: string | undefined, text: string): Answer | null {
  if (!COMMAND_VERBS.has(verb)) return null;
  if (NO_ARG.has(verb) && arg !== undefined) return syntaxError(text);
  const issued = arg === undefined ? `${verb.toUpperCase()} command issued` : `${verb.toUpperCase()} '${arg}' command issued`;
  switch (verb) {
    case 'reload':
      log.log(issued);
      if (!p.reloadFromFile())
        return consoleError(SqlState.ConfigFileError, 'RELOAD failed, see logs for additional details');
      return ok('RELOAD');

    case 'pause': {
      if (p.pausedAll) return consoleError(E, 'already suspended/paused');
      if (p.shutdown !== 'none') return consoleError(SqlState.AdminShutdown, 'pooler is shutting down');
      log.log(issued);
      let dbs: Database[] | null = null;
      if (arg !== undefined) {
        const db = findDb(p, arg, 'pause');
        if (Buffer.isBuffer(db)) return db;
        dbs = [db];
      }
      return p.pause(dbs).then((err) => (err ? consoleError(E, err) : ok('PAUSE')));
    }

    case 'resume': {
      log.log(issued);
      if (arg === undefined) {
        if (p.shutdown !== 'none') return consoleError(SqlState.AdminShutdown, 'pooler is shutting down');
        if (!p.pausedAll && ![...p.databases.values()].some((d) => d.paused))
          return consoleError(E, 'pooler is not paused/suspended');
        p.resume(null);
        return ok('RESUME');
      }
      const db = p.databases.get(arg);
      if (!db || db.dead) return noSuchDb(arg);
      if (!db.paused) return consoleError(E, `database ${arg} is not paused`);
      p.resume([db]);
      return ok('RESUME');
    }

    case 'disable':
    case 'enable': {
      if (arg === undefined) return consoleError(E, 'a database is required');
      log.log(issued);
      const db = verb === 'disable' ? findDb(p, arg, 'disable') : p.databases.get(arg);
      if (db === undefined) return noSuchDb(arg);
      if (Buffer.isBuffer(db)) return db;
      db.disabled = verb === 'disable';
      return ok(verb.toUpperCase());
    }

    case 'kill': {
      if (p.pausedAll) return consoleError(E, 'already suspended/paused');
      if (arg === undefined) return consoleError(E, 'a database is required');
      log.log(issued);
      const db = findDb(p, arg, 'kill');
      if (Buffer.isBuffer(db)) return db;
      p.kill(db);
      return ok('KILL');
    }

    case 'kill_client': {
      if (arg === undefined) return consoleError(E, 'a client id is required');
      log.log(issued);
      if (!/^[0-9]+$/.test(arg)) return consoleError(E, 'invalid client pointer supplied');
      const target = p.findClient(Number(arg));
      if (!target) return consoleError(E, 'client not found');
      target.fail(new PoolerError(SqlState.AdminShutdown, 'client killed by admin'));
      return ok('KILL_CLIENT');
    }

    case 'reconnect': {
      log.log(issued);
      if (arg === undefined) {
        for (const db of p.databases.values()) p.reconnect(db);
        return ok('RECONNECT');
      }
      const db = findDb(p, arg, 'reconnect');
      if (Buffer.isBuffer(db)) return db;
      p.reconnect(db);
      return ok('RECONNECT');
    }

    case 'wait_close': {
      log.log(issued);
      let dbs: Database[] | null = null;
      if (arg !== undefined) {
        const db = findDb(p, arg, 'wait in');
        if (Buffer.isBuffer(db)) return db;
        dbs = [db];
      }
      return p.waitClose(dbs).then((err) => (err ? consoleError(E, err) : ok('WAIT_CLOSE')));
    }

    case 'shutdown': {
      const how = arg?.toLowerCase();
      if (how !== undefined && how !== 'wait_for_servers' && how !== 'wait_for_clients') return syntaxError(text);
      log.log(issued);
      if (how === undefined) {
        p.emit('exit-request', 'immediate');
        return Buffer.alloc(0); // PgBouncer exits without answering
      }
      if (p.shutdown !== 'none') return consoleError(SqlState.AdminShutdown, 'pooler is shutting down');
      p.emit('exit-request', how === 'wait_for_servers' ? 'wait-for-servers' : 'wait-for-clients');
      return ok('SHUTDOWN');
    }

    case 'suspend':
      return consoleError(SqlState.FeatureNotSupported, 'SUSPEND is not supported by pgtide');

    default:
      return null;
  }
}

function syntaxError(text: string): Buffer {
  return consoleError(SqlState.SyntaxError, `invalid command '${text}', use SHOW HELP;`);
}

/** `SET key = value`: reloadable settings only; the new value is live at once (a bigger pool serves its waiters). */
export function runSet(p: Pooler, key: string, value: string): Buffer {
  const param = findParam(key.toLowerCase());
  if (!param) return consoleError(SqlState.InvalidParameterValue, 'SET failed', `unknown setting: ${key}`);
  if (!param.reloadable)
    return consoleError(
      SqlState.CantChangeRuntimeParam,
      'SET failed',
      `${param.name} cannot be changed while pgtide runs; edit the config file and restart`,
    );
  let parsed;
  try {
    parsed = parseSettingValue(param, value);
  } catch (err) {
    return consoleError(SqlState.InvalidParameterValue, 'SET failed', (err as Error).message);
  }
  if (param.name === 'auth_type' && UNSUPPORTED_AUTH.has(String(parsed)))
    return consoleError(SqlState.FeatureNotSupported, 'SET failed', `auth_type ${String(parsed)} is not supported by pgtide yet`);
  if (param.name.startsWith('client_tls')) {
    // the client TLS context follows the settings: a value it cannot use is refused and changes nothing
    try {
      p.clientTls = buildClientTls({ ...p.settings, [param.name]: parsed } as Settings);
    } catch (err) {
      return consoleError(SqlState.InvalidParameterValue, 'SET failed', (err as Error).message);
    }
  }
  if (param.name === 'auth_type' || param.name === 'auth_hba_file') {
    try {
      p.hba = loadHba({ ...p.settings, [param.name]: parsed } as Settings);
    } catch (err) {
      return consoleError(SqlState.InvalidParameterValue, 'SET failed', (err as Error).message);
    }
  }
  if (param.name.startsWith('server_tls')) {
    try {
      p.serverTls = buildServerTls({ ...p.settings, [param.name]: parsed } as Settings);
    } catch (err) {
      return consoleError(SqlState.InvalidParameterValue, 'SET failed', (err as Error).message);
    }
  }
  (p.settings as unknown as Record<string, unknown>)[param.name] = parsed;
  log.log(`SET ${param.name} = ${formatSettingValue(param.name as SettingName, parsed)}`);
  p.settingsChanged();
  return ok('SET');
}

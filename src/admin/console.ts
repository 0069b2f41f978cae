/* The admin console: the virtual database `pgbouncer`. Access rules, the welcome, and the work phase of a
 * console client (whole messages, simple query protocol), dispatching to the SHOW commands. */

import { BE, FE } from '../protocol/codes.js';
import { errorResponse, noticeResponse, parameterStatus, READY_IDLE } from '../protocol/messages.js';
import { SqlState } from '../protocol/sqlstate.js';
import { PoolerError } from '../util/errors.js';
import { log } from '../util/log.js';
import { StatList } from '../pool/list.js';
import { User } from '../pool/pool.js';
import type { ClientConn } from '../pool/client.js';
import type { Pooler } from '../pooler.js';
import { VERSION } from '../version.js';
import { commandComplete, Oid, ResultWriter } from './rows.js';
import { encodeTable, runShow, showTable, SHOW_ADMIN_ONLY } from './show.js';
import { COMMAND_VERBS, runCommand, runSet, type Answer } from './commands.js';
import { GATHERED, mergeTables } from './merge.js';
import type { WorkerLink } from '../cluster/worker.js';
import type { Table } from '../cluster/messages.js';

export const ADMIN_DB = 'pgbouncer';

/** What a console user may do: admin_users everything, stats_users (and auth_type=any) the read-only SHOWs. */
export type AdminLevel = 'admin' | 'stats';

/** Fake settings a console client can SHOW (PgBouncer answers them for drivers that ask). */
const FAKE_SETTINGS: ReadonlyMap<string, string> = new Map([
  ['client_encoding', 'UTF-8'],
  ['default_transaction_isolation', 'read committed'],
  ['standard_conforming_strings', 'on'],
  ['datestyle', 'ISO'],
  ['timezone', 'GMT'],
]);

/** An ERROR (not FATAL) followed by ReadyForQuery: the console connection stays usable. */
function consoleError(code: string, message: string): Buffer {
  return Buffer.concat([errorResponse({ severity: 'ERROR', code, message }), READY_IDLE]);
}

export function invalidCommand(text: string): Buffer {
  return consoleError(SqlState.SyntaxError, `invalid command '${text}', use SHOW HELP;`);
}

/** Parsed console command: `WORD [WORD]` or `SET key = value`. */
type Command = { kind: 'words'; words: string[] } | { kind: 'set'; key: string; value: string };

const WORD = String.raw`(?:[a-zA-Z0-9_.\-]+|"(?:[^"]|"")*")`;
const WORDS_RE = new RegExp(String.raw`^\s*(${WORD})(?:\s+(${WORD}))?\s*;?\s*$`);
const SET_RE = new RegExp(String.raw`^\s*set\s+(${WORD})\s*(?:=|\s+to\s+)\s*(${WORD}|'(?:[^']|'')*')\s*;?\s*$`, 'i');

function unquote(w: string): string {
  if (w.startsWith('"')) return w.slice(1, -1).replace(/""/g, '"');
  if (w.startsWith("'")) return w.slice(1, -1).replace(/''/g, "'");
  return w;
}

export function parseCommand(text: string): Command | null {
  const set = SET_RE.exec(text);
  if (set) return { kind: 'set', key: unquote(set[1]!), value: unquote(set[2]!) };
  const m = WORDS_RE.exec(text);
  if (!m) return null;
  const words = [unquote(m[1]!)];
  if (m[2] !== undefined) words.push(unquote(m[2]));
  return { kind: 'words', words };
}

export class AdminConsole {
  /** Logged-in console clients (they belong to no pool and never touch a server). */
  readonly clients = new StatList<ClientConn>('admin_clients');

  constructor(private readonly pooler: Pooler) {}

  /** Startup packet for db `pgbouncer`: check access before any password request, then authenticate. */
  login(c: ClientConn, userName: string): void {
    const st = this.pooler.settings;
    let level: AdminLevel | null = null;
    if (st.admin_users.includes(userName)) level = 'admin';
    else if (st.stats_users.includes(userName)) level = 'stats';
    else if (st.auth_type === 'any') level = 'stats'; // PgBouncer: any user gets in, admin rights only via admin_users
    if (!level) throw new PoolerError(SqlState.InvalidAuthorizationSpecification, 'not allowed');
    c.admin = level;
    // the same authentication as any other login (auth_type=any/trust need no password; trust needs the user in auth_file)
    c.beginAuth(null, this.pooler.users.get(userName) ?? new User(userName), ADMIN_DB);
  }

  /** The console client proved who it is: welcome it. */
  authenticated(c: ClientConn): void {
    this.pooler.loginClients.remove(c);
    this.pooler.loginDone(c);
    this.clients.push(c);
    const app = c.vars.get('application_name') ?? '';
    const params = Buffer.concat([
      parameterStatus('server_version', `${VERSION}/bouncer`),
      parameterStatus('client_encoding', 'UTF8'),
      parameterStatus('server_encoding', 'UTF8'),
      parameterStatus('DateStyle', 'ISO'),
      parameterStatus('TimeZone', 'GMT'),
      parameterStatus('standard_conforming_strings', 'on'),
      parameterStatus('is_superuser', 'on'),
      parameterStatus('integer_datetimes', 'on'),
      parameterStatus('application_name', app),
    ]);
    c.finishAdminLogin(params);
  }

  /** A console client went away. */
  gone(c: ClientConn): void {
    this.clients.remove(c);
    this.queued.delete(c);
  }

  /** Messages that arrived while a command of the same client was still running (PAUSE, WAIT_CLOSE). */
  private readonly queued = new Map<ClientConn, [number, Buffer][]>();

  /** One whole message from a logged-in console client. */
  onMessage(c: ClientConn, type: number, msg: Buffer): void {
    const q = this.queued.get(c);
    if (q) {
      q.push([type, Buffer.from(msg)]);
      return;
    }
    switch (type) {
      case FE.Query: {
        c.adminSkipToSync = false;
        const text = msg.toString('utf8', 5, msg.length - 1).replace(/\0+$/, '');
        const answer = this.execute(c, text);
        if (Buffer.isBuffer(answer)) {
          if (answer.length > 0) c.write(answer);
          return;
        }
        // the answer comes later: hold this client's next messages until then, in order
        this.queued.set(c, []);
        void answer.then((buf) => {
          const held = this.queued.get(c) ?? [];
          this.queued.delete(c);
          if (c.socket.destroyed) return;
          c.write(buf);
          for (let i = 0; i < held.length; i++) {
            if (this.queued.has(c)) {
              this.queued.get(c)!.push(...held.slice(i));
              return;
            }
            this.onMessage(c, held[i]![0], held[i]![1]);
          }
        });
        return;
      }
      case FE.Terminate:
        c.close('client close request');
        return;
      case FE.Sync:
        c.adminSkipToSync = false;
        c.write(READY_IDLE);
        return;
      case FE.Parse:
      case FE.Bind:
      case FE.Describe:
      case FE.Execute:
      case FE.Close:
      case FE.Flush:
        // one error per extended-protocol batch; ReadyForQuery when its Sync arrives
        if (!c.adminSkipToSync) {
          c.adminSkipToSync = true;
          c.write(
            errorResponse({
              severity: 'ERROR',
              code: SqlState.FeatureNotSupported,
              message: 'extended query protocol not supported by admin console',
            }),
          );
        }
        return;
      default:
        log.warning(`admin console: unsupported message type '${String.fromCharCode(type)}'`, c);
        c.write(
          consoleError(SqlState.ProtocolViolation, `unsupported message type '${String.fromCharCode(type)}' in admin console`),
        );
    }
  }

  /** Run one console command; the answer ends with ReadyForQuery. */
  execute(c: ClientConn, text: string): Answer {
    log.debug(`admin console: ${text}`, c);
    const cmd = parseCommand(text);
    if (!cmd) return invalidCommand(text);
    if (cmd.kind === 'set') {
      if (FAKE_SETTINGS.has(cmd.key.toLowerCase()))
        return Buffer.concat([
          noticeResponse({ severity: 'NOTICE', code: '00000', message: 'SET ignored' }),
          commandComplete('SET'),
          READY_IDLE,
        ]);
      if (c.admin !== 'admin') return adminNeeded();
      if (this.pooler.cluster) return this.everywhere(this.pooler.cluster, 'set', text, cmd.key.toLowerCase());
      return runSet(this.pooler, cmd.key, cmd.value);
    }
    const [verb, arg] = cmd.words as [string, string | undefined];
    const v = verb.toLowerCase();
    if (v === 'show' || v === 'select') {
      if (arg === undefined) return invalidCommand(text);
      const what = arg.toLowerCase();
      const fake = FAKE_SETTINGS.get(what);
      if (fake !== undefined) return Buffer.concat([runShowFake(arg, fake), READY_IDLE]);
      if (SHOW_ADMIN_ONLY.has(what) && c.admin !== 'admin') return adminNeeded();
      if (this.pooler.cluster && GATHERED.has(what)) return this.gathered(this.pooler.cluster, what);
      const out = runShow(this.pooler, this, c, what);
      if (!out) return invalidCommand(text);
      return Buffer.concat([out, READY_IDLE]);
    }
    // PAUSE, RELOAD…: admin users only (a stats user gets PgBouncer's `admin access needed`)
    if (COMMAND_VERBS.has(v) && c.admin !== 'admin') return adminNeeded();
    if (this.pooler.cluster && COMMAND_VERBS.has(v)) return this.everywhere(this.pooler.cluster, v, text, arg);
    return runCommand(this.pooler, c, v, arg, text) ?? invalidCommand(text);
  }

  // ---- workers > 1 ----

  /** SHOW of every worker's rows, merged (admin/merge.ts). */
  private async gathered(link: WorkerLink, what: string): Promise<Buffer> {
    const t = await this.mergedTable(link, what);
    return Buffer.concat([t ? encodeTable(t) : Buffer.alloc(0), READY_IDLE]);
  }

  private async mergedTable(link: WorkerLink, what: string): Promise<Table | null> {
    const { parts, workers } = await link.gather(what);
    return mergeTables(what, parts, workers) ?? showTable(this.pooler, this, what);
  }

  /**
   * The rows of `SHOW what` (lower case) as the console answers them: this process's, or with workers > 1 every
   * worker's, merged. null for an unknown name. (The metrics are read through here.)
   */
  table(what: string): Promise<Table | null> {
    const link = this.pooler.cluster;
    if (link && GATHERED.has(what)) return this.mergedTable(link, what);
    return Promise.resolve(showTable(this.pooler, this, what));
  }

  /**
   * A command that changes state runs on every worker (through the primary) and is answered once all have answered:
   * with their common answer, or the first error. KILL_CLIENT succeeds if the worker that has the client succeeded.
   * SHUTDOWN goes to the primary, which stops every worker.
   */
  private everywhere(link: WorkerLink, verb: string, text: string, arg?: string): Answer {
    if (verb === 'shutdown') {
      const how = arg?.toLowerCase();
      if (how !== undefined && how !== 'wait_for_servers' && how !== 'wait_for_clients') return invalidCommand(text);
      if (how !== undefined && this.pooler.shutdown !== 'none')
        return consoleError(SqlState.AdminShutdown, 'pooler is shutting down');
      log.log(arg === undefined ? 'SHUTDOWN command issued' : `SHUTDOWN '${arg}' command issued`);
      link.shutdown(how === undefined ? 'immediate' : how === 'wait_for_servers' ? 'wait-for-servers' : 'wait-for-clients');
      return how === undefined ? Buffer.alloc(0) : Buffer.concat([commandComplete('SHUTDOWN'), READY_IDLE]);
    }
    if (verb === 'reload') {
      if (arg !== undefined) return invalidCommand(text);
      log.log('RELOAD command issued');
      return link.broadcast({ kind: 'reload' }).then((oks) =>
        oks.length > 0 && oks.every((ok) => ok === true)
          ? Buffer.concat([commandComplete('RELOAD'), READY_IDLE])
          : consoleError(SqlState.ConfigFileError, 'RELOAD failed, see logs for additional details'),
      );
    }
    return link.broadcast({ kind: 'command', text, verb, arg }).then((answers) => {
      const bufs = answers.filter((a): a is Uint8Array => a instanceof Uint8Array).map((a) => Buffer.from(a.buffer, a.byteOffset, a.length));
      const isError = (b: Buffer) => b[0] === BE.ErrorResponse;
      const pick = verb === 'kill_client' ? bufs.find((b) => !isError(b)) ?? bufs[0] : bufs.find(isError) ?? bufs[0];
      return pick ?? consoleError(SqlState.InternalError, 'no worker answered');
    });
  }

  /** A command sent by another worker's console (workers > 1): run it here only; access was checked there. */
  runLocal(text: string): Promise<Buffer> {
    const cmd = parseCommand(text);
    if (!cmd) return Promise.resolve(invalidCommand(text));
    if (cmd.kind === 'set') return Promise.resolve(runSet(this.pooler, cmd.key, cmd.value));
    const [verb, arg] = cmd.words as [string, string | undefined];
    return Promise.resolve(runCommand(this.pooler, null, verb.toLowerCase(), arg, text) ?? invalidCommand(text));
  }
}

function adminNeeded(): Buffer {
  return consoleError(SqlState.InsufficientPrivilege, 'admin access needed');
}

/** `SHOW client_encoding` etc.: one text column named as asked, one row. */
function runShowFake(name: string, value: string): Buffer {
  return new ResultWriter([[name.toLowerCase(), Oid.Text]]).row([value]).finish();
}

/* Logging: PgBouncer's line format (`<time> UTC [pid] LOG C-<id>: db/user@addr:port msg`) to stderr and/or logfile,
 * and to the sinks of in-process poolers (the library's 'log' event); with workers > 1 a worker's lines have `[w<index>]`
 * after the level. Nothing goes to stderr until configure() asks for it (the CLI does; the library does not). */

import { openSync, writeSync, closeSync } from 'node:fs';

export const enum Level {
  Fatal = 0,
  Error = 1,
  Warning = 2,
  Log = 3,
  Debug = 4,
  Noise = 5,
}

const LEVEL_NAMES: readonly LevelName[] = ['FATAL', 'ERROR', 'WARNING', 'LOG', 'DEBUG', 'NOISE'];

export type LevelName = 'FATAL' | 'ERROR' | 'WARNING' | 'LOG' | 'DEBUG' | 'NOISE';

/** Anything that can prefix a log line (client and server connections implement it). */
export interface LogSubject {
  logPrefix(): string;
  /** The pooler the connection belongs to (client and server connections have one): sinks use it to keep their own lines. */
  readonly pooler?: object;
}

/** One line as a sink gets it: `line` is the whole formatted line without its newline, `text` the message after the level. */
export interface LogLine {
  level: LevelName;
  text: string;
  line: string;
  /** The pooler of the connection the line is about, or undefined for a line about no connection. */
  owner: object | undefined;
}

export interface LogOptions {
  /** Write to stderr (false with -q / -d). */
  stderr: boolean;
  /** Path of the log file, or '' for none. */
  logfile: string;
  /** 0 = LOG and above; 1 = DEBUG; 2+ = NOISE (PgBouncer's `verbose`). */
  verbose: number;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

function timestamp(): string {
  const d = new Date();
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)} UTC`
  );
}

export class Logger {
  private fd = -1;
  private opts: LogOptions = { stderr: false, logfile: '', verbose: 0 };
  /** Receivers of every line written (the library's poolers add one each while they are open). */
  private readonly sinks = new Set<(l: LogLine) => void>();
  /** Put after the level: `[w2] ` in a worker (workers > 1), so every line says which process wrote it. */
  private tag = '';

  /** A worker's lines start with `[w<index>]` after the level (0: no tag). */
  setWorker(index: number): void {
    this.tag = index > 0 ? `[w${index}] ` : '';
  }

  /** Add a receiver of every line; returns the function that removes it. */
  addSink(sink: (l: LogLine) => void): () => void {
    this.sinks.add(sink);
    return () => {
      this.sinks.delete(sink);
    };
  }

  /** The options in force (the library changes only what it was given). */
  options(): Readonly<LogOptions> {
    return this.opts;
  }

  configure(opts: LogOptions): void {
    const reopen = opts.logfile !== this.opts.logfile || this.fd < 0;
    this.opts = { ...opts };
    if (reopen) this.reopen();
  }

  /** Reopen the log file (after rotation: RELOAD / SIGHUP do this, as PgBouncer does). */
  reopen(): void {
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = -1;
    }
    if (this.opts.logfile) {
      try {
        this.fd = openSync(this.opts.logfile, 'a');
      } catch (err) {
        this.opts.logfile = '';
        this.write(Level.Error, `cannot open logfile: ${(err as Error).message}`);
      }
    }
  }

  enabled(level: Level): boolean {
    return level <= Level.Log + this.opts.verbose;
  }

  write(level: Level, msg: string, subject?: LogSubject): void {
    if (!this.enabled(level)) return;
    const before = subject ? subject.logPrefix() : '';
    const prefix = before ? before + ' ' : '';
    const name = LEVEL_NAMES[level]!;
    const text = `${this.tag}${prefix}${msg}`;
    const line = `${timestamp()} [${process.pid}] ${name} ${text}\n`;
    if (this.opts.stderr) process.stderr.write(line);
    if (this.fd >= 0) {
      try {
        writeSync(this.fd, line);
      } catch {
        /* disk full or file gone: keep serving */
      }
    }
    if (this.sinks.size > 0) {
      const l: LogLine = { level: name, text, line: line.slice(0, -1), owner: subject?.pooler };
      for (const sink of this.sinks) {
        try {
          sink(l);
        } catch (err) {
          // a receiver that throws must not unwind the connection code that logged: it surfaces as its own uncaught error
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    }
  }

  fatal(msg: string, s?: LogSubject): void {
    this.write(Level.Fatal, msg, s);
  }
  error(msg: string, s?: LogSubject): void {
    this.write(Level.Error, msg, s);
  }
  warning(msg: string, s?: LogSubject): void {
    this.write(Level.Warning, msg, s);
  }
  log(msg: string, s?: LogSubject): void {
    this.write(Level.Log, msg, s);
  }
  debug(msg: string, s?: LogSubject): void {
    if (this.opts.verbose >= 1) this.write(Level.Debug, msg, s);
  }
  noise(msg: string, s?: LogSubject): void {
    if (this.opts.verbose >= 2) this.write(Level.Noise, msg, s);
  }

  close(): void {
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        /* ignore */
      }
      this.fd = -1;
    }
  }
}

/** The process-wide logger. */
export const log = new Logger();

/* Logging: PgBouncer's line format (`<time> UTC [pid] LOG C-<id>: db/user@addr:port msg`) to stderr and/or logfile;
 * with workers > 1 a worker's lines have `[w<index>]` after the level. */

import { openSync, writeSync, closeSync } from 'node:fs';

export const enum Level {
  Fatal = 0,
  Error = 1,
  Warning = 2,
  Log = 3,
  Debug = 4,
  Noise = 5,
}

const LEVEL_NAMES = ['FATAL', 'ERROR', 'WARNING', 'LOG', 'DEBUG', 'NOISE'];

/** Anything that can prefix a log line (client and server connections implement it). */
export interface LogSubject {
  logPrefix(): string;
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
  private opts: LogOptions = { stderr: true, logfile: '', verbose: 0 };
  /** Lines kept in memory for tests and embedding (off unless set). */
  onLine: ((line: string) => void) | undefined;
  /** Put after the level: `[w2] ` in a worker (workers > 1), so every line says which process wrote it. */
  private tag = '';

  /** A worker's lines start with `[w<index>]` after the level (0: no tag). */
  setWorker(index: number): void {
    this.tag = index > 0 ? `[w${index}] ` : '';
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
    const prefix = subject ? subject.logPrefix() + ' ' : '';
    const line = `${timestamp()} [${process.pid}] ${LEVEL_NAMES[level]} ${this.tag}${prefix}${msg}\n`;
    if (this.opts.stderr) process.stderr.write(line);
    if (this.fd >= 0) {
      try {
        writeSync(this.fd, line);
      } catch {
        /* disk full or file gone: keep serving */
      }
    }
    if (this.onLine) this.onLine(line);
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

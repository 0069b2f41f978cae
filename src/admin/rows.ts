/* A result-set writer for the admin console: RowDescription, DataRows (text format) and CommandComplete. */

import { BE } from '../protocol/codes.js';

/** Column type OIDs PgBouncer uses in its console answers. */
export const enum Oid {
  Bytea = 17,
  Int8 = 20,
  Int4 = 23,
  Text = 25,
  Numeric = 1700,
}

/** Type sizes in RowDescription, as PostgreSQL reports them (-1 = variable). */
function typeSize(oid: Oid): number {
  switch (oid) {
    case Oid.Int4:
      return 4;
    case Oid.Int8:
      return 8;
    default:
      return -1;
  }
}

export type Column = readonly [name: string, type: Oid];
/** A cell: text as is, numbers in decimal, bigint for counters that may pass 2^53, null as SQL NULL. */
export type Cell = string | number | bigint | null;

/** Collects one result set; `finish()` returns every message of it, ready to send. */
export class ResultWriter {
  private readonly parts: Buffer[] = [];
  private rows = 0;

  constructor(readonly columns: readonly Column[]) {
    if (columns.length === 0) return; // PgBouncer's SHOW HELP: no RowDescription at all
    let len = 4 + 2;
    const names = columns.map(([name]) => Buffer.from(name + '\0', 'utf8'));
    for (const n of names) len += n.length + 18;
    const b = Buffer.allocUnsafe(1 + len);
    b[0] = BE.RowDescription;
    b.writeInt32BE(len, 1);
    b.writeInt16BE(columns.length, 5);
    let pos = 7;
    columns.forEach(([, type], i) => {
      pos += names[i]!.copy(b, pos);
      b.writeInt32BE(0, pos); // table OID
      b.writeInt16BE(0, pos + 4); // column number
      b.writeInt32BE(type, pos + 6);
      b.writeInt16BE(typeSize(type), pos + 10);
      b.writeInt32BE(-1, pos + 12); // type modifier
      b.writeInt16BE(0, pos + 16); // text format
      pos += 18;
    });
    this.parts.push(b);
  }

  row(cells: readonly Cell[]): this {
    if (cells.length !== this.columns.length)
      throw new Error(`admin row has ${cells.length} cells for ${this.columns.length} columns`);
    const values = cells.map((c) => (c === null ? null : Buffer.from(typeof c === 'string' ? c : String(c), 'utf8')));
    let len = 4 + 2;
    for (const v of values) len += 4 + (v ? v.length : 0);
    const b = Buffer.allocUnsafe(1 + len);
    b[0] = BE.DataRow;
    b.writeInt32BE(len, 1);
    b.writeInt16BE(values.length, 5);
    let pos = 7;
    for (const v of values) {
      if (v === null) {
        b.writeInt32BE(-1, pos);
        pos += 4;
      } else {
        b.writeInt32BE(v.length, pos);
        pos += 4 + v.copy(b, pos + 4);
      }
    }
    this.parts.push(b);
    this.rows++;
    return this;
  }

  get rowCount(): number {
    return this.rows;
  }

  /** Append CommandComplete with `tag` (PgBouncer answers every SHOW with the tag `SHOW`). */
  finish(tag = 'SHOW'): Buffer {
    this.parts.push(commandComplete(tag));
    return Buffer.concat(this.parts);
  }
}

export function commandComplete(tag: string): Buffer {
  const t = Buffer.from(tag + '\0', 'utf8');
  const b = Buffer.allocUnsafe(5 + t.length);
  b[0] = BE.CommandComplete;
  b.writeInt32BE(4 + t.length, 1);
  t.copy(b, 5);
  return b;
}

/** Seconds and the microseconds remainder, as PgBouncer splits wait/maxwait. */
export function splitUs(totalUs: number): [number, number] {
  const us = Math.max(0, Math.floor(totalUs));
  return [Math.floor(us / 1e6), us % 1e6];
}

/** PgBouncer's timestamp format for connect_time / request_time (here always in UTC). */
export function formatTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} UTC`
  );
}

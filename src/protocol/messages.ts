/* Encoders for the messages the pooler writes itself, and decoders for the few it must read. */

import { AuthCode, BE, FE, StartupCode, TxStatus } from './codes.js';
import { ProtocolError, Reader } from './reader.js';

/** Build a typed message: type byte, int32 length, body. */
function typed(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
}

// ---- prebuilt frames -------------------------------------------------------

export const READY_IDLE = typed(BE.ReadyForQuery, Buffer.from([TxStatus.Idle]));
export const READY_IN_TX = typed(BE.ReadyForQuery, Buffer.from([TxStatus.InTransaction]));
export const READY_FAILED = typed(BE.ReadyForQuery, Buffer.from([TxStatus.Failed]));

/** ReadyForQuery with the given transaction status byte. */
export function readyForQuery(status: number): Buffer {
  return status === TxStatus.Idle ? READY_IDLE : status === TxStatus.InTransaction ? READY_IN_TX : READY_FAILED;
}
export const AUTH_OK = typed(BE.Authentication, int32(AuthCode.Ok));
export const AUTH_CLEARTEXT = typed(BE.Authentication, int32(AuthCode.CleartextPassword));
export const TERMINATE = typed(FE.Terminate, Buffer.alloc(0));
export const SYNC = typed(FE.Sync, Buffer.alloc(0));
/** Single-byte answers to SSLRequest / GSSENCRequest. */
export const SSL_NO = Buffer.from('N');

// ---- backend messages ------------------------------------------------------

export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'LOG' | 'INFO' | 'DEBUG';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fields(type: number, f: ErrorFields): Buffer {
  const parts: Buffer[] = [
    Buffer.from('S' + f.severity + '\0V' + f.severity + '\0C' + f.code + '\0', 'utf8'),
    Buffer.from('M' + f.message + '\0', 'utf8'),
  ];
  if (f.detail) parts.push(Buffer.from('D' + f.detail + '\0', 'utf8'));
  if (f.hint) parts.push(Buffer.from('H' + f.hint + '\0', 'utf8'));
  parts.push(Buffer.from([0]));
  return typed(type, Buffer.concat(parts));
}

export function errorResponse(f: ErrorFields): Buffer {
  return fields(BE.ErrorResponse, f);
}

export function noticeResponse(f: ErrorFields): Buffer {
  return fields(BE.NoticeResponse, f);
}

export function parameterStatus(name: string, value: string): Buffer {
  return typed(BE.ParameterStatus, Buffer.concat([cstr(name), cstr(value)]));
}

export function backendKeyData(pid: number, key: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeInt32BE(pid, 0);
  b.writeInt32BE(key, 4);
  return typed(BE.BackendKeyData, b);
}

export function authMd5(salt: Buffer): Buffer {
  return typed(BE.Authentication, Buffer.concat([int32(AuthCode.MD5Password), salt]));
}

export function authSasl(mechanisms: string[]): Buffer {
  return typed(
    BE.Authentication,
    Buffer.concat([int32(AuthCode.SASL), ...mechanisms.map(cstr), Buffer.from([0])]),
  );
}

export function authSaslContinue(data: string): Buffer {
  return typed(BE.Authentication, Buffer.concat([int32(AuthCode.SASLContinue), Buffer.from(data, 'utf8')]));
}

export function authSaslFinal(data: string): Buffer {
  return typed(BE.Authentication, Buffer.concat([int32(AuthCode.SASLFinal), Buffer.from(data, 'utf8')]));
}

export function negotiateProtocolVersion(minor: number, unsupported: string[]): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeInt32BE((3 << 16) | minor, 0);
  b.writeInt32BE(unsupported.length, 4);
  return typed(BE.NegotiateProtocolVersion, Buffer.concat([b, ...unsupported.map(cstr)]));
}

// ---- frontend messages (the pooler as a client of PostgreSQL) ---------------

export function startupMessage(params: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [int32(0), int32(StartupCode.ProtocolV3)];
  for (const [k, v] of params) parts.push(cstr(k), cstr(v));
  parts.push(Buffer.from([0]));
  const out = Buffer.concat(parts);
  out.writeInt32BE(out.length, 0);
  return out;
}

export function cancelRequest(pid: number, key: number): Buffer {
  const b = Buffer.allocUnsafe(16);
  b.writeInt32BE(16, 0);
  b.writeInt32BE(StartupCode.CancelRequest, 4);
  b.writeInt32BE(pid, 8);
  b.writeInt32BE(key, 12);
  return b;
}

export function query(sql: string): Buffer {
  return typed(FE.Query, cstr(sql));
}

export function passwordMessage(password: string): Buffer {
  return typed(FE.Password, cstr(password));
}

export function saslInitialResponse(mechanism: string, data: string): Buffer {
  const d = Buffer.from(data, 'utf8');
  return typed(FE.Password, Buffer.concat([cstr(mechanism), int32(d.length), d]));
}

export function saslResponse(data: string): Buffer {
  return typed(FE.Password, Buffer.from(data, 'utf8'));
}

// ---- decoders ----------------------------------------------------------------

export interface ParsedError {
  severity: string;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** Decode the body of an ErrorResponse / NoticeResponse (start = first field byte). */
export function parseErrorBody(buf: Buffer, start: number, end: number): ParsedError {
  const r = new Reader(buf, start, end);
  const out: ParsedError = { severity: 'ERROR', code: '', message: '' };
  let nonLocalized = '';
  while (r.remaining() > 0) {
    const t = r.u8();
    if (t === 0) break;
    const v = r.cstring();
    switch (t) {
      case 0x53: // S
        out.severity = v;
        break;
      case 0x56: // V
        nonLocalized = v;
        break;
      case 0x43: // C
        out.code = v;
        break;
      case 0x4d: // M
        out.message = v;
        break;
      case 0x44: // D
        out.detail = v;
        break;
      case 0x48: // H
        out.hint = v;
        break;
    }
  }
  if (nonLocalized) out.severity = nonLocalized;
  return out;
}

export interface StartupPacket {
  /** Protocol code (v3, SSLRequest, CancelRequest, …) or the raw version. */
  code: number;
  params: Map<string, string>;
  /** For CancelRequest. */
  cancelPid?: number;
  cancelKey?: number;
}

/** Decode a complete untyped startup-phase packet (buf[start..end) includes the length word). */
export function parseStartupPacket(buf: Buffer, start: number, end: number): StartupPacket {
  const r = new Reader(buf, start + 4, end);
  const code = r.i32();
  const params = new Map<string, string>();
  if (code === StartupCode.CancelRequest) {
    if (end - start !== 16) throw new ProtocolError('invalid length of cancel request packet');
    return { code, params, cancelPid: r.i32(), cancelKey: r.i32() };
  }
  if (code >> 16 !== 3) return { code, params };
  for (;;) {
    if (r.remaining() === 0) throw new ProtocolError('invalid startup packet layout: expected terminator as last byte');
    const k = r.cstring();
    if (k === '') break;
    const v = r.cstring();
    params.set(k, v);
  }
  if (r.remaining() !== 0) throw new ProtocolError('invalid startup packet layout: expected terminator as last byte');
  return { code, params };
}

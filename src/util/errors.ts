/* PoolerError: an error meant for a client, carrying its SQLSTATE; it serializes itself to ErrorResponse. */

import { errorResponse } from '../protocol/messages.js';
import { SqlState } from '../protocol/sqlstate.js';

export class PoolerError extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
    readonly fatal = true,
    readonly detail?: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'PoolerError';
  }

  toMessage(): Buffer {
    return errorResponse({
      severity: this.fatal ? 'FATAL' : 'ERROR',
      code: this.sqlstate,
      message: this.message,
      detail: this.detail,
      hint: this.hint,
    });
  }
}

export function protocolViolation(message: string): PoolerError {
  return new PoolerError(SqlState.ProtocolViolation, message);
}

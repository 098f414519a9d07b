/** Assertions on the incremental codecs' ParseResult (SOCKS, Convert). */
import assert from 'node:assert/strict';
import type { ErrorCode } from '../../src/core/errors';
import type { ParseResult } from '../../src/proxy/socks/codec/common';

export function okValue<T>(r: ParseResult<T>): { value: T; consumed: number } {
  assert.equal(r.kind, 'ok', `expected ok, got ${JSON.stringify(r)}`);
  return r as { kind: 'ok'; value: T; consumed: number };
}

export function errorCode<T>(r: ParseResult<T>): ErrorCode {
  assert.equal(r.kind, 'error', `expected error, got ${JSON.stringify(r)}`);
  return (r as { code: ErrorCode }).code;
}

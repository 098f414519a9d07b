/**
 * The limit log on its own: a winston logger writing into an array, the real event bus, real
 * ProxyErrors. One line per (code, client) per interval, the rest counted into one summary;
 * other codes untouched; the key table bounded.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClientConnection } from '../../src/core/connection';
import { ErrorCode, ProxyError } from '../../src/core/errors';
import { ProxyEvents } from '../../src/core/events';
import { isLimitCode, logLimitHits } from '../../src/log/limit-log';
import { captureLog } from '../../testkit/log-capture';

const conn = (client: string): ClientConnection => ({ clientAddress: client, listener: 'http', id: 1 }) as unknown as ClientConnection;
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('limit log', () => {
  test('limit codes only', () => {
    for (const c of [ErrorCode.LimitReached, ErrorCode.HandshakeTimeout, ErrorCode.IdleTimeout, ErrorCode.ConnectTimeout]) assert.ok(isLimitCode(c), c);
    for (const c of [ErrorCode.BadRequest, ErrorCode.DestDenied, ErrorCode.AuthFailed, 'ok']) assert.ok(!isLimitCode(c), c);
  });

  test('1000 hits from two clients: two lines, then two summaries with the counts', async () => {
    const { log, lines } = captureLog();
    const events = new ProxyEvents();
    const limits = logLimitHits(events, log, 60_000);
    for (let i = 0; i < 600; i++) events.emit('proxy-error', new ProxyError(ErrorCode.LimitReached, 'per-client'), conn('10.0.0.1'));
    for (let i = 0; i < 400; i++) events.emit('proxy-error', new ProxyError(ErrorCode.LimitReached, 'per-client'), conn('10.0.0.2'));
    events.emit('proxy-error', new ProxyError(ErrorCode.BadRequest), conn('10.0.0.1'));
    await settle();
    assert.deepEqual(
      lines.map((l) => [l.message, l.client]),
      [
        ['limit hit', '10.0.0.1'],
        ['limit hit', '10.0.0.2'],
      ],
    );
    limits.flush();
    await settle();
    assert.deepEqual(
      lines.slice(2).map((l) => [l.message, l.client, l.count]),
      [
        ['limit hits not logged one by one', '10.0.0.1', 599],
        ['limit hits not logged one by one', '10.0.0.2', 399],
      ],
    );
    // A new interval logs the first hit again.
    events.emit('proxy-error', new ProxyError(ErrorCode.LimitReached), conn('10.0.0.1'));
    await settle();
    assert.equal(lines.at(-1)?.message, 'limit hit');
  });

  test('the key table is bounded: past 1000 clients, hits are summed under "*"', async () => {
    const { log, lines } = captureLog();
    const events = new ProxyEvents();
    const limits = logLimitHits(events, log, 60_000);
    for (let i = 0; i < 3000; i++) events.emit('proxy-error', new ProxyError(ErrorCode.HandshakeTimeout), conn(`10.1.${i >> 8}.${i & 255}`));
    limits.flush();
    await settle();
    assert.equal(lines.filter((l) => l.message === 'limit hit').length, 1001);
    const star = lines.find((l) => l.client === '*' && l.message === 'limit hits not logged one by one');
    assert.equal(star?.count, 1999);
  });
});

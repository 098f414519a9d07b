/**
 * The one refusal path: every code's answer rendered from the error table for each protocol, the
 * connection marked, the errors counter's event emitted, one log line in one shape (limit codes
 * left to the limit log), and the answer run last. The live HTTP and SOCKS tests check that the
 * front ends put these bytes on the wire.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClientConnection } from '../../src/core/connection';
import { ERROR_TABLE, ErrorCode, ProxyError } from '../../src/core/errors';
import { ProxyEvents } from '../../src/core/events';
import { refusalBytes, refuse } from '../../src/proxy/refusal';
import { captureLog } from '../../testkit/log-capture';

function fakeConn(): ClientConnection & { failed: ProxyError[] } {
  const failed: ProxyError[] = [];
  return {
    id: 7, listener: 'http', protocol: 'connect', clientAddress: '10.0.0.9', clientPort: 4242, user: null,
    destination: { host: 'example.test', port: 443 },
    fail: (e: ProxyError) => failed.push(e), failed,
  } as unknown as ClientConnection & { failed: ProxyError[] };
}
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('refusal', () => {
  test('HTTP answers: status line, code header, body length, realm on 407, close', () => {
    for (const code of Object.values(ErrorCode)) {
      const text = refusalBytes('http', code).toString('latin1');
      const [head, body] = text.split('\r\n\r\n') as [string, string];
      const status = ERROR_TABLE[code].http;
      assert.match(head, new RegExp(`^HTTP/1.1 ${status} \\S`), code);
      assert.match(head, new RegExp(`\r\nX-Mptcp-Proxy-Error: ${code}(\r\n|$)`), code);
      assert.match(head, /\r\nConnection: close(\r\n|$)/, code);
      assert.equal(Number(/\r\nContent-Length: (\d+)/.exec(head)?.[1]), Buffer.byteLength(body), code);
      assert.equal(body, `${status} ${ERROR_TABLE[code].text}\n`);
      assert.equal(/Proxy-Authenticate: Basic/.test(head), status === 407, code);
    }
    assert.match(refusalBytes('http', ErrorCode.LimitReached, 431).toString(), /^HTTP\/1.1 431 Request Header Fields Too Large\r\n/);
  });

  test('SOCKS answers carry the table reply code', () => {
    for (const code of Object.values(ErrorCode)) {
      const s5 = refusalBytes('socks5', code);
      assert.deepEqual([s5[0], s5[1], s5[2], s5[3]], [5, ERROR_TABLE[code].socks5, 0, 1], code);
      const s4 = refusalBytes('socks4', code);
      assert.deepEqual([s4.length, s4[0], s4[1]], [8, 0, ERROR_TABLE[code].socks4], code);
    }
  });

  test('refuse marks, counts, logs one line in one shape, then answers', async () => {
    const { log, lines } = captureLog();
    const events = new ProxyEvents();
    const counted: string[] = [];
    events.on('proxy-error', (e) => counted.push(e.code));
    const conn = fakeConn();
    let answered = 0;
    refuse({ events, log }, conn, new ProxyError(ErrorCode.DestDenied, '127.0.0.1'), () => answered++);
    await settle();
    assert.deepEqual(conn.failed.map((e) => e.code), [ErrorCode.DestDenied]);
    assert.deepEqual(counted, [ErrorCode.DestDenied]);
    assert.equal(answered, 1);
    assert.equal(lines.length, 1);
    assert.deepEqual(
      { ...lines[0], timestamp: undefined },
      { level: 'warn', message: 'refused', conn: 7, listener: 'http', protocol: 'connect', client: '10.0.0.9:4242', destination: 'example.test:443', code: ErrorCode.DestDenied, detail: 'destination not allowed: 127.0.0.1', timestamp: undefined },
    );
  });

  test('limit codes are counted and answered but left to the limit log', async () => {
    const { log, lines } = captureLog();
    const events = new ProxyEvents();
    let counted = 0;
    events.on('proxy-error', () => counted++);
    let answered = 0;
    refuse({ events, log }, fakeConn(), new ProxyError(ErrorCode.HandshakeTimeout), () => answered++);
    refuse({ events, log }, null, new ProxyError(ErrorCode.LimitReached), undefined, '10.0.0.1');
    await settle();
    assert.equal(counted, 2);
    assert.equal(answered, 1);
    assert.equal(lines.length, 0);
  });
});

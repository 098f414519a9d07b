/**
 * RFC 9112 message rules of the HTTP front end, against the real front end on loopback (real
 * access control, upstream connector and Node parser) and a real origin server that records
 * every connection and request it gets: an absolute-form request reaches the origin with the
 * target's authority as its one Host; a request with more than one or an invalid Host, an
 * HTTP/0.9 or HTTP/2.0 request line, runs of spaces in the request line (also on a later
 * keep-alive request) or Transfer-Encoding in HTTP/1.0 gets 400 and close, with the code logged
 * and counted, and never reaches the origin.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import winston from 'winston';
import { ErrorCode } from '../../src/core/errors';
import { ProxyMetrics } from '../../src/metrics/metrics';
import { startSocksProxy, type SocksProxy } from '../socks/harness';
import { exchange, httpStatus } from '../ops/wire-client';

interface Seen {
  method: string;
  url: string;
  hosts: string[];
}

describe('HTTP front end: RFC 9112 message rules', () => {
  let proxy: SocksProxy;
  let origin: http.Server;
  let originPort: number;
  let T: string;
  const seen: Seen[] = [];
  let originConnections = 0;
  const logLines: Record<string, unknown>[] = [];
  const metrics = new ProxyMetrics('test');

  before(async () => {
    origin = http.createServer((req, res) => {
      const hosts = req.rawHeaders.filter((_, i) => i % 2 === 1 && req.rawHeaders[i - 1]!.toLowerCase() === 'host');
      seen.push({ method: req.method!, url: req.url!, hosts });
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    origin.on('connection', () => originConnections++);
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    originPort = (origin.address() as net.AddressInfo).port;
    T = `127.0.0.1:${originPort}`;
    proxy = await startSocksProxy({ access: { allowDest: ['127.0.0.0/8'] } }, { http: true });
    const stream = new PassThrough();
    stream.on('data', (l: Buffer) => logLines.push(JSON.parse(l.toString())));
    proxy.ctx.log = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
    metrics.observeConnections(proxy.ctx.events);
  });
  after(async () => {
    await proxy?.close();
    origin?.closeAllConnections();
    await new Promise((r) => origin?.close(r));
  });

  const send = (chunks: string[], delayMs = 0): ReturnType<typeof exchange> =>
    exchange({ host: '127.0.0.1', port: proxy.port }, chunks.map((c) => Buffer.from(c, 'latin1')), { delayMs, waitMs: 3000 });
  const statuses = (data: Buffer): number[] => [...data.toString('latin1').matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
  const errorCount = async (code: string): Promise<number> => (await metrics.errors.get()).values.find((v) => v.labels.code === code)?.value ?? 0;

  test('absolute-form: the origin gets the target authority as its one Host, whatever the client sent', async () => {
    seen.length = 0;
    const x = await send([
      `GET http://${T}/spoofed HTTP/1.1\r\nHost: evil.example\r\n\r\n` +
        `GET http://${T}/missing HTTP/1.1\r\n\r\n` +
        `GET http://${T}/case HTTP/1.1\r\nhOsT: EVIL.example:1\r\nConnection: close\r\n\r\n`,
    ]);
    assert.deepEqual(statuses(x.data), [200, 200, 200], x.data.toString('latin1'));
    // HTTP/1.0 without Host, on its own connection (1.0 closes after the response).
    assert.equal(httpStatus((await send([`GET http://${T}/old HTTP/1.0\r\n\r\n`])).data), 200);
    assert.deepEqual(
      seen.map((s) => [s.url, s.hosts]),
      [
        ['/spoofed', [T]],
        ['/missing', [T]],
        ['/case', [T]],
        ['/old', [T]],
      ],
    );
  });

  const REFUSED: [name: string, request: () => string, code: string][] = [
    ['two different Host lines', () => `GET http://${T}/ HTTP/1.1\r\nHost: ${T}\r\nHost: evil.example\r\n\r\n`, ErrorCode.BadRequest],
    ['two equal Host lines', () => `GET http://${T}/ HTTP/1.1\r\nHost: ${T}\r\nhost: ${T}\r\n\r\n`, ErrorCode.BadRequest],
    ['a Host list', () => `GET http://${T}/ HTTP/1.1\r\nHost: ${T}, evil.example\r\n\r\n`, ErrorCode.BadRequest],
    ['a Host with a path', () => `GET http://${T}/ HTTP/1.1\r\nHost: ${T}/x\r\n\r\n`, ErrorCode.BadRequest],
    ['HTTP/0.9 request line', () => `GET http://${T}/\r\n\r\n`, ErrorCode.VersionUnsupported],
    ['HTTP/0.9 request line with fields', () => `GET http://${T}/\r\nHost: ${T}\r\n\r\n`, ErrorCode.VersionUnsupported],
    ['HTTP/2.0 request line', () => `GET http://${T}/ HTTP/2.0\r\nHost: ${T}\r\n\r\n`, ErrorCode.VersionUnsupported],
    ['two spaces after the method', () => `GET  http://${T}/ HTTP/1.1\r\nHost: ${T}\r\n\r\n`, ErrorCode.BadRequest],
    ['two spaces before the version', () => `GET http://${T}/  HTTP/1.1\r\nHost: ${T}\r\n\r\n`, ErrorCode.BadRequest],
    ['Transfer-Encoding in HTTP/1.0', () => `POST http://${T}/ HTTP/1.0\r\nHost: ${T}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, ErrorCode.BadRequest],
    ['CONNECT with two Host lines', () => `CONNECT ${T} HTTP/1.1\r\nHost: ${T}\r\nHost: evil.example:443\r\n\r\n`, ErrorCode.BadRequest],
    ['CONNECT with two spaces', () => `CONNECT  ${T} HTTP/1.1\r\nHost: ${T}\r\n\r\n`, ErrorCode.BadRequest],
    ['CONNECT HTTP/0.9', () => `CONNECT ${T}\r\n\r\n`, ErrorCode.VersionUnsupported],
  ];

  for (const [name, request, code] of REFUSED) {
    test(`${name}: 400 and close, logged and counted, nothing reaches the origin`, async () => {
      seen.length = 0;
      originConnections = 0;
      const logged = logLines.length;
      const counted = await errorCount(code);
      const x = await send([request()]);
      const text = x.data.toString('latin1');
      assert.equal(httpStatus(x.data), 400, text);
      assert.match(text, new RegExp(`\\r\\nX-Mptcp-Proxy-Error: ${code}\\r\\n`, 'i'));
      assert.match(text, /\r\nConnection: close\r\n/i);
      assert.ok(x.closed, 'the proxy closes the connection');
      await proxy.drained();
      assert.equal(proxy.errors.at(-1)?.err.code, code);
      assert.equal(await errorCount(code), counted + 1, 'mptcp_proxy_errors_total{code}');
      assert.ok(logLines.slice(logged).some((l) => l.message === 'refused' && l.code === code), JSON.stringify(logLines.slice(logged)));
      assert.deepEqual(seen, []);
      assert.equal(originConnections, 0);
    });
  }

  test('nothing pipelined behind a refusal that closes the connection is forwarded or tunnelled', async () => {
    seen.length = 0;
    originConnections = 0;
    for (const next of [`GET http://${T}/after HTTP/1.1\r\nHost: ${T}\r\n\r\n`, `CONNECT ${T} HTTP/1.1\r\nHost: ${T}\r\n\r\n`]) {
      // An origin-form target is refused with close (this is a proxy, not an origin).
      const x = await send([`GET /origin-form HTTP/1.1\r\nHost: ${T}\r\n\r\n${next}`]);
      assert.deepEqual(statuses(x.data), [400], x.data.toString('latin1'));
      assert.ok(x.closed);
    }
    await proxy.drained();
    assert.deepEqual(seen, []);
    assert.equal(originConnections, 0);
  });

  test('a request straight after a body (no CRLF between) is served, in one piece or two', async () => {
    seen.length = 0;
    const post = `POST http://${T}/a HTTP/1.1\r\nHost: ${T}\r\nContent-Length: 3\r\n\r\nabc`;
    const get = `GET http://${T}/b HTTP/1.1\r\nHost: ${T}\r\nConnection: close\r\n\r\n`;
    for (const pieces of [[post + get], [post, get]]) {
      const x = await send(pieces, 50);
      assert.deepEqual(statuses(x.data), [200, 200], x.data.toString('latin1'));
    }
    assert.deepEqual(seen.map((s) => s.url), ['/a', '/b', '/a', '/b']);
  });

  test('request lines are checked on every keep-alive request, after bodies, in any pieces', async () => {
    seen.length = 0;
    // Bodies that hold what looks like a request line, sized, chunked and large; the heads cut
    // into small pieces; then a request with a double space, which must not be forwarded.
    const bait = `\r\nGET  http://${T}/bait HTTP/1.1\r\n`;
    const big = 'x'.repeat(300_000);
    const stream =
      `POST http://${T}/one HTTP/1.1\r\nHost: ${T}\r\nContent-Length: ${bait.length}\r\n\r\n${bait}` +
      `POST http://${T}/two HTTP/1.1\r\nHost: ${T}\r\nTransfer-Encoding: chunked\r\n\r\n${bait.length.toString(16)}\r\n${bait}\r\n0\r\n\r\n` +
      `PUT http://${T}/three HTTP/1.1\r\nHost: ${T}\r\nContent-Length: ${big.length}\r\n\r\n${big}` +
      `\r\nGET http://${T}/four HTTP/1.1\r\nHost: ${T}\r\n\r\n` +
      `GET  http://${T}/five HTTP/1.1\r\nHost: ${T}\r\n\r\n` +
      `GET http://${T}/six HTTP/1.1\r\nHost: ${T}\r\n\r\n`;
    const pieces: string[] = [];
    for (let at = 0; at < stream.length; ) {
      const n = at > 400 && at < 300_200 ? 65_536 : 7;
      pieces.push(stream.slice(at, at + n));
      at += n;
    }
    const x = await send(pieces, 1);
    assert.deepEqual(statuses(x.data), [200, 200, 200, 200, 400], x.data.toString('latin1').replace(/ok/g, ''));
    assert.ok(x.closed);
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/one', '/two', '/three', '/four'],
    );
  });

  test('the request lines are read where Node parses them: its parser keeps the socket (native reads, no data tap)', async () => {
    seen.length = 0;
    const conns = proxy.conns.length;
    const sock = net.connect(proxy.port, '127.0.0.1');
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    await new Promise((r) => sock.once('connect', r));
    const answered = async (n: number): Promise<void> => {
      for (let i = 0; i < 300 && statuses(Buffer.concat(got)).length < n; i++) await new Promise((r) => setTimeout(r, 10));
    };
    // One piece, two pipelined, a head cut in three, then a double space.
    sock.write(`GET http://${T}/a HTTP/1.1\r\nHost: ${T}\r\n\r\n`);
    await answered(1);
    sock.write(`GET http://${T}/b HTTP/1.1\r\n\r\nGET http://${T}/c HTTP/1.1\r\n\r\n`);
    await answered(3);
    for (const piece of ['GE', `T http://${T}/d HT`, 'TP/1.1\r\n\r\n']) {
      sock.write(piece);
      await new Promise((r) => setTimeout(r, 20));
    }
    await answered(4);
    const client = proxy.conns[conns]!.socket as net.Socket & { parser?: { _consumed?: boolean } };
    assert.equal(client.parser?._consumed, true, 'Node parses the socket natively');
    assert.equal(client.listenerCount('data'), 1, "only the server's own 'data' listener");
    sock.write(`GET http://${T}/e  HTTP/1.1\r\n\r\n`);
    await answered(5);
    sock.destroy();
    assert.deepEqual(statuses(Buffer.concat(got)), [200, 200, 200, 200, 400]);
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/a', '/b', '/c', '/d'],
    );
  });
});

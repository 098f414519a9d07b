/**
 * The forward proxy's own HTTP client (origin-pool.ts), against the real HTTP front end on
 * loopback and origins that script their answers byte for byte: upstream connections are kept
 * and reused; an idle one the origin closes is not used again; an idle one that sends anything is
 * dropped, never read as the next answer; request
 * bodies are framed as they came (a chunked GET stays chunked, a POST without content says
 * Content-Length: 0); 1xx, HEAD, 304 and close-delimited answers; an answer that ends before its
 * request body was sent, and a client leaving mid-answer, close the origin connection.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startSocksProxy, type SocksProxy } from '../socks/harness';
import { exchange } from '../ops/wire-client';
import { sleep } from '../../testkit/sleep';

/** An origin that hands every request head (and the socket it came on) to the test's script. */
class ScriptedOrigin {
  readonly server: net.Server;
  readonly sockets: net.Socket[] = [];
  closed = 0;
  script: (head: string, socket: net.Socket, index: number) => void = () => undefined;
  port = 0;

  constructor() {
    this.server = net.createServer((socket) => {
      const index = this.sockets.push(socket) - 1;
      let buf = '';
      socket.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
          const head = buf.slice(0, end + 4);
          buf = buf.slice(end + 4);
          this.script(head, socket, index);
        }
      });
      socket.on('close', () => this.closed++);
      socket.on('error', () => undefined);
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** A new script, once every connection of the last one has closed. */
  async reset(script: ScriptedOrigin['script']): Promise<void> {
    await Promise.all(this.sockets.map((s) => (s.closed ? undefined : new Promise((r) => s.once('close', r).destroy()))));
    this.sockets.length = 0;
    this.closed = 0;
    this.script = script;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

const ok = (body: string): string => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('HTTP forward: the origin connections', () => {
  let proxy: SocksProxy;
  const origin = new ScriptedOrigin();
  let T: string;
  /** A Node origin that answers with what it got: method, framing fields and body. */
  let echo: http.Server;
  let E: string;

  before(async () => {
    await origin.listen();
    T = `127.0.0.1:${origin.port}`;
    echo = http.createServer((req, res) => {
      const body: Buffer[] = [];
      req.on('data', (c: Buffer) => body.push(c));
      req.on('end', () => res.end(JSON.stringify({ method: req.method, te: req.headers['transfer-encoding'] ?? null, cl: req.headers['content-length'] ?? null, body: Buffer.concat(body).toString() })));
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    E = `127.0.0.1:${(echo.address() as net.AddressInfo).port}`;
    proxy = await startSocksProxy({ access: { allowDest: ['127.0.0.0/8'] } }, { http: true });
  });
  after(async () => {
    await proxy?.close();
    await origin.close();
    echo?.closeAllConnections();
    await new Promise((r) => echo?.close(r));
  });

  const get = (path: string, host = T, extra = ''): string => `GET http://${host}${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;
  const send = (chunks: string[], waitMs = 1000, minBytes?: number): ReturnType<typeof exchange> =>
    exchange({ host: '127.0.0.1', port: proxy.port }, chunks.map((c) => Buffer.from(c, 'latin1')), { delayMs: 30, waitMs, ...(minBytes === undefined ? {} : { minBytes }) });
  const bodies = (data: Buffer): string[] => data.toString('latin1').split(/HTTP\/1\.1 \d{3} [^\r]*\r\n/).slice(1).map((r) => r.slice(r.indexOf('\r\n\r\n') + 4));
  const statuses = (data: Buffer): number[] => [...data.toString('latin1').matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

  test('one origin connection carries the requests of several client connections, one after another', async () => {
    let n = 0;
    await origin.reset((_h, s) => s.write(ok(`r${++n}`)));
    for (let c = 0; c < 3; c++) {
      const x = await send([get('/a'), get('/b'), get('/c', T, 'Connection: close\r\n')]);
      assert.deepEqual(statuses(x.data), [200, 200, 200]);
    }
    assert.equal(n, 9);
    assert.equal(origin.sockets.length, 1);
  });

  test('an origin closing an idle connection: the next request goes on a new one', async () => {
    await origin.reset((_h, s, i) => s.write(ok(`conn${i}`)));
    const first = await send([get('/a', T, 'Connection: close\r\n')]);
    assert.deepEqual(bodies(first.data), ['conn0']);
    // The origin's FIN alone (upstream sockets are half-open capable): the proxy must not write into it.
    origin.sockets[0]!.end();
    await until(() => origin.closed === 1, 'the idle origin connection to close');
    const second = await send([get('/b', T, 'Connection: close\r\n')]);
    assert.deepEqual(bodies(second.data), ['conn1']);
  });

  test('an idle origin connection that sends anything is dropped, never read as the next answer', async () => {
    await origin.reset((head, s, i) => {
      s.write(ok(`real${i}`));
      // Unasked for, on the now idle connection: a whole response ready to be taken for the next one.
      if (head.startsWith('GET /first')) setTimeout(() => s.write(ok('EVIL')), 20);
    });
    const first = await send([get('/first', T, 'Connection: close\r\n')]);
    assert.deepEqual(bodies(first.data), ['real0']);
    await until(() => origin.closed === 1, 'the origin connection with the stray answer to close');
    const second = await send([get('/second', T, 'Connection: close\r\n')]);
    assert.deepEqual(bodies(second.data), ['real1']);
    assert.equal(origin.sockets.length, 2);
  });

  test('a chunked body goes on chunked, whatever the method; a POST without content says Content-Length: 0', async () => {
    const chunkedGet = `GET http://${E}/ HTTP/1.1\r\nHost: ${E}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`;
    const emptyPost = `POST http://${E}/ HTTP/1.1\r\nHost: ${E}\r\nConnection: close\r\n\r\n`;
    const x = await send([chunkedGet + emptyPost]);
    assert.deepEqual(
      bodies(x.data).map((b) => JSON.parse(b.replace(/^[0-9a-f]+\r\n|\r\n0\r\n\r\n$/g, ''))),
      [
        { method: 'GET', te: 'chunked', cl: null, body: 'hello' },
        { method: 'POST', te: null, cl: '0', body: '' },
      ],
    );
  });

  test('1xx answers are skipped; HEAD, 304 and close-delimited answers end where they should', async () => {
    await origin.reset((head, s) => {
      if (head.startsWith('GET /early')) s.write(`HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n${ok('after hints')}`);
      else if (head.startsWith('HEAD /')) s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n');
      else if (head.startsWith('GET /cached')) s.write('HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n');
      else if (head.startsWith('GET /until-close')) s.end('HTTP/1.1 200 OK\r\n\r\nall of it');
    });
    const x = await send([get('/early'), `HEAD http://${T}/ HTTP/1.1\r\nHost: ${T}\r\n\r\n`, get('/cached'), get('/until-close', T, 'Connection: close\r\n')], 2000);
    assert.deepEqual(statuses(x.data), [200, 200, 304, 200]);
    const text = x.data.toString('latin1');
    assert.ok(text.includes('after hints') && !text.includes('Early Hints'), text);
    assert.ok(text.endsWith('all of it') || text.endsWith('9\r\nall of it\r\n0\r\n\r\n'), text);
    assert.ok(x.closed);
  });

  test('an answer that ends before its request body was sent closes that origin connection', async () => {
    await origin.reset((head, s) => {
      // Answered at the head, the body never read.
      if (head.startsWith('POST')) s.write('HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n');
      else s.write(ok('fine'));
    });
    const big = 'x'.repeat(4 << 20);
    const post = `POST http://${T}/up HTTP/1.1\r\nHost: ${T}\r\nContent-Length: ${big.length}\r\n\r\n`;
    const x = await send([post, big, get('/next', T, 'Connection: close\r\n')], 5000);
    assert.deepEqual(statuses(x.data), [413, 200]);
    assert.deepEqual(bodies(x.data), ['', 'fine']);
    await until(() => origin.closed >= 1, 'the POST origin connection to close');
    assert.equal(origin.sockets.length, 2);
  });

  test('a client leaving mid-answer closes the origin connection', async () => {
    await origin.reset((_h, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npart'));
    const x = await send([get('/slow')], 200, 5);
    assert.deepEqual(statuses(x.data), [200]);
    await until(() => origin.closed === 1, 'the origin connection to close');
    await proxy.drained();
  });
});

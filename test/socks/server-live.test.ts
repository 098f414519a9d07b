/**
 * The SOCKS front end on loopback, driven by the real `socks` client (SOCKS4, 4a, 5, 5 with
 * RFC 1929, UDP ASSOCIATE) and by raw sockets for every refusal, checking exact reply bytes,
 * the recorded error codes and that every socket is closed afterwards.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { SocksClient } from 'socks';
import { ErrorCode } from '../../src/core/errors';
import { activeUdpAssociations } from '../../src/proxy/socks/udp';
import { closedPort, rawExchange, readAtLeast, socksAssociate, startSocksProxy, startTcpEcho, startUdpEcho, type EchoServer, type SocksProxy } from './harness';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const portHex = (p: number): string => p.toString(16).padStart(4, '0');
const LOOPBACK_OPEN = { access: { allowDest: ['127.0.0.0/8'] } };
const USERS = [{ name: 'alice', password: 'plain$secret' }];

const SOCKS5_NOAUTH = hex('05 01 00');
const socks5Connect = (port: number): Buffer => hex(`05 01 00 01 7f000001 ${portHex(port)}`);
const socks4Connect = (port: number): Buffer => hex(`04 01 ${portHex(port)} 7f000001 00`);
const SOCKS4_REJECTED = hex('00 5b 0000 00000000');
const socks5Fail = (rep: number): Buffer => hex(`05 ${rep.toString(16).padStart(2, '0')} 00 01 00000000 0000`);

async function echoThrough(socket: net.Socket, text: string): Promise<string> {
  socket.write(text);
  return (await readAtLeast(socket, text.length)).toString();
}

let echo: EchoServer;
before(async () => {
  echo = await startTcpEcho();
});
after(() => echo.close());

describe('SOCKS with the socks client', () => {
  let proxy: SocksProxy;
  before(async () => {
    proxy = await startSocksProxy(LOOPBACK_OPEN);
  });
  after(() => proxy.close());

  for (const type of [4, 5] as const) {
    it(`SOCKS${type} CONNECT relays both ways and reports the bound address`, async () => {
      const before = proxy.relayed.length;
      const { socket } = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy.port, type }, command: 'connect', destination: { host: '127.0.0.1', port: echo.port } });
      assert.equal(await echoThrough(socket, `hello over socks${type}`), `hello over socks${type}`);
      socket.end();
      await proxy.drained();
      const conn = proxy.conns.at(-1)!;
      assert.equal(conn.protocol, `socks${type}`);
      assert.equal(conn.resultCode, 'ok');
      assert.deepEqual(conn.destination, { host: '127.0.0.1', port: echo.port });
      assert.equal(proxy.relayed.length, before + 1);
      assert.equal(proxy.relayed.at(-1)!.result.bytesDown, `hello over socks${type}`.length);
    });
  }

  it('SOCKS4a sends the host name and the proxy resolves it', async () => {
    const { socket } = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy.port, type: 4 }, command: 'connect', destination: { host: 'localhost', port: echo.port } });
    assert.equal(await echoThrough(socket, 'via 4a'), 'via 4a');
    socket.end();
    await proxy.drained();
    assert.deepEqual(proxy.conns.at(-1)!.destination, { host: 'localhost', port: echo.port });
    assert.equal(proxy.conns.at(-1)!.upstreamAddress, '127.0.0.1');
  });

  it('SOCKS5 with a domain name', async () => {
    const { socket } = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy.port, type: 5 }, command: 'connect', destination: { host: 'localhost', port: echo.port } });
    assert.equal(await echoThrough(socket, 'name'), 'name');
    socket.destroy();
    await proxy.drained();
  });

  it('pipelined greeting + request + data: the data reaches the destination (clientHead), exact success reply', async () => {
    const peersBefore = echo.peers.length;
    const { received, closed } = await rawExchange(proxy.port, Buffer.concat([SOCKS5_NOAUTH, socks5Connect(echo.port), Buffer.from('early bytes')]), 500);
    assert.equal(closed, false);
    const boundPort = echo.peers[peersBefore]!;
    assert.deepEqual(received, Buffer.concat([hex('05 00'), hex(`05 00 00 01 7f000001 ${portHex(boundPort)}`), Buffer.from('early bytes')]));
    await proxy.drained();
  });

  it('UDP ASSOCIATE relays datagrams to a UDP echo server and back, drops fragments, ends with the control connection', async () => {
    const udpEcho = await startUdpEcho();
    const client = dgram.createSocket('udp4');
    await new Promise<void>((res) => client.bind(0, '127.0.0.1', () => res()));
    try {
      const info = await socksAssociate(proxy.port, client.address().port);
      assert.equal(info.remoteHost!.host, '127.0.0.1');
      assert.equal(activeUdpAssociations(proxy.ctx), 1);
      const replies: Buffer[] = [];
      client.on('message', (m) => replies.push(m));
      const send = (data: string, frameNumber = 0): void => {
        const frame = SocksClient.createUDPFrame({ remoteHost: { host: '127.0.0.1', port: udpEcho.port }, data: Buffer.from(data), frameNumber });
        client.send(frame, info.remoteHost!.port, '127.0.0.1');
      };
      send('fragment', 1);
      send('ping');
      const deadline = Date.now() + 2000;
      while (replies.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(replies.length, 1, 'exactly one reply: the fragment was dropped');
      const frame = SocksClient.parseUDPFrame(replies[0]!);
      assert.equal(frame.data.toString(), 'ping');
      assert.deepEqual(frame.remoteHost, { host: '127.0.0.1', port: udpEcho.port });

      // From another port than the declared one: dropped.
      const stranger = dgram.createSocket('udp4');
      await new Promise<void>((res) => stranger.bind(0, '127.0.0.1', () => res()));
      const strangerGot: Buffer[] = [];
      stranger.on('message', (m) => strangerGot.push(m));
      stranger.send(SocksClient.createUDPFrame({ remoteHost: { host: '127.0.0.1', port: udpEcho.port }, data: Buffer.from('x') }), info.remoteHost!.port, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 200));
      stranger.close();
      assert.equal(strangerGot.length, 0);
      assert.equal(replies.length, 1);

      info.socket.end();
      await proxy.drained();
      assert.equal(activeUdpAssociations(proxy.ctx), 0);
      const done = proxy.relayed.at(-1)!;
      assert.equal(done.conn.protocol, 'socks5');
      assert.deepEqual([done.result.bytesUp, done.result.bytesDown], [4, 4]);
    } finally {
      client.close();
      await udpEcho.close();
    }
  });
});

describe('SOCKS5 with RFC 1929 authentication', () => {
  let proxy: SocksProxy;
  before(async () => {
    proxy = await startSocksProxy({ access: { allowDest: ['127.0.0.0/8'], users: USERS } });
  });
  after(() => proxy.close());

  it('the right password connects and records the user', async () => {
    const { socket } = await SocksClient.createConnection({
      proxy: { host: '127.0.0.1', port: proxy.port, type: 5, userId: 'alice', password: 'secret' },
      command: 'connect',
      destination: { host: '127.0.0.1', port: echo.port },
    });
    assert.equal(await echoThrough(socket, 'authenticated'), 'authenticated');
    socket.end();
    await proxy.drained();
    assert.equal(proxy.conns.at(-1)!.user, 'alice');
  });

  it('a wrong password gets 01 01 and the connection is closed', async () => {
    const r = await rawExchange(proxy.port, Buffer.concat([hex('05 01 02'), hex('01 05'), Buffer.from('alice'), hex('05'), Buffer.from('wrong')]));
    assert.deepEqual(r, { received: hex('05 02 01 01'), closed: true });
    assert.equal(proxy.errors.at(-1)!.err.code, ErrorCode.AuthFailed);
    await proxy.drained();
  });

  it('a client offering no username/password gets 05 ff', async () => {
    const r = await rawExchange(proxy.port, SOCKS5_NOAUTH);
    assert.deepEqual(r, { received: hex('05 ff'), closed: true });
    assert.equal(proxy.errors.at(-1)!.err.code, ErrorCode.AuthRequired);
    await proxy.drained();
  });

  it('SOCKS4 cannot authenticate: 5b', async () => {
    const r = await rawExchange(proxy.port, socks4Connect(echo.port));
    assert.deepEqual(r, { received: SOCKS4_REJECTED, closed: true });
    assert.equal(proxy.errors.at(-1)!.err.code, ErrorCode.AuthRequired);
    await proxy.drained();
  });

  it('the socks client reports the failure for a wrong password', async () => {
    await assert.rejects(
      SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy.port, type: 5, userId: 'alice', password: 'nope' }, command: 'connect', destination: { host: '127.0.0.1', port: echo.port } }),
      /Authentication/i,
    );
    await proxy.drained();
  });
});

describe('SOCKS refusals (raw bytes)', () => {
  let open: SocksProxy;
  let strict: SocksProxy;
  let denied: SocksProxy;
  before(async () => {
    open = await startSocksProxy(LOOPBACK_OPEN);
    strict = await startSocksProxy({});
    denied = await startSocksProxy({ access: { allowClients: ['192.0.2.0/24'], allowDest: ['127.0.0.0/8'] } });
  });
  after(async () => {
    await Promise.all([open.close(), strict.close(), denied.close()]);
  });

  const cases: { name: string; proxy: () => SocksProxy; send: () => Buffer; reply: Buffer; code: ErrorCode }[] = [
    { name: 'unknown version byte: closed without a reply', proxy: () => open, send: () => Buffer.from('GET / HTTP/1.1\r\n\r\n'), reply: Buffer.alloc(0), code: ErrorCode.VersionUnsupported },
    { name: 'unknown SOCKS5 command 0x04 → 07', proxy: () => open, send: () => Buffer.concat([SOCKS5_NOAUTH, hex('05 04 00 01 7f000001 0050')]), reply: Buffer.concat([hex('05 00'), socks5Fail(0x07)]), code: ErrorCode.CommandUnsupported },
    { name: 'BIND → 07', proxy: () => open, send: () => Buffer.concat([SOCKS5_NOAUTH, hex('05 02 00 01 7f000001 0050')]), reply: Buffer.concat([hex('05 00'), socks5Fail(0x07)]), code: ErrorCode.CommandUnsupported },
    { name: 'SOCKS4 BIND → 5b', proxy: () => open, send: () => hex('04 02 0050 7f000001 00'), reply: SOCKS4_REJECTED, code: ErrorCode.CommandUnsupported },
    { name: 'bad ATYP 0x02 → 08', proxy: () => open, send: () => Buffer.concat([SOCKS5_NOAUTH, hex('05 01 00 02 7f000001 0050')]), reply: Buffer.concat([hex('05 00'), socks5Fail(0x08)]), code: ErrorCode.AddressTypeUnsupported },
    { name: 'empty greeting method list → ff', proxy: () => open, send: () => hex('05 00'), reply: hex('05 ff'), code: ErrorCode.BadRequest },
    { name: 'loopback destination without allowDest → 02', proxy: () => strict, send: () => Buffer.concat([SOCKS5_NOAUTH, socks5Connect(echo.port)]), reply: Buffer.concat([hex('05 00'), socks5Fail(0x02)]), code: ErrorCode.DestDenied },
    { name: 'SOCKS4 loopback destination without allowDest → 5b', proxy: () => strict, send: () => socks4Connect(echo.port), reply: SOCKS4_REJECTED, code: ErrorCode.DestDenied },
    { name: 'port 0 → 01', proxy: () => open, send: () => Buffer.concat([SOCKS5_NOAUTH, socks5Connect(0)]), reply: Buffer.concat([hex('05 00'), socks5Fail(0x01)]), code: ErrorCode.BadRequest },
    { name: 'client not in allowClients → 02 to the request', proxy: () => denied, send: () => Buffer.concat([SOCKS5_NOAUTH, socks5Connect(echo.port)]), reply: Buffer.concat([hex('05 00'), socks5Fail(0x02)]), code: ErrorCode.ClientDenied },
    { name: 'client not in allowClients with a malformed request → still 02', proxy: () => denied, send: () => Buffer.concat([SOCKS5_NOAUTH, hex('05 01 00 09')]), reply: Buffer.concat([hex('05 00'), socks5Fail(0x02)]), code: ErrorCode.ClientDenied },
    { name: 'SOCKS4 client not in allowClients → 5b', proxy: () => denied, send: () => socks4Connect(echo.port), reply: SOCKS4_REJECTED, code: ErrorCode.ClientDenied },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const p = c.proxy();
      const r = await rawExchange(p.port, c.send());
      assert.deepEqual(r, { received: c.reply, closed: true });
      const last = p.errors.at(-1)!;
      assert.equal(last.err.code, c.code);
      assert.equal(last.conn, p.conns.at(-1));
      assert.equal(p.conns.at(-1)!.resultCode, c.code);
      await p.drained();
    });
  }

  it('connection refused by the destination → 05 (SOCKS5) and 5b (SOCKS4)', async () => {
    const port = await closedPort();
    assert.deepEqual(await rawExchange(open.port, Buffer.concat([SOCKS5_NOAUTH, socks5Connect(port)])), { received: Buffer.concat([hex('05 00'), socks5Fail(0x05)]), closed: true });
    assert.equal(open.errors.at(-1)!.err.code, ErrorCode.ConnectRefused);
    assert.deepEqual(await rawExchange(open.port, socks4Connect(port)), { received: SOCKS4_REJECTED, closed: true });
    await open.drained();
  });

  it('a request split into single bytes is served like a whole one', async () => {
    const peersBefore = echo.peers.length;
    const socket = net.connect({ port: open.port, host: '127.0.0.1' });
    await new Promise((r) => socket.once('connect', r));
    socket.setNoDelay(true);
    for (const b of Buffer.concat([SOCKS5_NOAUTH, socks5Connect(echo.port)])) {
      socket.write(Buffer.of(b));
      await new Promise((r) => setTimeout(r, 2));
    }
    const reply = await readAtLeast(socket, 12);
    assert.deepEqual(reply, Buffer.concat([hex('05 00'), hex(`05 00 00 01 7f000001 ${portHex(echo.peers[peersBefore]!)}`)]));
    assert.equal(await echoThrough(socket, 'split'), 'split');
    socket.destroy();
    await open.drained();
  });
});

describe('SOCKS handshake timeout and UDP limits', () => {
  it('a client that stalls mid-greeting is closed after handshakeMs', async () => {
    const proxy = await startSocksProxy({ timeouts: { handshakeMs: 200 } });
    try {
      const t0 = Date.now();
      const r = await rawExchange(proxy.port, hex('05 02 00'));
      assert.equal(r.closed, true);
      assert.ok(Date.now() - t0 >= 150, `closed after ${Date.now() - t0} ms`);
      assert.deepEqual(r.received, hex('05 ff'));
      assert.equal(proxy.errors.at(-1)!.err.code, ErrorCode.HandshakeTimeout);
      await proxy.drained();
    } finally {
      await proxy.close();
    }
  });

  it('UDP ASSOCIATE beyond maxUdpAssociations → 01', async () => {
    const proxy = await startSocksProxy({ limits: { maxUdpAssociations: 1 } });
    try {
      const first = await socksAssociate(proxy.port, 0);
      const r = await rawExchange(proxy.port, Buffer.concat([SOCKS5_NOAUTH, hex('05 03 00 01 00000000 0000')]));
      assert.deepEqual(r, { received: Buffer.concat([hex('05 00'), socks5Fail(0x01)]), closed: true });
      assert.equal(proxy.errors.at(-1)!.err.code, ErrorCode.LimitReached);
      first.socket.destroy();
      await proxy.drained();
      assert.equal(activeUdpAssociations(proxy.ctx), 0);
    } finally {
      await proxy.close();
    }
  });
});

/** Send one framed datagram through an association; resolve with the replies seen within ms. */
async function udpRoundTrip(relayPort: number, client: dgram.Socket, dest: { host: string; port: number }, data: string, ms: number): Promise<Buffer[]> {
  const got: Buffer[] = [];
  const onMessage = (m: Buffer): void => void got.push(m);
  client.on('message', onMessage);
  client.send(SocksClient.createUDPFrame({ remoteHost: dest, data: Buffer.from(data) }), relayPort, '127.0.0.1');
  const deadline = Date.now() + ms;
  while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  client.off('message', onMessage);
  return got;
}

describe('SOCKS5 UDP policy and lifetime', () => {
  let udpEcho: Awaited<ReturnType<typeof startUdpEcho>>;
  let client: dgram.Socket;
  before(async () => {
    udpEcho = await startUdpEcho();
    client = dgram.createSocket('udp4');
    await new Promise<void>((res) => client.bind(0, '127.0.0.1', () => res()));
  });
  after(async () => {
    client.close();
    await udpEcho.close();
  });

  it('a domain-name destination is resolved and relayed; a denied destination is dropped', async () => {
    const open = await startSocksProxy(LOOPBACK_OPEN);
    const strict = await startSocksProxy({});
    try {
      const a = await socksAssociate(open.port, 0);
      const viaName = await udpRoundTrip(a.remoteHost!.port, client, { host: 'localhost', port: udpEcho.port }, 'named', 2000);
      assert.equal(viaName.length, 1);
      assert.equal(SocksClient.parseUDPFrame(viaName[0]!).data.toString(), 'named');
      const b = await socksAssociate(strict.port, 0);
      assert.deepEqual(await udpRoundTrip(b.remoteHost!.port, client, { host: '127.0.0.1', port: udpEcho.port }, 'denied', 300), []);
      a.socket.destroy();
      b.socket.destroy();
      await Promise.all([open.drained(), strict.drained()]);
      assert.equal(activeUdpAssociations(open.ctx) + activeUdpAssociations(strict.ctx), 0);
    } finally {
      await Promise.all([open.close(), strict.close()]);
    }
  });

  it('an idle association is torn down with its control connection after idleMs', async () => {
    const proxy = await startSocksProxy({ ...LOOPBACK_OPEN, timeouts: { idleMs: 300 } });
    try {
      const a = await socksAssociate(proxy.port, 0);
      const t0 = Date.now();
      await new Promise((r) => a.socket.once('close', r));
      assert.ok(Date.now() - t0 >= 250, `closed after ${Date.now() - t0} ms`);
      await proxy.drained();
      assert.equal(activeUdpAssociations(proxy.ctx), 0);
      assert.equal(proxy.errors.at(-1)!.err.code, ErrorCode.IdleTimeout);
      assert.equal(proxy.relayed.at(-1)!.result.end, 'idle');
    } finally {
      await proxy.close();
    }
  });
});

describe('SOCKS behind the mixed-port dispatcher', () => {
  it('SOCKS4 and SOCKS5 clients are served on a mixed port', async () => {
    const proxy = await startSocksProxy(LOOPBACK_OPEN, { mixed: true });
    try {
      for (const type of [4, 5] as const) {
        const { socket } = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy.port, type }, command: 'connect', destination: { host: '127.0.0.1', port: echo.port } });
        assert.equal(await echoThrough(socket, `mixed ${type}`), `mixed ${type}`);
        socket.end();
      }
      await proxy.drained();
      assert.deepEqual(proxy.conns.map((c) => c.protocol), ['socks4', 'socks5']);
    } finally {
      await proxy.close();
    }
  });
});

describe('SOCKS front end under arbitrary input', () => {
  it('any bytes end in a typed refusal and a closed socket, never a crash', async () => {
    // Every destination denied and no DNS: whatever the bytes ask for, nothing leaves the host.
    const proxy = await startSocksProxy({ access: { denyDest: ['0.0.0.0/0', '::/0'] }, timeouts: { handshakeMs: 150 } }, { resolver: () => Promise.reject(Object.assign(new Error('no DNS in tests'), { code: 'ENOTFOUND' })) });
    const codes = new Set<string>(Object.values(ErrorCode));
    try {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(4, 5, 0x47, 0), fc.uint8Array({ maxLength: 300 }), async (first, rest) => {
          const before = proxy.errors.length;
          const r = await rawExchange(proxy.port, Buffer.concat([Buffer.of(first), rest]), 2000);
          assert.equal(r.closed, true, 'the proxy must close');
          await proxy.drained();
          assert.equal(proxy.errors.length, before + 1, 'exactly one recorded refusal');
          assert.ok(codes.has(proxy.errors.at(-1)!.err.code));
        }),
        { numRuns: 60 },
      );
    } finally {
      await proxy.close();
    }
  });
});

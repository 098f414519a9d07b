/**
 * The native fast path end to end (relay.fastPath on), real clients from the client namespace
 * over MPTCP, a legacy server behind:
 * - CONNECT, SOCKS5 and SOCKS4 to IP literals (curl under mptcpize, the `socks` package) are
 *   served natively: exact bytes, the same connection log line as the TS path, counted native;
 * - what native does not serve (names, HTTP forward, other auth methods, malformed input) is
 *   handed to the TS front ends with the bytes already read and served as before, including a
 *   SOCKS5 greeting native already answered;
 * - every refusal native makes answers byte for byte what the TS path (fast path off) answers;
 * - per-client limits hold across native and handed-off connections, and slots come back;
 * - /connections lists a native tunnel while it is open, with its bytes so far, and the relay
 *   byte metric counts them before it closes;
 * - a reload that turns authentication on between a natively answered SOCKS5 greeting and the
 *   request: one method selection, then the request's refusal (TS path's rules at request time);
 * - a reload that adds a parent proxy: a tunnel greeted natively before it and one after it both
 *   leave through the parent (native connects direct only, so both go to the TS path);
 * - the proxy's socket fds return to their baseline after a burst of every kind.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SocksClient } from 'socks';
import { connectionLogFor, curl, type ProxyKind } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternSha256 } from '../../testkit/pattern';
import { useTestbed, type ProxyHandle, type Testbed } from '../../testkit/testbed';
import { socketFds } from '../../testkit/fds';
import { metricValue } from '../../testkit/metrics';
import { pickPorts } from '../ops/ports';
import { sleep } from '../../testkit/sleep';
import { hashPassword } from '../../src/access/passwords';

const HANDSHAKE_MS = 1_000;
const DENIED_NET = '192.0.2.0/24';

/** Everything a raw client connection receives until the proxy closes it (or, with `open`, until timeoutMs). */
async function exchange(bridge: string, send: Buffer[], timeoutMs = 6_000, open = false): Promise<Buffer> {
  const s = net.connect(bridge);
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  s.on('error', () => {});
  await new Promise((r, j) => s.once('connect', r).once('error', j));
  for (const b of send) {
    s.write(b);
    await sleep(30);
  }
  // The proxy's FIN ends the answer (whether it then waits for ours is the grace's business).
  await Promise.race([new Promise((r) => s.once('end', r).once('close', r)), sleep(timeoutMs)]);
  const closed = s.destroyed || s.readableEnded;
  s.destroy();
  if (!closed && !open) throw new Error(`proxy did not close within ${timeoutMs} ms; got ${Buffer.concat(chunks).toString('hex')}`);
  return Buffer.concat(chunks);
}

/** A sample of metric `name` with the label `label="value"` (other labels, e.g. instance, may sit beside it). */
async function metric(tb: Testbed, port: number, name: string, label: string): Promise<number> {
  const r = await tb.exec('proxy', ['curl', '-s', `http://127.0.0.1:${port}/metrics`]);
  return metricValue(r.stdout, name, label);
}

const ipBytes = (ip: string): number[] => ip.split('.').map(Number);
const portBytes = (p: number): number[] => [p >> 8, p & 255];

describe('native fast path, end to end', { timeout: 240_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 0 });
  let server: LegacyServer;
  let fast: ProxyHandle;
  let ts: ProxyHandle;
  let limited: ProxyHandle;
  const [httpPort, socksPort, tsHttpPort, tsSocksPort, limPort, metricsPort, limMetricsPort, closedPort] = pickPorts(8);
  const bridges: Record<string, string> = {};

  const writeConfig = (t: Testbed, name: string, http: number, socks: number, extra: string): string => {
    const file = path.join(t.tmpDir, `fastpath-${name}.yaml`);
    fs.writeFileSync(
      file,
      `listeners:\n  - { name: http, protocol: http, listen: "${t.addr.proxy1}:${http}" }\n  - { name: socks, protocol: socks, listen: "${t.addr.proxy1}:${socks}" }\n` +
        `access:\n  allowClients: ["${t.cidr}"]\n  denyDest: ["${DENIED_NET}"]\n  connectPorts: [${server.httpPort}, ${server.echoPort}, ${closedPort}]\n` +
        `timeouts: { handshakeMs: ${HANDSHAKE_MS} }\nlog: { format: json }\n${extra}`,
    );
    return file;
  };

  before(async () => {
    server = await startLegacyServer(tb());
    const t = tb();
    fast = await t.startProxy(['--config', writeConfig(t, 'on', httpPort, socksPort, ''), '--fast-path', 'on', '--metrics', `127.0.0.1:${metricsPort}`]);
    ts = await t.startProxy(['--config', writeConfig(t, 'off', tsHttpPort, tsSocksPort, ''), '--fast-path', 'off', '--no-metrics']);
    const [limSocks] = pickPorts(1, [httpPort, socksPort, tsHttpPort, tsSocksPort, limPort, metricsPort, limMetricsPort, closedPort]);
    limited = await t.startProxy([
      '--config',
      writeConfig(t, 'limited', limPort, limSocks!, 'limits: { maxConnectionsPerClient: 3 }\n').replace(/handshakeMs: \d+/, 'handshakeMs: 10000'),
      '--fast-path',
      'on',
      '--metrics',
      `127.0.0.1:${limMetricsPort}`,
    ]);
    assert.ok(fast.logs.some((l) => l.message === 'listening' && l.fastPath === true), 'the fast path proxy listens natively');
    for (const [name, port] of Object.entries({ http: httpPort, socks: socksPort, tsHttp: tsHttpPort, tsSocks: tsSocksPort, lim: limPort }))
      bridges[name] = await t.bridge('client', t.addr.proxy1, port, { mptcp: true });
  });
  after(async () => {
    await Promise.all([fast?.stop(), ts?.stop(), limited?.stop()]);
  });

  const native = (): Promise<number> => metric(tb(), metricsPort, 'mptcp_proxy_fast_path_total', 'path="native"');
  const handedOff = (): Promise<number> => metric(tb(), metricsPort, 'mptcp_proxy_fast_path_total', 'path="handoff"');

  const kinds: { kind: ProxyKind; port: () => number; protocol: string }[] = [
    { kind: 'connect', port: () => httpPort, protocol: 'connect' },
    { kind: 'socks5', port: () => socksPort, protocol: 'socks5' },
    { kind: 'socks4', port: () => socksPort, protocol: 'socks4' },
  ];
  for (const [i, { kind, port, protocol }] of kinds.entries()) {
    test(`${kind} to an IP literal, curl over MPTCP: served natively, exact bytes, logged as today`, async () => {
      const [n0, h0] = [await native(), await handedOff()];
      const size = 2_000_003;
      const r = await curl(tb(), { url: server.url(`/bytes/${size}?seed=${i + 11}`), proxy: { kind, host: tb().addr.proxy1, port: port() } });
      assert.equal(r.exitCode, 0, `${r.errorMessage} ${r.stderr}`);
      assert.equal(r.sha256, patternSha256(i + 11, size));
      const line = await connectionLogFor(fast, r);
      assert.equal(line.protocol, protocol);
      assert.equal(line.mptcp, true);
      assert.equal(line.result, 'ok');
      assert.equal(line.destination, `${server.host}:${server.httpPort}`);
      assert.equal(line.upstream, server.host);
      assert.equal(typeof line.conversionMs, 'number');
      assert.ok(Number(line.bytesOut) > size && Number(line.bytesIn) > 0, JSON.stringify(line));
      assert.equal((await native()) - n0, 1);
      assert.equal((await handedOff()) - h0, 0);
    });
  }

  for (const type of [5, 4] as const) {
    test(`the socks package (SOCKS${type}) to the echo server: native, bytes both ways, half-close passed on`, async () => {
      const existing = net.connect(bridges.socks!);
      await new Promise((r) => existing.once('connect', r));
      const { socket } = await SocksClient.createConnection({
        proxy: { host: tb().addr.proxy1, port: socksPort, type },
        command: 'connect',
        destination: { host: server.host, port: server.echoPort },
        existing_socket: existing,
      });
      const payload = Buffer.alloc(300_000, type);
      const got: Buffer[] = [];
      socket.on('data', (d: Buffer) => got.push(d));
      const ended = new Promise((r) => socket.once('end', r));
      socket.end(payload);
      await ended;
      assert.deepEqual(Buffer.concat(got), payload);
      socket.destroy();
    });
  }

  test('handoffs: names, HTTP forward, a greeted SOCKS5 with a name, other auth methods: served by TS as before', async () => {
    const h0 = await handedOff();
    const forward = await curl(tb(), { url: server.url('/bytes/5000?seed=5'), proxy: { kind: 'http', host: tb().addr.proxy1, port: httpPort } });
    assert.equal(forward.exitCode, 0, forward.errorMessage);
    assert.equal(forward.sha256, patternSha256(5, 5000));
    assert.equal((await connectionLogFor(fast, forward)).protocol, 'http');
    // SOCKS5 greeting (native answers it) then a request for a name (DNS: TS). The name is the
    // server's address as text, so it resolves without a resolver in the namespace.
    const name = Buffer.from(server.host);
    const get = Buffer.from(`GET /bytes/100?seed=6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const reply = await exchange(bridges.socks!, [Buffer.from([5, 1, 0]), Buffer.from([5, 1, 0, 3, name.length, ...name, ...portBytes(server.httpPort)]), get]);
    assert.deepEqual([...reply.subarray(0, 4)], [5, 0, 5, 0], `one method selection, then success: ${reply.subarray(0, 12).toString('hex')}`);
    assert.match(reply.toString('latin1'), /HTTP\/1\.1 200/);
    // Only username/password offered, no users configured: the TS path's refusal, byte for byte.
    const userPass = [Buffer.from([5, 1, 2])];
    assert.deepEqual(await exchange(bridges.socks!, userPass), await exchange(bridges.tsSocks!, userPass));
    const byName = [Buffer.from(`CONNECT no-such-host.invalid:${server.httpPort} HTTP/1.1\r\n\r\n`)];
    assert.deepEqual(await exchange(bridges.http!, byName), await exchange(bridges.tsHttp!, byName));
    assert.ok((await handedOff()) - h0 >= 4, `handoffs ${(await handedOff()) - h0}`);
  });

  const refusals: [string, 'socks' | 'http', Buffer[]][] = [];
  before(() => {
    const srv = ipBytes(server.host);
    refusals.push(
      ['SOCKS5 to a denied destination', 'socks', [Buffer.from([5, 1, 0]), Buffer.from([5, 1, 0, 1, 192, 0, 2, 1, ...portBytes(server.httpPort)])]],
      ['SOCKS5 pipelined, denied port', 'socks', [Buffer.from([5, 1, 0, 5, 1, 0, 1, ...srv, 0, 25])]],
      ['SOCKS5 to a closed port (connect refused)', 'socks', [Buffer.from([5, 1, 0, 5, 1, 0, 1, ...srv, ...portBytes(closedPort)])]],
      ['SOCKS4 to a denied port', 'socks', [Buffer.from([4, 1, 0, 25, ...srv, 0])]],
      ['SOCKS4 to a denied destination', 'socks', [Buffer.from([4, 1, ...portBytes(server.httpPort), 192, 0, 2, 9, 0x61, 0])]],
      ['CONNECT to a denied destination', 'http', [Buffer.from(`CONNECT 192.0.2.1:${server.httpPort} HTTP/1.1\r\nHost: x\r\n\r\n`)]],
      ['CONNECT to a denied port', 'http', [Buffer.from(`CONNECT ${server.host}:25 HTTP/1.1\r\n\r\n`)]],
      ['CONNECT to a closed port', 'http', [Buffer.from(`CONNECT ${server.host}:${closedPort} HTTP/1.1\r\n\r\n`)]],
      ['CONNECT head never finished (handshake timeout)', 'http', [Buffer.from('CONNECT 10.1.2.3:80 HTTP/1.1\r\nHost:')]],
      ['HTTP port, silent client (handshake timeout)', 'http', []],
      ['SOCKS5 greeted, request never sent (handshake timeout)', 'socks', [Buffer.from([5, 1, 0])]],
      ['SOCKS5 greeting cut short (handshake timeout)', 'socks', [Buffer.from([5, 2, 0])]],
      ['SOCKS4 request cut short (handshake timeout)', 'socks', [Buffer.from([4, 1, 0, 80, 10])]],
      ['SOCKS port, silent client (handshake timeout)', 'socks', []],
    );
  });
  test('every native refusal answers byte for byte what the TS path answers, and is logged and counted', async () => {
    for (const [what, proto, send] of refusals) {
      const lines = fast.logs.length;
      const [nat, tsAnswer] = await Promise.all([exchange(bridges[proto]!, send), exchange(bridges[proto === 'http' ? 'tsHttp' : 'tsSocks']!, send)]);
      assert.deepEqual(nat, tsAnswer, `${what}: native ${nat.toString('hex')} vs TS ${tsAnswer.toString('hex')}`);
      // Timeouts of connections that asked for nothing are summed up by the limit log instead.
      if (what.includes('timeout')) continue;
      const line = await fast.waitForLog((l, i = fast.logs.indexOf(l)) => i >= lines && l.message === 'connection', 3_000);
      assert.notEqual(line.result, 'ok', `${what}: ${JSON.stringify(line)}`);
    }
    assert.ok((await metric(tb(), metricsPort, 'mptcp_proxy_errors_total', 'code="MPX_DEST_DENIED"')) >= 3);
    assert.ok((await metric(tb(), metricsPort, 'mptcp_proxy_errors_total', 'code="MPX_HANDSHAKE_TIMEOUT"')) >= 6);
  });

  test('/connections lists a native tunnel while it is open, with live bytes; the byte metric counts them before the close', async () => {
    const relayed = (dir: string): Promise<number> => metric(tb(), metricsPort, 'mptcp_proxy_relay_bytes_total', `direction="${dir}"`);
    const [up0, down0] = [await relayed('up'), await relayed('down')];
    const s = net.connect(bridges.socks!);
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    s.write(Buffer.from([5, 1, 0, 5, 1, 0, 1, ...ipBytes(server.host), ...portBytes(server.echoPort)]));
    let got = 0;
    const reply = new Promise((r) => s.once('data', r));
    s.on('data', (d: Buffer) => (got += d.length));
    await reply;
    const payload = Buffer.alloc(100_000, 7);
    s.write(payload);
    // 2 (method) + 10 (reply) + the echo of the payload.
    for (let i = 0; i < 100 && got < 12 + payload.length; i++) await sleep(50);
    assert.equal(got, 12 + payload.length, 'the echo came back');
    const r = await tb().exec('proxy', ['curl', '-s', `http://127.0.0.1:${metricsPort}/connections`]);
    const [up1, down1] = [await relayed('up'), await relayed('down')];
    s.destroy();
    const conns = (JSON.parse(r.stdout) as { connections: { destination: string; protocol: string; bytesIn: number; bytesOut: number }[] }).connections;
    const c = conns.find((x) => x.destination === `${server.host}:${server.echoPort}`);
    assert.ok(c, r.stdout.slice(0, 800));
    assert.equal(c.protocol, 'socks5');
    // Greeting 3 + request 10 + payload from the client; method 2 + reply 10 + echo to it.
    assert.equal(c.bytesIn, 13 + payload.length, JSON.stringify(c));
    assert.equal(c.bytesOut, 12 + payload.length, JSON.stringify(c));
    assert.ok(up1 - up0 >= payload.length && down1 - down0 >= payload.length, `relay bytes counted while open: up +${up1 - up0}, down +${down1 - down0}`);
  });

  /**
   * A fast-path proxy with one SOCKS listener, from a config file a test rewrites: `reload(next)`
   * writes `next` (usually `body`, the starting config, changed), sends SIGHUP and waits until the
   * reload is logged.
   */
  const reloadableSocksProxy = async (name: string): Promise<{ px: ProxyHandle; bridge: string; body: string; reload: (next: string) => Promise<void> }> => {
    const t = tb();
    const [port] = pickPorts(1, [httpPort, socksPort, tsHttpPort, tsSocksPort, limPort, metricsPort, limMetricsPort, closedPort]);
    const file = writeConfig(t, name, 0, port!, '');
    const body = fs.readFileSync(file, 'utf8').replace(/ {2}- \{ name: http,[^\n]*\n/, '');
    fs.writeFileSync(file, body);
    const px = await t.startProxy(['--config', file, '--fast-path', 'on', '--no-metrics']);
    try {
      // Its only listener comes from the file: startProxy cannot wait for it.
      await px.waitForLog((l) => l.message === 'listening', 10_000);
      const bridge = await t.bridge('client', t.addr.proxy1, port!, { mptcp: true });
      const reload = async (next: string): Promise<void> => {
        fs.writeFileSync(file, next);
        const reloads = (): number => px.logs.filter((l) => l.message === 'config reloaded').length;
        const before = reloads();
        px.proc.kill('SIGHUP');
        for (let i = 0; i < 200 && reloads() === before; i++) await sleep(50);
        assert.equal(reloads(), before + 1, 'the reload was applied');
      };
      return { px, bridge, body, reload };
    } catch (e) {
      await px.stop();
      throw e;
    }
  };

  test('a reload turning users on after a natively answered SOCKS5 greeting: one answer, then the refusal', async () => {
    const { px, bridge, body, reload } = await reloadableSocksProxy('reload');
    try {
      /** A client that sent a no-auth greeting and read the method selection: `rest` is all it gets until the close. */
      const greet = async (): Promise<{ s: net.Socket; selection: Buffer; rest: Promise<Buffer> }> => {
        const s = net.connect(bridge);
        const chunks: Buffer[] = [];
        s.on('data', (d: Buffer) => chunks.push(d));
        s.on('error', () => {});
        await new Promise((r) => s.once('connect', r));
        s.write(Buffer.from([5, 1, 0]));
        for (let i = 0; i < 200 && Buffer.concat(chunks).length < 2; i++) await sleep(20);
        const selection = Buffer.concat(chunks.splice(0));
        return { s, selection, rest: new Promise((resolve) => s.once('close', () => resolve(Buffer.concat(chunks)))) };
      };
      const name = Buffer.from(server.host);
      const requests = [
        Buffer.from([5, 1, 0, 1, ...ipBytes(server.host), ...portBytes(server.httpPort)]), // native would dial it
        Buffer.from([5, 1, 0, 3, name.length, ...name, ...portBytes(server.httpPort)]), // handed to TS (a name)
      ];
      const clients = [await greet(), await greet()];
      for (const c of clients) assert.deepEqual([...c.selection], [5, 0], 'greeting answered natively');
      await reload(body.replace('access:\n', `access:\n  users: [{ name: u, password: "${hashPassword('p', 1024)}" }]\n`));
      clients.forEach((c, i) => c.s.write(requests[i]!));
      for (const c of clients) {
        const rest = await c.rest;
        assert.deepEqual([...rest], [5, 2, 0, 1, 0, 0, 0, 0, 0, 0], `after the one method selection, the request's refusal ("not allowed"): ${rest.toString('hex')}`);
      }
      // A greeting after the reload meets the users: no acceptable method without username/password.
      const late = await greet();
      assert.deepEqual([...late.selection], [5, 0xff]);
      late.s.destroy();
    } finally {
      await px.stop();
    }
  });

  test('a reload adding a parent proxy: new connections, a natively greeted one included, leave through the parent', async () => {
    const t = tb();
    const { px, bridge, body, reload } = await reloadableSocksProxy('parent');
    try {
      const open = async (): Promise<{ s: net.Socket; read: (n: number) => Promise<Buffer> }> => {
        const s = net.connect(bridge);
        let got = Buffer.alloc(0);
        s.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
        s.on('error', () => {});
        await new Promise((r) => s.once('connect', r));
        const read = async (n: number): Promise<Buffer> => {
          for (let i = 0; i < 250 && got.length < n; i++) await sleep(20);
          const out = got.subarray(0, n);
          got = got.subarray(n);
          return out;
        };
        return { s, read };
      };
      // Greeted natively before the reload; its request comes after it.
      const early = await open();
      early.s.write(Buffer.from([5, 1, 0]));
      assert.deepEqual([...(await early.read(2))], [5, 0]);
      // The TS proxy of this file is the parent: its connection log shows who came through it.
      await reload(`${body}upstream:\n  parents: [{ name: ts, url: "http://${t.addr.proxy1}:${tsHttpPort}" }]\n`);
      const late = await open();
      late.s.write(Buffer.from([5, 1, 0]));
      assert.deepEqual([...(await late.read(2))], [5, 0]);
      const dest = `${server.host}:${server.echoPort}`;
      const viaParent = (): number => ts.logs.filter((l) => l.message === 'connection' && l.destination === dest).length;
      const parentBefore = viaParent();
      for (const [i, c] of [early, late].entries()) {
        c.s.write(Buffer.from([5, 1, 0, 1, ...ipBytes(server.host), ...portBytes(server.echoPort)]));
        assert.equal((await c.read(10))[1], 0, `client ${i}: request granted`);
        c.s.write(`ping ${i}\n`);
        assert.equal((await c.read(7)).toString(), `ping ${i}\n`, `client ${i}: echoed through the parent`);
        c.s.end();
      }
      for (let i = 0; i < 250 && viaParent() < parentBefore + 2; i++) await sleep(20);
      assert.equal(viaParent(), parentBefore + 2, 'both tunnels went through the parent');
      assert.ok(px.logs.filter((l) => l.message === 'connection' && l.parent === 'ts').length >= 2, 'and are logged with it');
    } finally {
      await px.stop();
    }
  });

  test('per-client limit: native and handed-off connections share it, refusals are counted, slots come back', async () => {
    const t = tb();
    const limitHits = (): Promise<number> => metric(t, limMetricsPort, 'mptcp_proxy_errors_total', 'code="MPX_LIMIT_REACHED"');
    const before = await limitHits();
    const open = async (send: Buffer): Promise<net.Socket> => {
      const s = net.connect(bridges.lim!);
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      s.write(send);
      return s;
    };
    const tunnel = Buffer.from(`CONNECT ${server.host}:${server.echoPort} HTTP/1.1\r\n\r\n`);
    const held = [await open(tunnel), await open(tunnel), await open(Buffer.from('GET http://'))]; // two native, one handed off
    await sleep(300);
    const over = await exchange(bridges.lim!, [tunnel], 3_000);
    assert.equal(over.length, 0, 'a connection over the limit is closed unanswered');
    assert.equal((await limitHits()) - before, 1);
    for (const s of held) s.destroy();
    await sleep(500);
    const again = await exchange(bridges.lim!, [tunnel, Buffer.from('x')], 1_000, true);
    assert.equal(again.toString('latin1'), 'HTTP/1.1 200 Connection Established\r\n\r\nx', 'slots are released when connections close');
  });

  test("the proxy's socket fds return to their baseline after a burst of native, handed-off and refused connections", async () => {
    const pid = fast.proc.pid!;
    const burst = async (): Promise<void> => {
      const jobs: Promise<unknown>[] = [];
      for (let i = 0; i < 40; i++) {
        const srv = ipBytes(server.host);
        jobs.push(exchange(bridges.socks!, [Buffer.from([5, 1, 0, 5, 1, 0, 1, ...srv, ...portBytes(server.httpPort)]), Buffer.from('GET / HTTP/1.0\r\n\r\n')]));
        jobs.push(exchange(bridges.http!, [Buffer.from(`CONNECT 192.0.2.7:80 HTTP/1.1\r\n\r\n`)]));
        jobs.push(exchange(bridges.http!, [Buffer.from(`GET ${server.url('/bytes/10')} HTTP/1.1\r\nConnection: close\r\n\r\n`)]));
        jobs.push(exchange(bridges.socks!, [Buffer.from([4, 1, ...portBytes(closedPort), ...srv, 0])]));
      }
      await Promise.all(jobs);
    };
    const proxySockets = async (): Promise<string[]> => (await tb().exec('proxy', ['ss', '-tanpo'])).stdout.split('\n').filter((l) => l.includes(`pid=${pid},`));
    // The HTTP forward front end keeps idle upstream connections for reuse (Node's agent, SO_KEEPALIVE,
    // up to 60 s): how many the second burst leaves depends on how many of its requests overlapped.
    const counted = async (): Promise<number> => {
      const pooled = (await proxySockets()).filter((l) => l.includes(`${server.host}:${server.httpPort} `) && l.includes('timer:(keepalive')).length;
      return socketFds(pid) - pooled;
    };
    const settle = async (want: number): Promise<number> => {
      let n = await counted();
      for (let i = 0; i < 50 && n !== want; i++) {
        await sleep(100);
        n = await counted();
      }
      return n;
    };
    await burst(); // warm-up: pools and lazily made sockets exist after it
    await sleep(1_000);
    const baseline = await counted();
    await burst();
    const left = await settle(baseline);
    // What stayed open, when something did: the proxy's sockets with their states.
    assert.equal(left, baseline, left === baseline ? '' : (await proxySockets()).join('\n'));
  });
});

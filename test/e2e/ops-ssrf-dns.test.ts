/**
 * SSRF through DNS: names that a real DNS server (in the proxy's namespace, wired in with
 * `ip netns exec`'s per-namespace resolv.conf) resolves to loopback, metadata, unspecified or
 * IPv4-mapped loopback addresses, or to a mix of an allowed and a denied address. The proxy must
 * judge the addresses it would connect to: denied-only names get HTTP 403 / SOCKS5 0x02 /
 * SOCKS4a 0x5B, and no connection ever reaches the tripwire listening on all local addresses.
 * A name resolving to the legacy server is the control that proves the DNS server is used.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { createTestbed, firstLine, type ProxyHandle, type Testbed } from '../../testkit/testbed';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { pickPorts } from '../ops/ports';
import { exchange, httpStatus } from '../ops/wire-client';
import type { DnsTable } from '../ops/dns-server';

describe('SSRF through DNS answers', { timeout: 120_000 }, () => {
  let tb: Testbed;
  let legacy: LegacyServer;
  let proxy: ProxyHandle;
  let netnsEtc: string;
  let trip: number;
  const tripped: string[] = [];
  const queries: string[] = [];
  const bridges: { http?: string; socks?: string } = {};

  const removeNetnsEtc = (): void => {
    if (netnsEtc) fs.rmSync(netnsEtc, { recursive: true, force: true });
  };

  before(async () => {
    tb = await createTestbed({ shapeMbit: 0 });
    legacy = await startLegacyServer(tb);
    const table: DnsTable = {
      'loop.test': { A: ['127.0.0.1'] },
      'loop6.test': { AAAA: ['::1'] },
      'meta.test': { A: ['169.254.169.254'] },
      'zero.test': { A: ['0.0.0.0'] },
      'mapped.test': { AAAA: ['::ffff:127.0.0.1'] },
      'both.test': { A: ['127.0.0.2'], AAAA: ['::1'] },
      'mixed.test': { A: ['127.0.0.1', tb.addr.server] },
      'ok.test': { A: [tb.addr.server] },
    };
    await tb.exec('proxy', ['ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'lo']);
    const dns = tb.spawnNode('proxy', 'dist/test/ops/dns-server.js', ['127.0.0.1', '53', JSON.stringify(table)]);
    assert.deepEqual(JSON.parse(await firstLine(dns, 10_000)), { port: 53 });
    readline.createInterface({ input: dns.stdout! }).on('line', (l) => queries.push(l));
    const [tp, pHttp, pSocks] = pickPorts(3) as [number, number, number];
    trip = tp;
    const wire = tb.spawnNode('proxy', 'dist/test/ops/tripwire.js', [String(trip)]);
    assert.deepEqual(JSON.parse(await firstLine(wire, 10_000)), { port: trip });
    readline.createInterface({ input: wire.stdout! }).on('line', (l) => tripped.push(l));
    // `ip netns exec NS` bind-mounts /etc/netns/NS/* over /etc: the proxy resolves with our server.
    netnsEtc = path.join('/etc/netns', tb.ns.proxy);
    fs.mkdirSync(netnsEtc, { recursive: true });
    process.once('exit', removeNetnsEtc);
    fs.writeFileSync(path.join(netnsEtc, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    proxy = await tb.startProxy(['--http', `127.0.0.1:${pHttp}`, '--socks', `127.0.0.1:${pSocks}`, '--no-metrics', '--log-level', 'warn', '--log-format', 'json']);
    bridges.http = await tb.bridge('proxy', '127.0.0.1', pHttp);
    bridges.socks = await tb.bridge('proxy', '127.0.0.1', pSocks);
  });

  after(async () => {
    await proxy?.stop();
    await tb?.destroy();
    removeNetnsEtc();
  });

  const get = async (host: string, port: number, p = '/'): Promise<number | null> => {
    const x = await exchange({ path: bridges.http! }, [Buffer.from(`GET http://${host}:${port}${p} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`)], { waitMs: 5000 });
    return httpStatus(x.data);
  };
  const connect = async (host: string, port: number): Promise<number | null> => {
    const x = await exchange({ path: bridges.http! }, [Buffer.from(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`)], { waitMs: 5000 });
    return httpStatus(x.data);
  };
  const socks5 = async (host: string, port: number): Promise<number | undefined> => {
    const name = Buffer.from(host);
    const x = await exchange({ path: bridges.socks! }, [Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 3, name.length]), name, Buffer.from([port >> 8, port & 255])])], { waitMs: 5000 });
    return x.data[3];
  };
  const socks4a = async (host: string, port: number): Promise<number | undefined> => {
    const x = await exchange({ path: bridges.socks! }, [Buffer.concat([Buffer.from([4, 1, port >> 8, port & 255, 0, 0, 0, 1]), Buffer.from('u\0'), Buffer.from(host), Buffer.from([0])])], { waitMs: 5000 });
    return x.data[1];
  };

  test('control: a name resolving to the legacy server is served', async () => {
    assert.equal(await get('ok.test', legacy.httpPort, '/bytes/10'), 200);
    assert.ok(queries.some((q) => q.startsWith('query ok.test ')), `the proxy asked our DNS server: ${queries.join('; ')}`);
  });

  for (const name of ['loop.test', 'loop6.test', 'meta.test', 'zero.test', 'mapped.test', 'both.test', 'LOOP.TEST', 'loop.test.']) {
    test(`${name} (denied addresses only): 403, SOCKS5 0x02, SOCKS4a 0x5B, no connect`, async () => {
      assert.equal(await get(name, trip), 403, 'HTTP forward');
      assert.equal(await connect(name, trip), 403, 'HTTP CONNECT');
      assert.equal(await socks5(name, trip), 0x02, 'SOCKS5');
      assert.equal(await socks4a(name, trip), 0x5b, 'SOCKS4a');
      assert.deepEqual(tripped, []);
    });
  }

  test('mixed.test (loopback and an allowed address): only the allowed one is tried', async () => {
    // Nothing listens on the trip port at the legacy server: the allowed address refuses (502),
    // and the loopback answer must never be used.
    const status = await get('mixed.test', trip);
    assert.ok(status === 502 || status === 403, `status ${status}`);
    assert.notEqual(await socks5('mixed.test', trip), 0x00);
    // And the allowed address really is used: the legacy server answers on its own port.
    assert.equal(await get('mixed.test', legacy.httpPort, '/bytes/10'), 200);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(tripped, []);
  });
});

/**
 * The PAC generator: the file is evaluated the way a browser does (a JS sandbox with the PAC
 * helper functions), and no Host header can inject code into it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import vm from 'node:vm';
import fc from 'fast-check';
import { generatePac, hostFromHeader, PAC_CONTENT_TYPE, pacRoute } from '../../src/admin/pac';
import type { ListenerConfig } from '../../src/config/schema';

const L = (protocol: ListenerConfig['protocol'], host: string, port: number): ListenerConfig => ({ name: protocol, protocol, host, port, mptcp: true });

/** The subset of the PAC runtime the generated file uses, as specified by Netscape. */
function findProxy(pac: string, url: string, host: string): string {
  const sandbox = {
    isPlainHostName: (h: string) => !h.includes('.') && !h.includes(':'),
    dnsDomainIs: (h: string, d: string) => h.toLowerCase().endsWith(d.toLowerCase()),
    shExpMatch: (s: string, p: string) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`).test(s),
    result: '',
  };
  vm.runInNewContext(`${pac}\nresult = FindProxyForURL(${JSON.stringify(url)}, ${JSON.stringify(host)});`, sandbox, { timeout: 1000 });
  return sandbox.result;
}

describe('PAC generator', () => {
  test('HTTP listeners first, then mixed, then SOCKS5', () => {
    const pac = generatePac([L('socks', '127.0.0.1', 1080), L('http', '127.0.0.1', 3128), L('mixed', '10.0.0.1', 8080)]);
    assert.equal(findProxy(pac, 'http://example.org/', 'example.org'), 'PROXY 127.0.0.1:3128; PROXY 10.0.0.1:8080; SOCKS5 127.0.0.1:1080');
  });

  test('convert (RFC 8803) listeners are no browser proxy: never advertised', () => {
    const pac = generatePac([L('convert', '127.0.0.1', 5124), L('http', '127.0.0.1', 3128)]);
    assert.equal(findProxy(pac, 'http://example.org/', 'example.org'), 'PROXY 127.0.0.1:3128');
  });

  test('loopback and plain names go DIRECT', () => {
    const pac = generatePac([L('http', '127.0.0.1', 3128)]);
    for (const h of ['localhost', 'intranet', '127.0.0.1', '127.8.9.1', '::1', 'app.localhost']) assert.equal(findProxy(pac, `http://${h}/`, h), 'DIRECT', h);
    assert.equal(findProxy(pac, 'https://10.1.2.3/', '10.1.2.3'), 'PROXY 127.0.0.1:3128');
  });

  test('IPv6 listeners are bracketed; wildcards take the Host the PAC was fetched with', () => {
    assert.match(generatePac([L('http', '2001:db8::1', 3128)]), /PROXY \[2001:db8::1\]:3128/);
    assert.match(generatePac([L('http', '0.0.0.0', 3128)], { requestHost: 'proxy.example:9464' }), /PROXY proxy\.example:3128/);
    assert.match(generatePac([L('http', '::', 3128)], { requestHost: '[2001:db8::7]:9464' }), /PROXY \[2001:db8::7\]:3128/);
    assert.match(generatePac([L('http', '0.0.0.0', 3128)]), /PROXY 127\.0\.0\.1:3128/);
    assert.match(generatePac([L('socks', '::', 1080)], { requestHost: 'bad"host' }), /SOCKS5 \[::1\]:1080/);
  });

  test('no listeners: DIRECT', () => {
    assert.equal(findProxy(generatePac([]), 'http://example.org/', 'example.org'), 'DIRECT');
  });

  test('property: no Host header breaks out of the PAC string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (hostHeader) => {
        const pac = generatePac([L('http', '0.0.0.0', 3128)], { requestHost: hostHeader });
        const answer = findProxy(pac, 'http://example.org/', 'example.org');
        assert.match(answer, /^PROXY (\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):3128$/);
        const h = hostFromHeader(hostHeader);
        if (h !== null) assert.equal(answer, `PROXY ${h}:3128`);
      }),
      { numRuns: 2000 },
    );
  });

  test('route serves the current listeners with the PAC content type', async () => {
    let listeners = [L('http', '0.0.0.0', 3128)];
    const route = pacRoute(() => listeners);
    const server = http.createServer(route);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const get = async (): Promise<Response> => fetch(`http://127.0.0.1:${port}/proxy.pac`);
      const r1 = await get();
      assert.equal(r1.headers.get('content-type'), PAC_CONTENT_TYPE);
      assert.match(await r1.text(), /"PROXY 127\.0\.0\.1:3128"/);
      listeners = [L('socks', '127.0.0.1', 1081)];
      assert.match(await (await get()).text(), /"SOCKS5 127\.0\.0\.1:1081"/);
    } finally {
      server.close();
    }
  });
});

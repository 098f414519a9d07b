/**
 * A real browser through the proxy: headless Debian chromium in the client namespace, the proxy
 * in its own namespace (private destinations denied except the server's range, opened with
 * allowDest), and a page whose script writes a marker into the DOM, served in the server
 * namespace. Once with --proxy-server, once with the PAC file the proxy generates.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { generatePac } from '../../src/admin/pac';
import { pickPorts } from '../ops/ports';
import { createTestbed, firstLine, type ProxyHandle, type Testbed } from '../../testkit/testbed';

const CHROMIUM = '/usr/bin/chromium';

describe('Chromium through the proxy', { timeout: 5 * 60_000 }, () => {
  let tb: Testbed;
  let proxy: ProxyHandle;
  let pagePort: number;
  let proxyPort: number;
  let socksPort: number;
  let mixedPort: number;

  before(async () => {
    if (!fs.existsSync(CHROMIUM)) return;
    tb = await createTestbed({ shapeMbit: 0 });
    const page = tb.spawnNode('server', 'dist/test/ops/page-server.js', [tb.addr.server]);
    pagePort = (JSON.parse(await firstLine(page, 10_000)) as { port: number }).port;
    [proxyPort, socksPort, mixedPort] = pickPorts(3) as [number, number, number];
    const config = path.join(tb.tmpDir, 'chromium.yaml');
    fs.writeFileSync(
      config,
      [
        'access:',
        `  allowClients: ["${tb.addr.path1Subnet}"]`,
        '  denyPrivate: true',
        `  allowDest: ["${tb.addr.serverSubnet}"]`,
        '',
      ].join('\n'),
    );
    const p1 = tb.addr.proxy1;
    proxy = await tb.startProxy(['--config', config, '--http', `${p1}:${proxyPort}`, '--socks', `${p1}:${socksPort}`, '--mixed', `${p1}:${mixedPort}`, '--no-metrics', '--log-format', 'json']);
  });

  after(async () => {
    await proxy?.stop();
    await tb?.destroy();
  });

  /** chromium --dump-dom in the client namespace; returns the DOM after scripts ran. */
  async function dumpDom(url: string, proxyArgs: string[]): Promise<string> {
    const profile = fs.mkdtempSync(path.join(tb.tmpDir, 'chromium-'));
    const r = await tb.exec(
      'client',
      [
        CHROMIUM,
        '--headless',
        '--no-sandbox',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-gpu',
        `--user-data-dir=${profile}`,
        ...proxyArgs,
        '--dump-dom',
        url,
      ],
      { timeoutMs: 90_000, env: { ...process.env, HOME: profile } },
    );
    assert.equal(r.code, 0, `chromium exit ${r.code ?? r.signal}: ${r.stderr.slice(-2000)}`);
    return r.stdout;
  }

  test('page in the server namespace renders through --proxy-server', async (t) => {
    if (!fs.existsSync(CHROMIUM)) return t.skip(`${CHROMIUM} is not installed (apt-get install -y chromium)`);
    const dom = await dumpDom(`http://${tb.addr.server}:${pagePort}/`, [`--proxy-server=http://${tb.addr.proxy1}:${proxyPort}`]);
    assert.match(dom, /<p id="via">[^<]*1\.1 mptcp-proxy<\/p>/, 'the page was fetched through the proxy');
    assert.match(dom, /<p id="marker">rendered-42-\d+<\/p>/, 'the script (a second request through the proxy) ran');
    // The proxy's own record: a client connection from the browser's namespace to the page.
    const line = await proxy.waitForLog((l) => l.message === 'connection' && String(l.client).startsWith(`${tb.addr.client1}:`) && l.destination === `${tb.addr.server}:${pagePort}`, 10_000);
    t.diagnostic(`proxy logged: ${JSON.stringify(line)}`);
  });

  test('page through the generated PAC file', async (t) => {
    if (!fs.existsSync(CHROMIUM)) return t.skip(`${CHROMIUM} is not installed (apt-get install -y chromium)`);
    const pac = generatePac([{ name: 'http', protocol: 'http', host: tb.addr.proxy1, port: proxyPort, mptcp: true }]);
    const dataUrl = `data:application/x-ns-proxy-autoconfig;base64,${Buffer.from(pac).toString('base64')}`;
    const dom = await dumpDom(`http://${tb.addr.server}:${pagePort}/`, [`--proxy-pac-url=${dataUrl}`]);
    assert.match(dom, /<p id="via">[^<]*1\.1 mptcp-proxy<\/p>/);
    assert.match(dom, /<p id="marker">rendered-42-\d+<\/p>/);
  });

  for (const [label, scheme, listener, port] of [
    ['SOCKS5', 'socks5', 'socks', () => socksPort],
    ['mixed port (HTTP)', 'http', 'mixed', () => mixedPort],
    ['mixed port (SOCKS5)', 'socks5', 'mixed', () => mixedPort],
  ] as const) {
    test(`page through the ${label} listener`, async (t) => {
      if (!fs.existsSync(CHROMIUM)) return t.skip(`${CHROMIUM} is not installed (apt-get install -y chromium)`);
      const dom = await dumpDom(`http://${tb.addr.server}:${pagePort}/`, [`--proxy-server=${scheme}://${tb.addr.proxy1}:${port()}`]);
      // SOCKS is a tunnel: no Via. The proxy's log shows the browser's connection instead.
      assert.match(dom, /<p id="via">(none|[^<]*1\.1 mptcp-proxy)<\/p>/);
      if (scheme === 'socks5') assert.match(dom, /<p id="via">none<\/p>/);
      assert.match(dom, /<p id="marker">rendered-42-\d+<\/p>/);
      // Not matched on destination: an HTTP connection whose requests reused a pooled upstream
      // socket is logged without one (reported); the page and marker above prove the path.
      await proxy.waitForLog((l) => l.message === 'connection' && l.protocol === scheme && l.listener === listener && l.result === 'ok' && String(l.client).startsWith(`${tb.addr.client1}:`), 10_000);
    });
  }

  test('a private destination outside allowDest is refused with 403', async (t) => {
    if (!fs.existsSync(CHROMIUM)) return t.skip(`${CHROMIUM} is not installed (apt-get install -y chromium)`);
    // The proxy's own path-2 address: private, so denied by denyPrivate, and not opened.
    const dom = await dumpDom(`http://${tb.addr.proxy2}:${pagePort}/`, [`--proxy-server=http://${tb.addr.proxy1}:${proxyPort}`]);
    assert.match(dom, /403 destination not allowed/);
    await proxy.waitForLog((l) => l.code === 'MPX_DEST_DENIED');
  });
});


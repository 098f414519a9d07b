/**
 * The HTTP side end to end: Node's own http client through the forward proxy (keep-alive, large
 * chunked and sized uploads), every refusal a client can meet (403, 407, 502, 504) with the code
 * logged, and the proxy refusing to start when it would be open to the network.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connectionLogFor, curl, ProxiedHttp, type CurlOptions } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternChunks, patternSha256 } from '../../testkit/pattern';
import { useTestbed, type ProxyHandle } from '../../testkit/testbed';

const HTTP_PORT = 3128;
const AUTH_PORT = 3129;
/** A port on the legacy server that nftables silently drops. */
const BLACKHOLE_PORT = 9;
/** Nothing listens there: the server answers with RST. */
const CLOSED_PORT = 1;

describe('core: HTTP forward proxy, Node client and refusals', { timeout: 120_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 50 });
  let server: LegacyServer;
  let px: ProxyHandle;

  before(async () => {
    server = await startLegacyServer(tb());
    await tb().nft('server', `table inet blackhole {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport ${BLACKHOLE_PORT} drop\n }\n}\n`);
    px = await tb().startProxy(['--http', `${tb().addr.proxy1}:${HTTP_PORT}`, '--allow-client', tb().cidr, '--log-format', 'json', '--connect-timeout', '1000']);
  });
  after(async () => {
    await px?.stop();
  });

  const viaProxy = (url: string, extra: Partial<CurlOptions> = {}): Promise<Awaited<ReturnType<typeof curl>>> =>
    curl(tb(), { url, proxy: { kind: 'http', host: tb().addr.proxy1, port: HTTP_PORT }, timeoutMs: 20_000, ...extra });

  test('keep-alive: five requests over one MPTCP client connection', async () => {
    const client = await ProxiedHttp.open(tb(), tb().addr.proxy1, HTTP_PORT);
    const seen = px.logs.length;
    try {
      for (let i = 0; i < 5; i++) {
        const r = await client.request('GET', server.url(`/bytes/${100_000 + i}?seed=${i}`));
        assert.equal(r.status, 200);
        assert.equal(r.sha256, patternSha256(i, 100_000 + i), `request ${i} body differs`);
        if (i > 0) assert.ok(r.reusedSocket, `request ${i} opened a new connection`);
      }
    } finally {
      client.close();
    }
    const line = await px.waitForLog((l) => l.message === 'connection' && px.logs.indexOf(l) >= seen);
    assert.equal(line.requests, 5, `one proxy connection should have carried all requests: ${JSON.stringify(line)}`);
    assert.equal(line.mptcp, true);
    assert.equal(px.logs.filter((l, i) => i >= seen && l.message === 'connection').length, 1);
  });

  test('a client served over a pooled upstream socket is still logged with its destination', async () => {
    const url = server.url('/bytes/1000?seed=3');
    const dest = new URL(url).host;
    const seen = px.logs.length;
    // Two client connections one after the other: the second reuses the upstream socket the
    // proxy opened (and checked) for the first.
    for (let i = 0; i < 2; i++) {
      const client = await ProxiedHttp.open(tb(), tb().addr.proxy1, HTTP_PORT);
      try {
        assert.equal((await client.request('GET', url)).status, 200);
      } finally {
        client.close();
      }
    }
    const lines = async (): Promise<typeof px.logs> => {
      for (let t = 0; t < 50; t++) {
        const found = px.logs.filter((l, i) => i >= seen && l.message === 'connection');
        if (found.length >= 2) return found;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.fail('two connection lines expected');
    };
    for (const line of await lines()) {
      assert.equal(line.destination, dest, JSON.stringify(line));
      assert.equal(line.upstream, tb().addr.server, JSON.stringify(line));
    }
  });

  test('POST of 20 MB chunked and PUT of 5 MB with content-length are echoed intact', async () => {
    const client = await ProxiedHttp.open(tb(), tb().addr.proxy1, HTTP_PORT);
    try {
      const big = 20_000_000;
      const chunked = await client.request('POST', server.url('/echo'), { body: patternChunks(11, big) });
      assert.equal(chunked.status, 200);
      assert.equal(chunked.size, big);
      assert.equal(chunked.sha256, patternSha256(11, big));
      const sized = 5_000_000;
      const put = await client.request('PUT', server.url('/echo'), { body: patternChunks(12, sized), contentLength: sized });
      assert.equal(put.status, 200);
      assert.equal(put.headers['content-length'], String(sized), 'the sized upload was not forwarded with its length');
      assert.equal(put.sha256, patternSha256(12, sized));
    } finally {
      client.close();
    }
  });

  test('403 for a denied destination (the proxy host loopback), forward and CONNECT', async () => {
    const fwd = await viaProxy('http://127.0.0.1:9464/metrics');
    assert.equal(fwd.httpCode, 403);
    assert.equal((await connectionLogFor(px, fwd)).result, 'MPX_DEST_DENIED');
    const tun = await viaProxy('http://127.0.0.1:9464/metrics', { extraArgs: ['--proxytunnel'] });
    assert.equal(tun.httpConnect, 403);
    assert.notEqual(tun.exitCode, 0);
  });

  test('502 when the destination port is closed', async () => {
    const r = await viaProxy(`http://${server.host}:${CLOSED_PORT}/`);
    assert.equal(r.httpCode, 502);
    assert.equal((await connectionLogFor(px, r)).result, 'MPX_CONNECT_REFUSED');
  });

  test('504 after --connect-timeout 1000 when the destination blackholes the SYN', async () => {
    const r = await viaProxy(`http://${server.host}:${BLACKHOLE_PORT}/`);
    assert.equal(r.httpCode, 504);
    assert.ok(r.timeTotal >= 0.9 && r.timeTotal < 3, `answered after ${r.timeTotal} s, not after the 1 s connect timeout`);
    assert.equal((await connectionLogFor(px, r)).result, 'MPX_CONNECT_TIMEOUT');
  });

  test('407 without or with wrong credentials when users are configured; 200 with the right ones', async () => {
    const auth = await tb().startProxy(['--http', `${tb().addr.proxy1}:${AUTH_PORT}`, '--allow-client', tb().cidr, '--log-format', 'json', '--metrics', '127.0.0.1:9465', '--user', 'alice:plain$s3cret']);
    try {
      const url = server.url('/bytes/1000?seed=2');
      const proxy = { kind: 'http' as const, host: tb().addr.proxy1, port: AUTH_PORT };
      const none = await curl(tb(), { url, proxy, extraArgs: ['-i'] });
      assert.equal(none.httpCode, 407);
      assert.match(none.body?.toString() ?? '', /^proxy-authenticate: basic/im, 'no Proxy-Authenticate challenge');
      const wrong = await curl(tb(), { url, proxy: { ...proxy, user: 'alice', pass: 'nope' } });
      assert.equal(wrong.httpCode, 407);
      const right = await curl(tb(), { url, proxy: { ...proxy, user: 'alice', pass: 's3cret' } });
      assert.equal(right.httpCode, 200);
      assert.equal(right.sha256, patternSha256(2, 1000));
      assert.equal((await connectionLogFor(auth, right)).user, 'alice');
    } finally {
      await auth.stop();
    }
  });

  test('refuses to start on a non-loopback address without --allow-client: one line, no stack', async () => {
    const bad = await tb().startProxy(['--http', `0.0.0.0:${AUTH_PORT + 1}`, '--log-format', 'json'], { waitReady: false });
    const timer = setTimeout(() => void bad.stop(100), 10_000);
    const exit = await bad.exited;
    clearTimeout(timer);
    assert.notEqual(exit.code, 0, 'started although open to the network');
    assert.equal(exit.signal, null, 'had to be killed: it did not refuse by itself');
    const lines = bad.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `expected one line:\n${bad.stderr}`);
    assert.match(lines[0], /allow-client/, 'the line does not say what to do');
    assert.doesNotMatch(bad.stderr, /\n\s+at /, 'stack trace printed');
    assert.equal(await tb().listening('proxy', AUTH_PORT + 1), false);
  });

  test('stops cleanly on SIGTERM (exit 0)', async () => {
    const exit = await px.stop(5000);
    assert.deepEqual(exit, { code: 0, signal: null });
  });
});

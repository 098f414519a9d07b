/**
 * The proxy's reason to exist, end to end: an unmodified client under mptcpize downloads through
 * the HTTP forward, CONNECT and SOCKS5 ports over two 50 Mbit/s paths, gets every byte intact and
 * close to twice one path's rate, and the proxy saw MPTCP with both subflows. A plain TCP client
 * is served too.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connectionLogFor, curl, type CurlResult, type ProxyKind } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternSha256 } from '../../testkit/pattern';
import { useTestbed, type ProxyHandle } from '../../testkit/testbed';

const SIZE = 30_000_000;
const SEED = 7;
const HTTP_PORT = 3128;
const SOCKS_PORT = 1080;
const MIXED_PORT = 8080;
/** Shared machines are noisy: a mode passes when one of a few downloads reaches the rate. */
const ATTEMPTS = 3;

describe('core: MPTCP client → proxy → legacy TCP server, 2 × 50 Mbit/s', { timeout: 180_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 50 });
  const minMbit = 0.85 * 2 * 50;
  const want = patternSha256(SEED, SIZE);
  let server: LegacyServer;
  let px: ProxyHandle;

  before(async () => {
    server = await startLegacyServer(tb());
    const a = tb().addr;
    px = await tb().startProxy(['--http', `${a.proxy1}:${HTTP_PORT}`, '--socks', `${a.proxy1}:${SOCKS_PORT}`, '--mixed', `${a.proxy1}:${MIXED_PORT}`, '--allow-client', tb().cidr, '--log-format', 'json']);
  });
  after(async () => {
    await px?.stop();
  });

  const modes: [ProxyKind, number][] = [
    ['http', HTTP_PORT],
    ['connect', HTTP_PORT],
    ['socks5h', SOCKS_PORT],
  ];
  for (const [kind, port] of modes) {
    test(`${kind}: 30 MB byte-identical at ≥ 85 Mbit/s over MPTCP with 2 subflows`, async (t) => {
      const rates: number[] = [];
      for (let i = 0; i < ATTEMPTS && !(rates.length > 0 && Math.max(...rates) >= minMbit); i++) {
        const before = await tb().pathCounters();
        const r: CurlResult = await curl(tb(), { url: server.url(`/bytes/${SIZE}?seed=${SEED}`), proxy: { kind, host: tb().addr.proxy1, port } });
        const afterC = await tb().pathCounters();
        assert.equal(r.exitCode, 0, `curl failed: ${r.stderr}`);
        assert.equal(r.httpCode, 200);
        assert.equal(r.sizeDownload, SIZE);
        assert.equal(r.sha256, want, 'body differs from what the server sent');
        const line = await connectionLogFor(px, r);
        assert.equal(line.mptcp, true, `proxy did not see MPTCP: ${JSON.stringify(line)}`);
        assert.ok(typeof line.subflows === 'number' && line.subflows >= 2, `proxy saw ${String(line.subflows)} subflow(s): ${JSON.stringify(line)}`);
        assert.equal(line.result, 'ok');
        const p2 = afterC[1].rxBytes - before[1].rxBytes;
        const p1 = afterC[0].rxBytes - before[0].rxBytes;
        assert.ok(p2 > 0.25 * (p1 + p2), `path2 carried too little: ${p1} / ${p2} bytes`);
        rates.push(r.mbitPerSec);
        t.diagnostic(`attempt ${i + 1}: ${r.mbitPerSec.toFixed(1)} Mbit/s, ${r.timeTotal.toFixed(2)} s; path rx ${p1} / ${p2}; proxy subflows ${String(line.subflows)}`);
      }
      assert.ok(Math.max(...rates) >= minMbit, `best of ${rates.length}: ${Math.max(...rates).toFixed(1)} Mbit/s < ${minMbit}`);
    });
  }

  test('the mixed port serves HTTP forward, CONNECT and SOCKS5 on one port', async () => {
    const n = 1_000_000;
    for (const [kind, protocol] of [
      ['http', 'http'],
      ['connect', 'connect'],
      ['socks5h', 'socks5'],
    ] as [ProxyKind, string][]) {
      const r = await curl(tb(), { url: server.url(`/bytes/${n}?seed=4`), proxy: { kind, host: tb().addr.proxy1, port: MIXED_PORT } });
      assert.equal(r.exitCode, 0, `${kind}: ${r.stderr}`);
      assert.equal(r.sha256, patternSha256(4, n));
      const line = await connectionLogFor(px, r);
      assert.equal(line.protocol, protocol, JSON.stringify(line));
      assert.equal(line.mptcp, true);
    }
  });

  test('plain TCP client (no mptcpize) through HTTP and SOCKS: intact, logged as mptcp false', async () => {
    const n = 2_000_000;
    for (const [kind, port] of [
      ['http', HTTP_PORT],
      ['socks5h', SOCKS_PORT],
    ] as [ProxyKind, number][]) {
      const r = await curl(tb(), { mptcp: false, url: server.url(`/bytes/${n}?seed=3`), proxy: { kind, host: tb().addr.proxy1, port } });
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.sha256, patternSha256(3, n));
      const line = await connectionLogFor(px, r);
      assert.equal(line.mptcp, false, JSON.stringify(line));
      assert.equal(line.subflows, 1, JSON.stringify(line));
    }
  });
});

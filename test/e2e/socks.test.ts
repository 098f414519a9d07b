/**
 * SOCKS end to end: curl under mptcpize in the client namespace, two shaped MPTCP paths to the
 * proxy (the CLI, in its own namespace), plain TCP to the legacy server. Every SOCKS flavour
 * curl speaks must deliver the exact bytes over MPTCP, authentication must work and fail as
 * configured, and one SOCKS5 download must use both paths (faster than one path can carry).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connectionLogFor, curl, type ProxyKind } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternSha256 } from '../../testkit/pattern';
import { useTestbed, type ProxyHandle } from '../../testkit/testbed';

const OPEN_PORT = 1080;
const AUTH_PORT = 1081;

describe('SOCKS over MPTCP, end to end', { timeout: 180_000 }, () => {
  const tb = useTestbed({ before, after });
  let server: LegacyServer;
  let open: ProxyHandle;
  let auth: ProxyHandle;

  before(async () => {
    server = await startLegacyServer(tb());
    const { addr } = tb();
    const common = ['--allow-client', addr.path1Subnet, '--allow-client', addr.path2Subnet, '--log-format', 'json', '--no-metrics'];
    open = await tb().startProxy(['--socks', `${addr.proxy1}:${OPEN_PORT}`, ...common]);
    auth = await tb().startProxy(['--socks', `${addr.proxy1}:${AUTH_PORT}`, '--user', 'alice:plain$secret', ...common]);
  });
  after(async () => {
    await Promise.all([open?.stop(), auth?.stop()]);
  });

  const flavours: { kind: ProxyKind; protocol: string }[] = [
    { kind: 'socks5h', protocol: 'socks5' },
    { kind: 'socks5', protocol: 'socks5' },
    { kind: 'socks4a', protocol: 'socks4' },
    { kind: 'socks4', protocol: 'socks4' },
  ];
  flavours.forEach(({ kind, protocol }, i) => {
    test(`${kind}: exact bytes over an MPTCP client connection`, async () => {
      const size = 3_000_001;
      const r = await curl(tb(), { url: server.url(`/bytes/${size}?seed=${i + 1}`), proxy: { kind, host: tb().addr.proxy1, port: OPEN_PORT } });
      assert.equal(r.exitCode, 0, `${r.errorMessage} ${r.stderr}`);
      assert.equal(r.sizeDownload, size);
      assert.equal(r.sha256, patternSha256(i + 1, size));
      const line = await connectionLogFor(open, r);
      assert.equal(line.protocol, protocol);
      assert.equal(line.mptcp, true);
      assert.equal(line.result, 'ok');
      assert.equal(line.destination, `${server.host}:${server.httpPort}`);
    });
  });

  test('SOCKS5 with RFC 1929: right password passes and is logged, wrong one is refused', async () => {
    const url = server.url('/bytes/1000?seed=7');
    const ok = await curl(tb(), { url, proxy: { kind: 'socks5h', host: tb().addr.proxy1, port: AUTH_PORT, user: 'alice', pass: 'secret' } });
    assert.equal(ok.exitCode, 0, `${ok.errorMessage} ${ok.stderr}`);
    assert.equal(ok.sha256, patternSha256(7, 1000));
    assert.equal((await connectionLogFor(auth, ok)).user, 'alice');

    const bad = await curl(tb(), { url, proxy: { kind: 'socks5h', host: tb().addr.proxy1, port: AUTH_PORT, user: 'alice', pass: 'wrong' } });
    assert.notEqual(bad.exitCode, 0);
    assert.equal((await connectionLogFor(auth, bad)).result, 'MPX_AUTH_FAILED');

    const v4 = await curl(tb(), { url, proxy: { kind: 'socks4a', host: tb().addr.proxy1, port: AUTH_PORT } });
    assert.notEqual(v4.exitCode, 0);
    assert.equal((await connectionLogFor(auth, v4)).result, 'MPX_AUTH_REQUIRED');
  });

  test('one SOCKS5 download over MPTCP uses both paths; plain TCP gets one path', async (t) => {
    const size = 40_000_000;
    const run = async (mptcp: boolean): Promise<number> => {
      const r = await curl(tb(), { url: server.url(`/bytes/${size}?seed=3`), proxy: { kind: 'socks5h', host: tb().addr.proxy1, port: OPEN_PORT }, mptcp });
      assert.equal(r.exitCode, 0, `${r.errorMessage} ${r.stderr}`);
      assert.equal(r.sha256, patternSha256(3, size));
      const line = await connectionLogFor(open, r);
      assert.equal(line.mptcp, mptcp);
      if (mptcp) assert.equal(line.subflows, 2, `subflows ${String(line.subflows)}`);
      return r.mbitPerSec;
    };
    const mptcpRate = await run(true);
    const tcpRate = await run(false);
    t.diagnostic(`SOCKS5 40 MB download: MPTCP ${mptcpRate.toFixed(1)} Mbit/s, plain TCP ${tcpRate.toFixed(1)} Mbit/s, paths shaped to ${tb().shapeMbit} Mbit/s each`);
    assert.ok(mptcpRate > tb().shapeMbit * 1.4, `MPTCP through SOCKS ${mptcpRate.toFixed(1)} Mbit/s is not well above one path`);
    assert.ok(tcpRate <= tb().shapeMbit * 1.05, `plain TCP ${tcpRate.toFixed(1)} Mbit/s exceeds one path`);
  });
});

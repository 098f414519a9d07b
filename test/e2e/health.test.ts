/**
 * MPTCP health on the two-path testbed: for each one-path case that can be provoked, the live
 * /connections (and `status`) names the cause — proxy limit of 0 subflows, client without a
 * subflow endpoint (the proxy announcing nothing, or announcing an address the client does not
 * accept), plain-TCP client, client path withdrawn mid-transfer — and a normal two-path
 * download gets no diagnosis. The kernel's MPTCP counters come out as metrics (a join refused by
 * the limit is counted as such).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ConnectionStatus } from '../../src/admin/server';
import { curl, type CurlResult } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternSha256 } from '../../testkit/pattern';
import { CLI_ENTRY, useTestbed, type ProxyHandle } from '../../testkit/testbed';
import { sleep } from '../../testkit/sleep';

const SOCKS_PORT = 1080;
const METRICS = '127.0.0.1:9464';
/** 1.5 MB at 500 kB/s: about 3 s open, long enough to read it live. */
const BYTES = 1_500_000;

describe('MPTCP health: one-path diagnosis and kernel counters (testbed)', { timeout: 180_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 0 });
  let server: LegacyServer;
  let px: ProxyHandle;

  before(async () => {
    server = await startLegacyServer(tb());
    px = await tb().startProxy(['--socks', `${tb().addr.proxy1}:${SOCKS_PORT}`, '--allow-client', tb().cidr, '--log-format', 'json', '--metrics', METRICS]);
  });
  after(() => px?.stop());

  async function admin(path: string): Promise<string> {
    const r = await tb().exec('proxy', ['curl', '-sS', '--noproxy', '*', `http://${METRICS}${path}`]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  }

  /**
   * A slow SOCKS5 download; once its connection has been open 1 s (joins come within
   * milliseconds), its live status; then the download's end, checked intact.
   */
  async function observe(opts: { mptcp?: boolean; during?: () => Promise<void> } = {}): Promise<{ live: ConnectionStatus; table: string }> {
    const seed = Math.floor(Math.random() * 1000);
    const dl = curl(tb(), { url: server.url(`/bytes/${BYTES}?seed=${seed}&kBps=500`), proxy: { kind: 'socks5', host: tb().addr.proxy1, port: SOCKS_PORT }, mptcp: opts.mptcp ?? true, timeoutMs: 30_000 });
    const poll = async (until: (c: ConnectionStatus) => boolean): Promise<ConnectionStatus | undefined> => {
      let c: ConnectionStatus | undefined;
      for (let i = 0; i < 40 && !(c && until(c)); i++) {
        await sleep(100);
        c = (JSON.parse(await admin('/connections')) as { connections: ConnectionStatus[] }).connections[0];
      }
      return c;
    };
    let live = await poll((c) => c.ageMs >= 1000);
    assert.ok(live, 'the connection is listed');
    if (opts.during) {
      await opts.during();
      const since = live.ageMs;
      live = await poll((c) => c.ageMs >= since + 1000);
      assert.ok(live, 'the connection is still listed');
    }
    const table = await tb().exec('proxy', ['node', CLI_ENTRY, 'status', '--metrics', METRICS]);
    assert.equal(table.code, 0, table.stderr);
    const r: CurlResult = await dl;
    assert.equal(r.exitCode, 0, r.errorMessage);
    assert.equal(r.sha256, patternSha256(seed, BYTES));
    // The next case starts on a quiet proxy.
    for (let i = 0; i < 50 && (JSON.parse(await admin('/connections')) as { connections: unknown[] }).connections.length > 0; i++) await sleep(100);
    return { live, table: table.stdout };
  }

  const ip = (ns: 'client' | 'proxy', args: string[]): Promise<unknown> => tb().exec(ns, ['ip', ...args]).then((r) => assert.equal(r.code, 0, r.stderr));

  test('two paths: no diagnosis', async () => {
    const { live } = await observe();
    assert.equal(live.mptcp, true);
    assert.equal(live.subflows.length, 2, JSON.stringify(live));
    assert.equal(live.singlePath, null);
  });

  test('proxy limit subflows 0: join-limit, and the refused join is counted', async () => {
    const rejected = (m: string): number => Number(/^mptcp_proxy_kernel_join_rejections_total\{cause="limit"[^}]*\} (\d+)/m.exec(m)?.[1] ?? 0);
    const before = rejected(await admin('/metrics'));
    await ip('proxy', ['mptcp', 'limits', 'set', 'subflows', '0']);
    try {
      const { live, table } = await observe();
      assert.equal(live.subflows.length, 1, JSON.stringify(live));
      assert.equal(live.singlePath?.cause, 'join-limit', JSON.stringify(live));
      assert.match(table, /one path: join-limit: .*\n\s+fix: .*ip mptcp limits set subflows/);
    } finally {
      await ip('proxy', ['mptcp', 'limits', 'set', 'subflows', '4']);
    }
    assert.ok(rejected(await admin('/metrics')) > before, 'mptcp_proxy_kernel_join_rejections_total{cause="limit"} grew');
  });

  test('client without a subflow endpoint: no-endpoint; with a proxy announcement it ignores: client-never-joined', async () => {
    await ip('client', ['mptcp', 'endpoint', 'flush']);
    try {
      const none = await observe();
      assert.equal(none.live.subflows.length, 1);
      assert.equal(none.live.singlePath?.cause, 'no-endpoint', JSON.stringify(none.live));
      await ip('proxy', ['mptcp', 'endpoint', 'add', tb().addr.proxy2, 'dev', tb().ifaces.proxy2, 'signal']);
      try {
        const ignored = await observe();
        assert.equal(ignored.live.subflows.length, 1);
        assert.equal(ignored.live.singlePath?.cause, 'client-never-joined', JSON.stringify(ignored.live));
        assert.match(ignored.live.singlePath.detail, new RegExp(tb().addr.proxy2.replaceAll('.', '\\.')));
      } finally {
        await ip('proxy', ['mptcp', 'endpoint', 'flush']);
      }
    } finally {
      await ip('client', ['mptcp', 'endpoint', 'add', tb().addr.client2, 'dev', tb().ifaces.client2, 'subflow']);
    }
  });

  test('client path withdrawn mid-transfer (its endpoint removed): path-down, naming the path', async () => {
    try {
      const { live } = await observe({ during: () => ip('client', ['mptcp', 'endpoint', 'flush']) as Promise<void> });
      assert.equal(live.subflows.length, 1, JSON.stringify(live));
      assert.equal(live.singlePath?.cause, 'path-down', JSON.stringify(live));
      assert.match(live.singlePath.detail, new RegExp(`${tb().addr.client2.replaceAll('.', '\\.')} via ${tb().ifaces.proxy2}`));
    } finally {
      await ip('client', ['mptcp', 'endpoint', 'add', tb().addr.client2, 'dev', tb().ifaces.client2, 'subflow']);
    }
  });

  test('plain-TCP client: fallback', async () => {
    const { live, table } = await observe({ mptcp: false });
    assert.equal(live.mptcp, false);
    assert.equal(live.singlePath?.cause, 'fallback', JSON.stringify(live));
    assert.match(table, /mptcp=no[^\n]*\n\s+one path: fallback/);
  });
});

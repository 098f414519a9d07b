/**
 * Two uplinks (the proxy's two paths to the client, each with its own gateway and probe):
 * `uplink` steering, then the path-1 uplink is cut mid-download with an nftables drop on its
 * egress; the engine's probes declare it down and move the path-1 subflow's packets to uplink 2
 * (seen as packets for the client's path-1 address arriving on its path-2 interface); restoring
 * the uplink moves them back. The download completes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { curl } from '../helpers/clients';
import { startLegacyServer, type LegacyServer } from '../helpers/legacy-server';
import { createTestbed, type ProxyLogLine, type Testbed } from '../helpers/testbed';
import { sleep, startSteeredProxy, steered, writeConfig } from '../steering/proxy';

/** The engine's log line for an uplink state change, with its time in ms since the epoch. */
const uplinkChange = (name: string, state: 'down' | 'up') => (l: ProxyLogLine): boolean =>
  l.uplink === name && l.message === (state === 'down' ? 'uplink down: moving its subflows' : 'uplink up: moving subflows back');

describe('steering: uplink failover and failback (testbed, real kernel)', () => {
  let tb: Testbed;
  let srv: LegacyServer;
  before(async () => {
    tb = await createTestbed();
    srv = await startLegacyServer(tb);
  });
  after(async () => tb?.destroy());

  it('moves a subflow off a cut uplink within about a second, back on restore, download completes', async () => {
    const a = tb.addr;
    const probe = (host: string): Record<string, unknown> => ({ target: `${host}:9`, intervalMs: 100, timeoutMs: 200, downAfter: 3, upAfter: 3 });
    const cfg = writeConfig(tb, 'uplinks.yaml', {
      uplinks: [
        { name: 'up1', interface: tb.ifaces.proxy1, source: a.proxy1, gateway: a.client1, signal: false, probe: probe(a.client1) },
        { name: 'up2', interface: tb.ifaces.proxy2, source: a.proxy2, gateway: a.client2, signal: false, probe: probe(a.client2) },
      ],
      policies: [{ name: 'path1-on-up1', match: { client: a.path1Subnet }, uplink: 'up1' }],
    });
    // Counts packets for the client's path-1 address that arrive over path 2: rerouted ones.
    await tb.exec('client', ['nft', '-f', '-'], {
      input: `table inet tb_watch { chain pre { type filter hook prerouting priority -300; iifname "${tb.ifaces.client2}" ip daddr ${a.client1} counter; }; }\n`,
    });
    const rerouted = async (): Promise<number> => {
      const out = (await tb.exec('client', ['nft', 'list', 'table', 'inet', 'tb_watch'])).stdout;
      return Number(/counter packets (\d+)/.exec(out)?.[1] ?? -1);
    };
    const h = await startSteeredProxy(tb, cfg);
    const at = (l: ProxyLogLine): number => Date.parse(String(l.timestamp));
    try {
      const dl = curl(tb, { url: srv.url('/bytes/104857600'), proxy: { kind: 'http', host: a.proxy1, port: 3128 }, timeoutMs: 90_000 });
      const first = await h.waitForLog(steered('path1-on-up1'), 10_000);
      assert.equal(first.mark, 0x4d500001);
      await sleep(1500);
      assert.equal(await rerouted(), 0, 'nothing rerouted while both uplinks are up');
      const cutAt = Date.now();
      await tb.exec('proxy', ['nft', '-f', '-'], { input: `table inet tb_cut { chain post { type filter hook postrouting priority 100; oifname "${tb.ifaces.proxy1}" drop; }; }\n` });
      const detectMs = at(await h.waitForLog(uplinkChange('up1', 'down'), 3000)) - cutAt;
      await sleep(1000);
      const r1 = await rerouted();
      // After the cut the subflow is in loss recovery and MPTCP has moved data to subflow 2; what matters
      // is that its packets now get through over uplink 2 instead of backing off into a stall.
      assert.ok(r1 > 0, `path-1 subflow rerouted over uplink 2 (${r1} packets)`);
      const restoreAt = Date.now();
      await tb.exec('proxy', ['nft', 'delete', 'table', 'inet', 'tb_cut']);
      const failbackMs = at(await h.waitForLog(uplinkChange('up1', 'up'), 3000)) - restoreAt;
      await sleep(300);
      const r2 = await rerouted();
      await sleep(1000);
      const r3 = await rerouted();
      const [c1a] = await tb.pathCounters();
      await sleep(1000);
      const [c1b] = await tb.pathCounters();
      const p1Mbit = ((c1b.rxBytes - c1a.rxBytes) * 8) / 1e6;
      console.log(`# failover: detected ${detectMs} ms after the cut, rerouted ${r1} packets; failback detected ${failbackMs} ms after restore; path 1 back at ${p1Mbit.toFixed(1)} Mbit/s`);
      assert.ok(detectMs < 1200, `failover detected after ${detectMs} ms`);
      assert.ok(r3 - r2 < 50, `rerouting stopped after failback (${r3 - r2} more packets)`);
      assert.ok(p1Mbit > 5, `path 1 carries traffic again (${p1Mbit.toFixed(1)} Mbit/s)`);
      const r = await dl;
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.sizeDownload, 104857600);
    } finally {
      assert.equal((await h.stop(8000)).code, 0);
    }
    const rules = (await tb.exec('proxy', ['ip', 'rule', 'show'])).stdout;
    assert.doesNotMatch(rules, /fwmark 0x4d5/);
  });
});

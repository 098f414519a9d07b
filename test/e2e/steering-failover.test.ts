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
import { PINNED_POLICY, cutUplink1, logTime, restoreUplink1, uplinkChange, watchRerouted, writeUplinkConfig } from '../helpers/failover';
import { startLegacyServer, type LegacyServer } from '../helpers/legacy-server';
import { createTestbed, type Testbed } from '../helpers/testbed';
import { sleep, startSteeredProxy, steered } from '../steering/proxy';

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
    const cfg = writeUplinkConfig(tb, 'uplinks.yaml');
    const rerouted = await watchRerouted(tb);
    const h = await startSteeredProxy(tb, cfg);
    try {
      const dl = curl(tb, { url: srv.url('/bytes/104857600'), proxy: { kind: 'http', host: a.proxy1, port: 3128 }, timeoutMs: 90_000 });
      const first = await h.waitForLog(steered(PINNED_POLICY), 10_000);
      assert.equal(first.mark, 0x4d500001);
      await sleep(1500);
      assert.equal(await rerouted(), 0, 'nothing rerouted while both uplinks are up');
      const cutAt = Date.now();
      await cutUplink1(tb);
      const detectMs = logTime(await h.waitForLog(uplinkChange('up1', 'down'), 3000)) - cutAt;
      await sleep(1000);
      const r1 = await rerouted();
      // After the cut the subflow is in loss recovery and MPTCP has moved data to subflow 2; what matters
      // is that its packets now get through over uplink 2 instead of backing off into a stall.
      assert.ok(r1 > 0, `path-1 subflow rerouted over uplink 2 (${r1} packets)`);
      const restoreAt = Date.now();
      await restoreUplink1(tb);
      const failbackMs = logTime(await h.waitForLog(uplinkChange('up1', 'up'), 3000)) - restoreAt;
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

/**
 * Two uplinks (the proxy's two paths to the client, each with its own gateway and probe):
 * `uplink` steering, then the path-1 uplink is cut mid-download with an nftables drop on its
 * egress; the engine's probes declare it down and move the path-1 subflow's packets to uplink 2
 * (seen as packets for the client's path-1 address arriving on its path-2 interface); restoring
 * the uplink moves them back. The download completes. Also: the failover bench's handoff metrics
 * (pure) and its quick mode end to end, so the bench cannot rot.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { run as failoverBench } from '../../bench/failover';
import { bytesAt, rateMbit, timeToLatency, timeToThroughput, worstRtt, type ByteSample } from '../../bench/lib/handoff';
import { curl } from '../../testkit/clients';
import { PINNED_POLICY, cutUplink1, logTime, restoreUplink1, uplinkChange, watchRerouted, writeUplinkConfig } from '../../testkit/failover';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { createTestbed, type Testbed } from '../../testkit/testbed';
import { startSteeredProxy, steered } from '../../testkit/steered-proxy';
import { sleep } from '../../testkit/sleep';

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

describe('failover bench: handoff metrics (pure)', () => {
  /** 1 Mbit/s is 125 bytes per ms: a series at `mbit` from t0 to t1, sampled every 10 ms. */
  const steady = (t0: number, t1: number, mbit: number, from = 0): ByteSample[] => {
    const out: ByteSample[] = [];
    for (let t = t0; t <= t1; t += 10) out.push({ t, bytes: from + (t - t0) * 125 * mbit });
    return out;
  };
  it('goodput, T-throughput after a stall, never when the target is not held', () => {
    // 100 Mbit/s until 1000 ms, nothing until 1300 ms, then 45 Mbit/s.
    const a = steady(0, 1000, 100);
    const series = [...a, ...steady(1300, 3000, 45, a[a.length - 1]!.bytes)];
    assert.equal(bytesAt(series, -1), 0);
    assert.ok(Math.abs(rateMbit(series, 0, 1000) - 100) < 0.01);
    assert.equal(rateMbit(series, 1010, 1290), 0);
    // Back when the 500 ms mean reaches 40: the window may start while 500 × (1 - 40/45) ms of it is still stalled.
    const t = timeToThroughput(series, 1000, 40)!;
    assert.ok(t >= 240 && t <= 260, `T-throughput ${t}`);
    assert.equal(timeToThroughput(series, 1000, 50), null, '45 Mbit/s never reaches 50');
    assert.equal(timeToThroughput(series, 2700, 40), null, 'not enough data left to hold for 500 ms');
  });
  it('property: T-throughput after a stall of G ms then 50 Mbit/s, target 40, is G - 100 ms (one step)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 150 }), (gapSteps) => {
        const gap = gapSteps * 10;
        const a = steady(0, 500, 50);
        const series = [...a, ...steady(500 + gap, 2000 + gap, 50, a[a.length - 1]!.bytes)];
        const t = timeToThroughput(series, 500, 40);
        // 20% of the 500 ms window may fall in the stall.
        return t !== null && t >= Math.max(0, gap - 110) && t <= Math.max(0, gap - 90);
      }),
    );
  });
  it('T-latency: the first exchange sent after the cut that is back within the bound', () => {
    const ex = [
      { sent: 0, answered: 1 },
      { sent: 10, answered: 400 },
      { sent: 20, answered: 400 },
      { sent: 30, answered: 401 },
      { sent: 400, answered: 401 },
      { sent: 410, answered: null },
    ];
    assert.equal(timeToLatency(ex, 5, 20), 396);
    assert.equal(timeToLatency(ex, 500, 20), null);
    assert.equal(worstRtt(ex, 5), 390);
    assert.equal(timeToLatency([], 0, 20), null);
  });
});

describe('failover bench --quick (testbed, real kernel)', () => {
  it('measures T-throughput, T-latency, detection and failback with and without fast recovery', { timeout: 120_000 }, async () => {
    const r = await failoverBench({ quick: true });
    console.log(`# failover bench quick: ${JSON.stringify({ fr: [r.tThroughputFailureFrMs.p50, r.tThroughputRecoveryFrMs.p50, r.tLatencyFailureFrMs.p50], nofr: [r.tThroughputFailureNoFrMs.p50, r.tThroughputRecoveryNoFrMs.p50, r.tLatencyFailureNoFrMs.p50], detect: r.detectMs.runs, failback: r.failbackMs.runs })}`);
    assert.equal(r.repetitions, 1);
    assert.ok((r.beforeMbit ?? 0) > 30, `goodput before the cut ${r.beforeMbit} Mbit/s`);
    // One path survives: goodput gets back to 80% of it within the run, with or without the proxy's help.
    for (const f of [r.tThroughputFailureFrMs, r.tThroughputFailureNoFrMs]) assert.equal(typeof f.p50, 'number', JSON.stringify(f));
    // With fast recovery a stuck reply waits at most for the detection; MPTCP alone may leave it
    // until the link is back and its subflow's backoff timer fires, past this short window (null).
    assert.equal(typeof r.tLatencyFailureFrMs.p50, 'number', JSON.stringify(r.tLatencyFailureFrMs));
    assert.equal(r.detectMs.runs.length, 2);
    for (const d of [...r.detectMs.runs, ...r.failbackMs.runs]) assert.ok(d !== null && d < 1500, `engine reacted after ${d} ms`);
    // The client's own path 1 blackholed: the other path carries on, with or without the backoff cap.
    for (const f of [r.tThroughputFailureClientRtoMs, r.tThroughputFailureClientNoRtoMs]) assert.equal(typeof f.p50, 'number', JSON.stringify(f));
  });
});

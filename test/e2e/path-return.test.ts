/**
 * Fast return of a repaired path (paths.rtoMaxMs), on the two-path testbed: during a SOCKS5
 * download the client's path 1 is blackholed for 4 s (nftables drop both ways in the client
 * namespace), then repaired; with the cap, path 1 carries data again within the cap (1 s) plus a
 * few round trips of slow start (without it the subflow waits out its retransmission backoff:
 * printed for comparison), and the bytes arrive intact. The proxy owns the namespace's net.ipv4.tcp_rto_max_ms: set while it runs,
 * restored on stop, and after a SIGKILL by the next start.
 * PATH_RETURN_RUNS=N repeats the outage N times per proxy (default 1).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { curl } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternSha256 } from '../../testkit/pattern';
import { useTestbed, type ProxyHandle } from '../../testkit/testbed';
import { writeConfig } from '../../testkit/steered-proxy';
import { sleep } from '../../testkit/sleep';

const SOCKS_PORT = 1080;
const BYTES = 100_000_000;
const OUTAGE_MS = 4000;
const RUNS = Number(process.env.PATH_RETURN_RUNS ?? 1);
const RTO_MAX_MS = 1000;
/**
 * After the repair, the subflow's next retransmission comes within the cap (the kernel's floor for
 * it is 1000 ms), then it needs a few round trips of slow start to move CARRIES_BYTES: measured
 * 77–1048 ms in 5 runs, so the bound is the cap plus that ramp.
 */
const BACK_WITHIN_MS = RTO_MAX_MS + 250;
/** Path 1 "carries again" once this much of the proxy's data has got through it after the repair. */
const CARRIES_BYTES = 30_000;

describe('paths.rtoMaxMs: a blackholed client path carries again about 1 s after its repair at worst (testbed)', { timeout: 300_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 50 });
  let server: LegacyServer;

  before(async () => {
    server = await startLegacyServer(tb());
    // What the proxy's data delivers over path 1 (counted after the blackhole's drop, so only what gets through).
    await tb().nft('client', `table inet tb_meas { chain in { type filter hook input priority 0; iifname "${tb().ifaces.client1}" tcp sport ${SOCKS_PORT} counter; }; }\n`);
  });

  const rtoMax = async (): Promise<string> => (await tb().exec('proxy', ['sysctl', '-n', 'net.ipv4.tcp_rto_max_ms'])).stdout.trim();
  const path1Bytes = async (): Promise<number> => Number(/counter packets \d+ bytes (\d+)/.exec((await tb().exec('client', ['nft', 'list', 'table', 'inet', 'tb_meas'])).stdout)?.[1] ?? NaN);

  async function startProxy(name: string, rtoMaxMs?: number): Promise<ProxyHandle> {
    const cfg = writeConfig(tb(), name, rtoMaxMs ? { paths: { rtoMaxMs } } : {});
    // The listener as a flag (it replaces the file's), so startProxy waits for its port.
    return tb().startProxy(['--config', cfg, '--socks', `${tb().addr.proxy1}:${SOCKS_PORT}`]);
  }

  /** A download with one outage of path 1; ms from the repair until path 1 carries again. */
  async function outage(): Promise<number> {
    const seed = Math.floor(Math.random() * 1000);
    const dl = curl(tb(), { url: server.url(`/bytes/${BYTES}?seed=${seed}`), proxy: { kind: 'socks5', host: tb().addr.proxy1, port: SOCKS_PORT }, timeoutMs: 90_000 });
    await sleep(2000);
    const i1 = tb().ifaces.client1;
    await tb().nft('client', `table inet tb_cut { chain pre { type filter hook prerouting priority -300; iifname "${i1}" drop; }; chain post { type filter hook postrouting priority 100; oifname "${i1}" drop; }; }\n`);
    let backMs = Infinity;
    try {
      await sleep(OUTAGE_MS);
      const b0 = await path1Bytes();
      await tb().exec('client', ['nft', 'delete', 'table', 'inet', 'tb_cut']);
      const repairedAt = Date.now();
      while (Date.now() - repairedAt < 10_000) {
        if ((await path1Bytes()) - b0 >= CARRIES_BYTES) {
          backMs = Date.now() - repairedAt;
          break;
        }
        await sleep(5);
      }
    } finally {
      await tb().exec('client', ['nft', 'delete', 'table', 'inet', 'tb_cut']);
    }
    const r = await dl;
    assert.equal(r.exitCode, 0, r.errorMessage);
    assert.equal(r.sizeDownload, BYTES);
    assert.equal(r.sha256, patternSha256(seed, BYTES), 'bytes identical');
    return backMs;
  }

  test('without the cap (kernel default backoff): for comparison only', async () => {
    const px = await startProxy('default.yaml');
    try {
      assert.equal(await rtoMax(), '120000');
      const times: number[] = [];
      for (let i = 0; i < RUNS; i++) times.push(await outage());
      console.log(`path 1 back ${times.join(', ')} ms after the repair (no cap)`);
    } finally {
      assert.equal((await px.stop()).code, 0);
    }
  });

  test('with paths.rtoMaxMs 1000: back within the cap (plus the ramp), every run; the sysctl is restored on stop', async () => {
    const px = await startProxy('rto.yaml', RTO_MAX_MS);
    const times: number[] = [];
    try {
      assert.equal(await rtoMax(), '1000', 'the cap is set in the proxy namespace');
      for (let i = 0; i < RUNS; i++) times.push(await outage());
      console.log(`path 1 back ${times.join(', ')} ms after the repair (rtoMaxMs 1000)`);
    } finally {
      assert.equal((await px.stop()).code, 0);
    }
    assert.ok(times.every((t) => t <= BACK_WITHIN_MS), `path 1 carried again within ${BACK_WITHIN_MS} ms: ${times.join(', ')} ms`);
    assert.equal(await rtoMax(), '120000', 'restored on stop');
  });

  test('after a SIGKILL the next start restores the original value', async () => {
    const px = await startProxy('rto-kill.yaml', 2000);
    assert.equal(await rtoMax(), '2000');
    px.proc.kill('SIGKILL');
    await px.exited;
    assert.equal(await rtoMax(), '2000', 'a killed proxy leaves it set');
    const next = await startProxy('default2.yaml');
    try {
      assert.equal(await rtoMax(), '120000', 'the next start restored it from the journal');
    } finally {
      assert.equal((await next.stop()).code, 0);
    }
  });
});

/**
 * The userspace path manager (paths.pathManager: userspace) on the two-path testbed, with a real
 * MPTCP client (curl under mptcpize; the client's in-kernel PM with a `fullmesh` endpoint on path 2
 * that accepts announcements). The proxy sets the C flag, so the client joins only addresses the
 * proxy announces: path 2 carries data only because the proxy announced its path-2 address.
 *
 * - a download uses both paths (paths.announce here; the signal endpoint, the default policy, in
 *   the other cases); net.mptcp.pm_type is 1 while the proxy runs and 0 again after;
 * - a `backup: true` policy on the path-2 address becomes MP_PRIO on each such subflow: path 2
 *   carries under 3 % of the bytes;
 * - healing: the client's path-2 subflow is lost (its address removed and its sockets destroyed;
 *   or the proxy's path-2 interface down and its subflows destroyed), data goes on over path 1,
 *   and within 2 s of the path's return a subflow over it is established again (and carries the
 *   download again); bytes identical;
 * - after a SIGKILL the next start restores pm_type.
 * HEAL_RUNS=N repeats each healing case N times (default 1) and prints the times.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { curl } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternSha256 } from '../../testkit/pattern';
import { sleep } from '../../testkit/sleep';
import { writeConfig } from '../../testkit/steered-proxy';
import { useTestbed, type ProxyHandle } from '../../testkit/testbed';

const PORT = 1080;
const RUNS = Number(process.env.HEAL_RUNS ?? 1);
const HEAL_WITHIN_MS = 2000;

describe('userspace path manager: announce, per-subflow backup, healing (testbed)', { timeout: 600_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 50, clientAddAddrAccepted: 8 });
  let server: LegacyServer;

  const sh = async (ns: 'client' | 'proxy', cmd: string): Promise<string> => {
    const r = await tb().exec(ns, ['sh', '-c', cmd]);
    assert.equal(r.code, 0, `${cmd}: ${r.stderr}`);
    return r.stdout;
  };
  const pmType = async (): Promise<string> => (await sh('proxy', 'sysctl -n net.mptcp.pm_type')).trim();
  /** Established subflows at the proxy whose client end is `addr`. */
  const subflowsFrom = async (addr: string): Promise<number> => (await sh('proxy', `ss -tnH state established '( sport = :${PORT} )'`)).split('\n').filter((l) => l.includes(` ${addr}:`)).length;
  const waitFor = async (what: string, cond: () => Promise<boolean>, ms: number): Promise<number> => {
    const t0 = Date.now();
    while (!(await cond())) {
      if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
      await sleep(10);
    }
    return Date.now() - t0;
  };

  before(async () => {
    server = await startLegacyServer(tb());
    const { addr: a, ifaces: i } = tb();
    // Client: joins announced addresses from its path-2 address (fullmesh), room for re-joins.
    await sh('client', `ip mptcp limits set subflows 8 add_addr_accepted 8 && ip mptcp endpoint flush && ip mptcp endpoint add ${a.client2} dev ${i.client2} subflow fullmesh`);
    // Proxy: the address to announce, as the in-kernel PM would (a signal endpoint), and the C flag.
    await sh('proxy', `ip mptcp endpoint add ${a.proxy2} dev ${i.proxy2} signal && sysctl -qw net.mptcp.allow_join_initial_addr_port=0`);
  });

  async function startProxy(name: string, doc: Record<string, unknown> = {}): Promise<ProxyHandle> {
    const cfg = writeConfig(tb(), name, { paths: { pathManager: 'userspace' }, ...doc });
    // Wildcard: joins to the announced address arrive at it.
    const px = await tb().startProxy(['--config', cfg, '--socks', `0.0.0.0:${PORT}`]);
    await px.waitForLog((l) => l.message === 'userspace path manager on');
    return px;
  }

  /** A download through the proxy; bytes per client path; checked intact. */
  async function download(bytes: number, kBps: number, during?: () => Promise<void>): Promise<{ path1: number; path2: number }> {
    const before = await tb().pathCounters();
    const seed = Math.floor(Math.random() * 1000);
    const dl = curl(tb(), { url: server.url(`/bytes/${bytes}?seed=${seed}&kBps=${kBps}`), proxy: { kind: 'socks5', host: tb().addr.proxy1, port: PORT }, timeoutMs: 120_000 });
    if (during) await during();
    const r = await dl;
    assert.equal(r.exitCode, 0, r.errorMessage);
    assert.equal(r.sizeDownload, bytes);
    assert.equal(r.sha256, patternSha256(seed, bytes), 'bytes identical');
    const now = await tb().pathCounters();
    return { path1: now[0].rxBytes - before[0].rxBytes, path2: now[1].rxBytes - before[1].rxBytes };
  }

  test('announces per connection (paths.announce): a download uses both paths; pm_type 1 while running, 0 after', async () => {
    assert.equal(await pmType(), '0');
    const px = await startProxy('upm.yaml', { paths: { pathManager: 'userspace', announce: [tb().addr.proxy2] } });
    let bytes: { path1: number; path2: number };
    try {
      assert.equal(await pmType(), '1', 'the proxy runs its namespace with the userspace PM');
      bytes = await download(40_000_000, 0);
    } finally {
      assert.equal((await px.stop()).code, 0);
    }
    const share2 = bytes.path2 / (bytes.path1 + bytes.path2);
    console.log(`path 2 share ${(100 * share2).toFixed(1)} % (${bytes.path1} / ${bytes.path2} B)`);
    assert.ok(share2 > 0.25 && share2 < 0.75, `both paths carry the download: path 2 share ${share2}`);
    assert.equal(await pmType(), '0', 'restored on stop');
  });

  test('backup policy on the path-2 address: MP_PRIO per subflow keeps path 2 under 3 % of the bytes', async () => {
    const px = await startProxy('upm-backup.yaml', { policies: [{ name: 'standby', match: { local: tb().addr.proxy2 }, backup: true }] });
    let bytes: { path1: number; path2: number };
    try {
      bytes = await download(40_000_000, 0, async () => {
        await waitFor('the path-2 subflow', async () => (await subflowsFrom(tb().addr.client2)) === 1, 5000);
      });
      assert.ok(px.logs.some((l) => l.message === 'subflow marked backup' && l.local === `${tb().addr.proxy2}:${PORT}`), 'the path-2 subflow was marked backup');
    } finally {
      assert.equal((await px.stop()).code, 0);
    }
    const share2 = bytes.path2 / (bytes.path1 + bytes.path2);
    console.log(`backup path 2 share ${(100 * share2).toFixed(2)} % (${bytes.path1} / ${bytes.path2} B)`);
    assert.ok(share2 < 0.03, `path 2 carries under 3 %: ${share2}`);
  });

  /**
   * One healing run: during a paced download (8 MB/s for 10 s), the path-2 subflow is lost by
   * `lose`, data goes on over path 1, then `restore`; ms until a subflow from the client's
   * path-2 address is established again.
   */
  async function healRun(lose: () => Promise<void>, restore: () => Promise<void>): Promise<number> {
    const c2 = tb().addr.client2;
    let healMs = Infinity;
    let path1During = 0;
    // 64 Mbit/s: more than one 50 Mbit/s path, so the scheduler needs path 2 whenever it is there.
    await download(80_000_000, 8000, async () => {
      await waitFor('the path-2 subflow', async () => (await subflowsFrom(c2)) === 1, 5000);
      await sleep(1000);
      await lose();
      await waitFor('the path-2 subflow closed at the proxy', async () => (await subflowsFrom(c2)) === 0, 5000);
      const b0 = (await tb().counters('client', tb().ifaces.client1)).rxBytes;
      await sleep(1500);
      path1During = (await tb().counters('client', tb().ifaces.client1)).rxBytes - b0;
      await restore();
      healMs = await waitFor('the path-2 subflow back', async () => (await subflowsFrom(c2)) >= 1, 10_000);
      // And it carries the download again.
      const b2 = (await tb().counters('client', tb().ifaces.client2)).rxBytes;
      await waitFor('path 2 carrying again', async () => (await tb().counters('client', tb().ifaces.client2)).rxBytes - b2 > 200_000, 3000);
    });
    assert.ok(path1During > 1_000_000, `data went on over path 1 while path 2 was lost: ${path1During} B in 1.5 s`);
    return healMs;
  }

  async function healCase(label: string, lose: () => Promise<void>, restore: () => Promise<void>): Promise<void> {
    const px = await startProxy(`upm-heal-${label}.yaml`);
    const times: number[] = [];
    try {
      for (let i = 0; i < RUNS; i++) times.push(await healRun(lose, restore));
      assert.ok(px.logs.some((l) => l.message === 'path healed'), 'the proxy logged the healed path');
    } catch (e) {
      await px.stop();
      throw e;
    }
    assert.equal((await px.stop()).code, 0);
    console.log(`${label}: path 2 subflow back ${times.join(', ')} ms after the path returned`);
    assert.ok(times.every((t) => t <= HEAL_WITHIN_MS), `healed within ${HEAL_WITHIN_MS} ms: ${times.join(', ')}`);
  }

  test('client address removed and restored: a subflow over it again within 2 s', async () => {
    const { addr: a, ifaces: i } = tb();
    await healCase(
      'client-address',
      // Removing the address leaves its sockets (and their RSTs have no source address left): destroyed at both ends.
      async () => {
        await sh('client', `ip addr del ${a.client2}/24 dev ${i.client2} && ss -K src ${a.client2} >/dev/null`);
        await sh('proxy', `ss -K dst ${a.client2} >/dev/null`);
      },
      // The per-source route went with the address.
      () => sh('client', `ip addr add ${a.client2}/24 dev ${i.client2} && ip route replace default via ${a.proxy2} dev ${i.client2} table 102`).then(() => undefined),
    );
  });

  test('proxy-side interface down and up: a subflow over it again within 2 s', async () => {
    const { addr: a, ifaces: i } = tb();
    await healCase(
      'proxy-interface',
      // Down, and its subflows closed at the proxy (their RSTs cannot reach the client: it keeps its ends).
      () => sh('proxy', `ip link set ${i.proxy2} down && ss -K dst ${a.client2} >/dev/null`).then(() => undefined),
      () => sh('proxy', `ip link set ${i.proxy2} up`).then(() => undefined),
    );
  });

  test('after a SIGKILL the next start restores pm_type', async () => {
    const px = await startProxy('upm-kill.yaml');
    assert.equal(await pmType(), '1');
    px.proc.kill('SIGKILL');
    await px.exited;
    assert.equal(await pmType(), '1', 'a killed proxy leaves it set');
    const next = await tb().startProxy(['--config', writeConfig(tb(), 'kernel.yaml', {}), '--socks', `0.0.0.0:${PORT}`]);
    try {
      assert.equal(await pmType(), '0', 'the next start restored it from the journal');
    } finally {
      assert.equal((await next.stop()).code, 0);
    }
  });
});

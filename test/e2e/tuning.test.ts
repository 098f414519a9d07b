/**
 * Tuning on the two-path testbed (2 × 50 Mbit/s):
 * (a) MSS: path 2's MTU lowered to 1000 on both of its ends; the proxy's subflow on that path
 *     runs with MSS ≤ 960 while path 1's keeps full size, the download is intact, the owned clamp
 *     table is in place (and saw the SYN/ACKs) while the proxy runs and gone after SIGTERM;
 *     `mptcp-proxy cleanup` removes one left by SIGKILL.
 * (b) Buffers: fixed 0.18 MB (too small for two paths of different delay) vs auto. Asserts the behaviour (fixed
 *     sizes are on the proxy's subflow sockets as the kernel reports them; auto leaves autotuning
 *     alone when tcp_rmem/tcp_wmem suffice) and reports both throughputs as figures.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curl, type CurlResult } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternSha256 } from '../../testkit/pattern';
import { CLI_ENTRY, useTestbed, type ProxyHandle, type Testbed } from '../../testkit/testbed';
import { sleep } from '../../testkit/sleep';

const PORT = 3128;
const ADMIN = '127.0.0.1:9464';
const MSS_TABLE = 'mptcp_proxy_mss';

interface StatusSubflow {
  local: string;
  remote: string;
  mss: number | null;
}
interface StatusConnection {
  id: number;
  subflows: StatusSubflow[];
  buffers?: { mode: string; rcvBytes: number | null; sndBytes: number | null; rcvLocked: boolean; sndLocked: boolean; reason: string; needBytes: number | null } | null;
}

async function connections(tb: Testbed): Promise<StatusConnection[]> {
  const r = await tb.exec('proxy', ['curl', '-sS', '--noproxy', '*', `http://${ADMIN}/connections`]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { connections: StatusConnection[] }).connections;
}

async function tableExists(tb: Testbed): Promise<boolean> {
  const r = await tb.exec('proxy', ['nft', '-j', 'list', 'tables']);
  return r.stdout.includes(`"name": "${MSS_TABLE}"`);
}

/** Packets the clamp rule's counter saw. */
async function clampCount(tb: Testbed): Promise<number> {
  const r = await tb.exec('proxy', ['nft', '-j', 'list', 'table', 'inet', MSS_TABLE]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[] };
  return j.nftables.flatMap((e) => e.rule?.expr ?? []).reduce((n, x) => n + (x.counter?.packets ?? 0), 0);
}

/** rb/tb of the proxy's established TCP sockets on a local port: MPTCP subflows show as TCP sockets in ss. */
async function subflowMemory(tb: Testbed, port: number): Promise<{ rb: number; tb: number }[]> {
  const r = await tb.exec('proxy', ['ss', '-Htnm', 'state', 'established', `( sport = :${port} )`]);
  assert.equal(r.code, 0, r.stderr);
  return [...r.stdout.matchAll(/skmem:\([^)]*\brb(\d+),[^)]*\btb(\d+)/g)].map((m) => ({ rb: Number(m[1]), tb: Number(m[2]) }));
}

async function tcpMemMax(tb: Testbed): Promise<{ rcv: number; snd: number }> {
  const r = await tb.exec('proxy', ['sysctl', '-n', 'net.ipv4.tcp_rmem', 'net.ipv4.tcp_wmem']);
  const [rmem, wmem] = r.stdout.trim().split('\n').map((l) => Number(l.trim().split(/\s+/)[2]));
  return { rcv: rmem!, snd: wmem! };
}

function writeConfig(tb: Testbed, name: string, tuning: unknown): string {
  const file = path.join(tb.tmpDir, `${name}.json`);
  // JSON is YAML.
  fs.writeFileSync(file, JSON.stringify({ tuning }));
  return file;
}

async function startProxy(tb: Testbed, config: string): Promise<ProxyHandle> {
  return tb.startProxy(['--config', config, '--http', `${tb.addr.proxy1}:${PORT}`, '--metrics', ADMIN, '--allow-client', tb.cidr, '--log-format', 'json']);
}

/** Start a download through the CONNECT tunnel; while it runs, poll /connections until pred holds. */
async function downloadWatching<T>(tb: Testbed, server: LegacyServer, size: number, seed: number, pred: (c: StatusConnection[]) => T | null): Promise<{ r: CurlResult; seen: T | null }> {
  const dl = curl(tb, { url: server.url(`/bytes/${size}?seed=${seed}`), proxy: { kind: 'connect', host: tb.addr.proxy1, port: PORT }, timeoutMs: 120_000 });
  let seen: T | null = null;
  let done = false;
  void dl.finally(() => (done = true));
  while (!done && seen === null) {
    await sleep(250);
    seen = pred(await connections(tb));
  }
  return { r: await dl, seen };
}

describe('tuning e2e: MSS clamp and buffers over 2 × 50 Mbit/s', { timeout: 300_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 50 });
  let server: LegacyServer;

  before(async () => {
    server = await startLegacyServer(tb());
  });

  test('(a) path 2 at MTU 1000: its subflow has MSS ≤ 960 at the proxy, data intact, clamp table removed on SIGTERM and by cleanup', async (t) => {
    const { ifaces: i, addr: a } = tb();
    await tb().exec('client', ['ip', 'link', 'set', i.client2, 'mtu', '1000']);
    await tb().exec('proxy', ['ip', 'link', 'set', i.proxy2, 'mtu', '1000']);
    try {
      const cfg = writeConfig(tb(), 'mss', { mssClamp: true, mssInterfaces: [i.proxy1, i.proxy2] });
      const px = await startProxy(tb(), cfg);
      try {
        assert.ok(await tableExists(tb()), 'clamp table installed at start');
        const size = 20_000_000;
        const { r, seen } = await downloadWatching(tb(), server, size, 11, (cs) => {
          const subs = cs.flatMap((c) => c.subflows);
          const p2 = subs.find((s) => s.remote.startsWith(`${a.client2}:`) && s.mss !== null);
          const p1 = subs.find((s) => s.remote.startsWith(`${a.client1}:`) && s.mss !== null);
          return p1 && p2 ? { p1: p1.mss!, p2: p2.mss! } : null;
        });
        assert.equal(r.exitCode, 0, r.stderr);
        assert.equal(r.sha256, patternSha256(11, size));
        assert.ok(seen, 'never saw both subflows with an MSS in /connections');
        t.diagnostic(`MSS at the proxy: path1 ${seen.p1}, path2 ${seen.p2}; ${r.mbitPerSec.toFixed(1)} Mbit/s`);
        assert.ok(seen.p2 <= 960, `path2 MSS ${seen.p2} > 960`);
        assert.ok(seen.p1 > 960, `path1 MSS ${seen.p1} should be full size`);
        assert.ok((await clampCount(tb())) >= 2, 'the clamp rule saw the SYN/ACKs of both subflows');
      } finally {
        const exit = await px.stop();
        assert.equal(exit.code, 0, px.stderr.slice(-2000));
      }
      assert.equal(await tableExists(tb()), false, 'clamp table left after SIGTERM');

      // SIGKILL leaves it; the cleanup command removes it.
      const px2 = await startProxy(tb(), cfg);
      px2.proc.kill('SIGKILL');
      await px2.exited;
      assert.ok(await tableExists(tb()), 'SIGKILL cannot remove it');
      const c = await tb().exec('proxy', [process.execPath, CLI_ENTRY, 'cleanup']);
      assert.equal(c.code, 0, c.stderr);
      assert.match(c.stdout, new RegExp(`nft table inet ${MSS_TABLE}`));
      assert.equal(await tableExists(tb()), false);
    } finally {
      await tb().exec('client', ['ip', 'link', 'set', i.client2, 'mtu', '1500']);
      await tb().exec('proxy', ['ip', 'link', 'set', i.proxy2, 'mtu', '1500']);
    }
  });

  test('(b) fixed 0.18 MB vs auto: sizes applied as configured; throughputs reported', async (t) => {
    const size = 30_000_000;
    const rates: Record<string, number[]> = { fixed: [], auto: [] };
    for (const mode of ['fixed', 'auto'] as const) {
      const cfg = writeConfig(tb(), `buf-${mode}`, { mssClamp: false, buffers: mode === 'fixed' ? { mode, max: 180_000 } : { mode } });
      const px = await startProxy(tb(), cfg);
      try {
        for (let run = 0; run < 2; run++) {
          const { r, seen } = await downloadWatching(tb(), server, size, 20 + run, (cs) => {
            const c = cs.find((x) => x.subflows.length >= 2 && x.buffers && (mode === 'fixed' || x.buffers.needBytes !== null));
            return c ? { buffers: c.buffers!, subflows: c.subflows } : null;
          });
          assert.equal(r.exitCode, 0, r.stderr);
          assert.equal(r.sha256, patternSha256(20 + run, size));
          rates[mode]!.push(r.mbitPerSec);
          assert.ok(seen, `no tuned connection with 2 subflows seen in /connections (${mode})`);
          const b = seen.buffers;
          t.diagnostic(`${mode} run ${run + 1}: ${r.mbitPerSec.toFixed(1)} Mbit/s; buffers ${JSON.stringify(b)}`);
          if (mode === 'fixed') {
            assert.deepEqual([b.rcvBytes, b.sndBytes, b.rcvLocked, b.sndLocked], [180_000, 180_000, true, true]);
          } else {
            // A buffer is locked only beyond what autotuning could reach (tcp_rmem/tcp_wmem max), and within bounds.
            const sysMax = await tcpMemMax(tb());
            assert.ok(b.needBytes !== null && b.needBytes > 0, JSON.stringify(b));
            for (const [dir, locked, bytes] of [['rcv', b.rcvLocked, b.rcvBytes], ['snd', b.sndLocked, b.sndBytes]] as const) {
              const want = Math.min(32 << 20, Math.max(1 << 20, 2 * b.needBytes!));
              // Once locked a buffer only grows (by ≥ 25 %), so the latest need may sit below it.
              if (locked) assert.ok(bytes !== null && bytes > sysMax[dir] && bytes <= 32 << 20, `${dir} locked without need: ${JSON.stringify(b)} max ${sysMax[dir]}`);
              else assert.ok(want <= sysMax[dir], `${dir} left to autotuning although ${want} > ${sysMax[dir]}: ${JSON.stringify(b)}`);
            }
          }
        }
        if (mode === 'fixed') {
          // Independent of the proxy's own report: the kernel's view of the proxy's subflow sockets.
          const dl = curl(tb(), { url: server.url(`/bytes/${size}?seed=30`), proxy: { kind: 'connect', host: tb().addr.proxy1, port: PORT } });
          let mem: { rb: number; tb: number }[] = [];
          for (let k = 0; k < 20 && mem.length < 2; k++) {
            await sleep(250);
            mem = await subflowMemory(tb(), PORT);
          }
          assert.equal((await dl).exitCode, 0);
          t.diagnostic(`ss on the proxy, subflows of :${PORT}: ${JSON.stringify(mem)}`);
          assert.ok(mem.length >= 2, `expected both subflows in ss, got ${JSON.stringify(mem)}`);
          for (const m of mem) assert.deepEqual(m, { rb: 180_000, tb: 180_000 });
        }
      } finally {
        await px.stop();
      }
    }
    const best = (m: string): number => Math.max(...rates[m]!);
    t.diagnostic(`throughput, best of 2: fixed 0.18 MB ${best('fixed').toFixed(1)} Mbit/s, auto ${best('auto').toFixed(1)} Mbit/s`);
    assert.ok(best('auto') >= 0.9 * best('fixed'), `auto (${best('auto').toFixed(1)}) worse than fixed 0.18 MB (${best('fixed').toFixed(1)})`);
  });
});

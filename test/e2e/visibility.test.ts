/**
 * Subflow visibility end to end, in the two-path testbed: /connections lists both subflows of a
 * download while it runs, `status` prints them, and afterwards the Prometheus metrics count
 * subflows on both client-facing interfaces and per-path bytes that match each interface's own
 * counters. The same holds with two worker processes sharing the ports (metrics merged, and
 * /connections with each connection's buffer status from its worker).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { ConnectionStatus } from '../../src/admin/server';
import { curl } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternSha256 } from '../../testkit/pattern';
import { CLI_ENTRY, useTestbed, type ProxyHandle, type Testbed } from '../../testkit/testbed';

const HTTP_PORT = 3128;
const METRICS = '127.0.0.1:9464';
const BYTES = 30_000_000;

/** One metric sample's value, or 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((w) => line.includes(w))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** pid and every descendant of it that runs the CLI (pid namespaces are shared with the host). */
async function proxyProcesses(pid: number | undefined): Promise<number[]> {
  const found: number[] = [];
  const queue = pid === undefined ? [] : [pid];
  while (queue.length) {
    const p = queue.shift() as number;
    // A process that exits while we walk has no /proc entry: it is simply not one of ours.
    const cmdline = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(CLI_ENTRY)) found.push(p);
    const children = await readFile(`/proc/${p}/task/${p}/children`, 'utf8').catch(() => '');
    queue.push(...children.split(' ').filter(Boolean).map(Number));
  }
  return found;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

async function fetchInProxy(tb: Testbed, path: string): Promise<string> {
  const r = await tb.exec('proxy', ['curl', '-sS', '--noproxy', '*', `http://${METRICS}${path}`]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

for (const workers of [1, 2]) {
  describe(`visibility: registry, /connections, status and metrics (workers=${workers})`, { timeout: 180_000 }, () => {
    const tb = useTestbed({ before, after }, { shapeMbit: 50 });
    let server: LegacyServer;
    let px: ProxyHandle;

    before(async () => {
      server = await startLegacyServer(tb());
      px = await tb().startProxy(['--http', `${tb().addr.proxy1}:${HTTP_PORT}`, '--allow-client', tb().cidr, '--log-format', 'json', '--metrics', METRICS, '--workers', String(workers)]);
    });
    // Only a cleanup: useTestbed's after hook (registered first) has deleted the namespaces by now.
    after(() => px?.stop());

    test('a download shows two subflows live, then metrics match the interfaces', async () => {
      const before = await Promise.all([tb().counters('proxy', tb().ifaces.proxy1), tb().counters('proxy', tb().ifaces.proxy2)]);
      const download = curl(tb(), { url: server.url(`/bytes/${BYTES}?seed=7`), proxy: { kind: 'http', host: tb().addr.proxy1, port: HTTP_PORT }, timeoutMs: 60_000 });

      // While it runs: the live status lists the connection with both subflows on both paths.
      let live: ConnectionStatus | undefined;
      for (let i = 0; i < 60 && !(live && live.subflows.length >= 2); i++) {
        await new Promise((r) => setTimeout(r, 250));
        const body = JSON.parse(await fetchInProxy(tb(), '/connections')) as { connections: ConnectionStatus[] };
        live = body.connections.find((c) => c.mptcp);
      }
      assert.ok(live, 'the MPTCP connection is listed');
      assert.equal(live.subflows.length, 2, JSON.stringify(live));
      assert.deepEqual(new Set(live.subflows.map((s) => s.interface)), new Set([tb().ifaces.proxy1, tb().ifaces.proxy2]));
      assert.deepEqual(live.subflows.map((s) => s.kind).sort(), ['initial', 'join']);
      // The buffer tuner's view of it, from the worker that owns it when there are several.
      assert.ok(live.buffers, `buffers shown: ${JSON.stringify(live)}`);
      assert.equal(live.buffers.mode, 'auto');
      assert.ok((live.buffers.rcvBytes ?? 0) > 0 && (live.buffers.sndBytes ?? 0) > 0, JSON.stringify(live.buffers));
      const table = await tb().exec('proxy', ['node', CLI_ENTRY, 'status', '--metrics', METRICS]);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /initial .*\n.*join /, table.stdout);

      const r = await download;
      assert.equal(r.exitCode, 0, r.errorMessage);
      assert.equal(r.sha256, patternSha256(7, BYTES));
      await px.waitForLog((l) => l.message === 'connection' && l.mptcp === true && (l.bytesOut as number) > BYTES);

      const after = await Promise.all([tb().counters('proxy', tb().ifaces.proxy1), tb().counters('proxy', tb().ifaces.proxy2)]);
      const metrics = await fetchInProxy(tb(), '/metrics');
      for (const [i, dev] of [tb().ifaces.proxy1, tb().ifaces.proxy2].entries()) {
        assert.ok(sample(metrics, 'mptcp_proxy_subflows_total', { interface: dev }) >= 1, `subflows on ${dev}`);
        const counted = sample(metrics, 'mptcp_proxy_path_bytes_total', { interface: dev, direction: 'tx' });
        const wire = after[i]!.txBytes - before[i]!.txBytes;
        // The interface counts headers too (~3-4% at this MSS); payload must be within 10%.
        assert.ok(Math.abs(counted - wire) / wire < 0.1, `${dev}: metrics ${counted} vs interface ${wire}`);
      }
      assert.ok(sample(metrics, 'mptcp_proxy_conversion_seconds_count', {}) >= 1, 'conversion histogram observed');
      assert.ok(sample(metrics, 'mptcp_proxy_connections_total', { mptcp: 'true', result: 'ok' }) >= 1);
      assert.equal(sample(metrics, 'mptcp_proxy_subflows_active', {}), 0, 'no subflow left active');
    });

    // Last, while the namespaces still exist (after hooks run once they are gone).
    test('SIGTERM stops the proxy cleanly and no worker outlives it', async () => {
      // The proxy's own processes only: other suites may run proxies on this host at the same time.
      const ours = await proxyProcesses(px.proc.pid);
      assert.ok(ours.length >= workers, `the supervisor and its workers are found: ${ours}`);
      const exit = await px.stop();
      assert.equal(exit.code, 0, 'proxy exits cleanly on SIGTERM');
      const left = ours.filter(isAlive);
      assert.deepEqual(left, [], 'no worker process outlives the proxy');
    });
  });
}

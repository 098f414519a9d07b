/**
 * Registry event latency (issue 4): how long after the kernel reports a subflow does the
 * registry emit subflow-up? Two figures per connection, over N MPTCP connections on loopback:
 *  - netlink: the kernel view's reader thread received the event → registry emitted subflow-up;
 *  - end to end: the client's connect() completed → registry emitted subflow-up.
 * Run: node dist/bench/registry-latency.js [--count N]   (prints JSON)
 */
import net from 'node:net';
import { parseArgs } from 'node:util';
import { silentLogger } from '../src/log/logger';
import { DEFAULTS } from '../src/config/schema';
import { ProxyMetrics } from '../src/metrics/metrics';
import { SubflowPlane } from '../src/subflow-plane';
import { closeFd, connectMptcp, createListenSocket, socketName } from '../src/sys/socket';

export interface RegistryLatencyResult {
  connections: number;
  netlinkToRegistryMs: { p50: number; p99: number; max: number };
  connectToRegistryMs: { p50: number; p99: number; max: number };
}

function quantiles(xs: number[]): { p50: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  return { p50: q(0.5), p99: q(0.99), max: s[s.length - 1] ?? NaN };
}

export async function run(opts: { count?: number } = {}): Promise<RegistryLatencyResult> {
  const count = opts.count ?? 200;
  const config = { ...DEFAULTS, sniffer: { interfaces: [] }, steering: { policies: [], uplinks: [] } };
  const plane = new SubflowPlane(config as typeof DEFAULTS, silentLogger(), new ProxyMetrics(config.instance));
  await plane.start();
  const ls = createListenSocket('127.0.0.1', 0, { mptcp: true, backlog: 1024, options: {} });
  const port = socketName(ls.fd).port;
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen({ fd: ls.fd }, r));

  const netlink: number[] = [];
  const endToEnd: number[] = [];
  const receivedAt = new Map<string, bigint>();
  // prepend: the registry's own listener emits subflow-up from this same event.
  plane.kernel.prependListener('connection-established', (e) => {
    if (e.serverSide) receivedAt.set(`${e.remote.port}`, e.receivedAt);
  });
  const upAt = new Map<string, bigint>();
  plane.registry.on('subflow-up', (s) => {
    const now = process.hrtime.bigint();
    upAt.set(`${s.remote.port}`, now);
    const r = receivedAt.get(`${s.remote.port}`);
    if (r !== undefined) netlink.push(Number(now - r) / 1e6);
  });
  try {
    for (let i = 0; i < count; i++) {
      const { fd } = await connectMptcp('127.0.0.1', port, 2_000);
      const connected = process.hrtime.bigint();
      const local = socketName(fd).port;
      const deadline = Date.now() + 1_000;
      while (!upAt.has(`${local}`) && Date.now() < deadline) await new Promise((r) => setImmediate(r));
      const up = upAt.get(`${local}`);
      // connect() resolves on a worker thread; the event may even beat it to the main thread.
      if (up !== undefined) endToEnd.push(Math.max(0, Number(up - connected) / 1e6));
      closeFd(fd);
    }
  } finally {
    server.close();
    await plane.stop();
  }
  return { connections: count, netlinkToRegistryMs: quantiles(netlink), connectToRegistryMs: quantiles(endToEnd) };
}

if (require.main === module) {
  const { values } = parseArgs({ options: { count: { type: 'string' } } });
  run({ count: values.count ? Number(values.count) : undefined }).then(
    (r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`),
    (e) => {
      process.stderr.write(`registry-latency: ${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}

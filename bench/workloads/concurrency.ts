/**
 * Many idle tunnels at once: a client (under mptcpize) opens COUNT tunnels through a freshly
 * started subject to an echo server, checks each with one echo, and holds them while the bench
 * reads the subject's resident memory. Per-connection memory = (RSS held − RSS idle) / COUNT.
 * The count is capped by the open-file hard limit: the proxy holds two descriptors per tunnel.
 */
import path from 'node:path';
import { REPO_ROOT } from '../../testkit/testbed';
import { measure, type Measured } from '../lib/measure';
import { subject, type Servers, type Subject } from '../lib/peers';
import { Daemon, NOFILE, treeRssBytes, withNofile } from '../lib/proc';
import type { Row } from '../lib/results';
import { startEcho } from './latency';
import { sleep } from '../../testkit/sleep';

const TOOL = path.join(REPO_ROOT, 'dist/bench/tools/latency-client.js');

export const CONCURRENCY_SUBJECTS: readonly Subject[] = ['ours-connect-splice', 'ours-connect-fast', 'ours-connect-stream', 'squid-connect', 'haproxy', 'node-pipe'].map(subject);

/** Tunnels one process can carry under this machine's descriptor limit (two per tunnel, plus slack). */
export const maxTunnels = (): number => Math.floor((NOFILE - 200) / 2);

export async function concurrency(servers: Servers, o: { count: number; repeats: number; subjects?: readonly Subject[] }, log: (s: string) => void): Promise<Row[]> {
  const count = Math.min(o.count, maxTunnels());
  const rows: Row[] = [];
  const echo = await startEcho();
  try {
    for (const s of o.subjects ?? CONCURRENCY_SUBJECTS) {
      const spec = {
        workload: 'idle-10k',
        unit: 'kB/conn',
        higherIsBetter: false,
        repeats: o.repeats,
        describe: (b: Measured) => `${b.extra.open} open, ${b.extra.errors} errors, RSS ${b.extra.rssMB?.toFixed(1)} MB, ${b.value.toFixed(1)} kB/conn, ${b.extra.openSeconds?.toFixed(1)} s to open`,
      };
      rows.push(await measure(spec, s, () => once(servers, s, echo.port, count), log));
    }
  } finally {
    await echo.daemon.stop();
  }
  return rows;
}

async function once(servers: Servers, s: Subject, echoPort: number, count: number): Promise<Measured> {
  // A fresh instance each time, so the idle figure is a cold process and nothing is left over.
  await servers.stop(s.server);
  await servers.stopExtra();
  const srv = s.id === 'haproxy' ? await servers.haproxyTo(echoPort) : await servers.get(s.server);
  const port = srv.ports[s.listener]!;
  await sleep(300);
  const idle = treeRssBytes(srv.daemon.pid);
  const client = new Daemon('hold', withNofile(['mptcpize', 'run', process.execPath, TOOL, 'hold', s.mode, String(port), String(echoPort), String(count)]));
  try {
    const deadline = Date.now() + 180_000;
    let line: RegExpExecArray | null;
    while (!(line = /^\{.*\}$/m.exec(client.output()))) {
      if (client.exited || Date.now() > deadline) throw new Error(`tunnel client ended without a result: ${client.output().slice(-300)}`);
      await sleep(50);
    }
    const t = JSON.parse(line[0]) as { open: number; errors: number; firstError: string | null; ms: number };
    await sleep(500);
    const held = treeRssBytes(srv.daemon.pid);
    const errors = t.errors + (count - t.open - t.errors);
    return {
      value: t.open > 0 ? (held - idle) / t.open / 1024 : Number.NaN,
      extra: { open: t.open, errors, rssMB: held / 2 ** 20, idleMB: idle / 2 ** 20, openSeconds: t.ms / 1000, count },
    };
  } finally {
    client.proc.stdin?.end();
    await client.stop(3000);
    await servers.stop(s.server);
    await servers.stopExtra();
  }
}

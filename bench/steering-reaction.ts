/**
 * Steering reaction time (issue 5 §3): from a subflow coming up to its policy being in the kernel,
 * p50/p99 over many MPTCP connections on the two-path testbed, through the real CLI.
 *
 * Each connection is a small curl download (under mptcpize) through the proxy; both of its
 * subflows match a rate policy (the initial one on path 1, the join on path 2). The proxy logs
 * `subflow steered` with `reactionMs` (registry event → nftables/tc change done); the figure is
 * over every such line. Connections go one after another with a short pause (the reaction to a
 * lone subflow), or `concurrency` at a time (bursts).
 *
 *   node dist/bench/steering-reaction.js [--connections 50] [--concurrency 1]   → one JSON object
 */
import { parseArgs } from 'node:util';
import { curl } from '../testkit/clients';
import { startLegacyServer } from '../testkit/legacy-server';
import { withTestbed } from '../testkit/testbed';
import { startSteeredProxy, writeConfig } from '../testkit/steered-proxy';
import { percentile } from './lib/results';
import { sleep } from '../testkit/sleep';

export interface ReactionOptions {
  connections?: number;
  concurrency?: number;
  /** Pause between connections (sequential mode), ms. */
  gapMs?: number;
}

export interface ReactionResult {
  name: 'steering-reaction';
  unit: 'ms';
  connections: number;
  concurrency: number;
  samples: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
  /** The first subflow of a freshly started proxy (cold code paths), reported apart. */
  first: number | null;
  /** Issue 5 §3: p99 under 50 ms. */
  target: { op: '<'; threshold: 50; met: boolean | null };
  failedConnections: number;
}

export async function run(opts: ReactionOptions = {}): Promise<ReactionResult> {
  const connections = opts.connections ?? 50;
  const concurrency = Math.max(1, opts.concurrency ?? 1);
  const gapMs = opts.gapMs ?? 100;
  return withTestbed({}, async (tb) => {
    const srv = await startLegacyServer(tb);
    const cfg = writeConfig(tb, 'reaction.yaml', {
      policies: [
        { name: 'path1', match: { client: tb.addr.path1Subnet }, rate: '20mbit' },
        { name: 'path2', match: { client: tb.addr.path2Subnet }, rate: '20mbit' },
      ],
    });
    const px = await startSteeredProxy(tb, cfg);
    let failed = 0;
    try {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < connections) {
          next++;
          const r = await curl(tb, { url: srv.url('/bytes/65536'), proxy: { kind: 'http', host: tb.addr.proxy1, port: 3128 }, timeoutMs: 15_000 });
          if (r.exitCode !== 0) failed++;
          if (concurrency === 1) await sleep(gapMs);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      // The last joins' lines may trail the last download by a few ms.
      await sleep(300);
    } finally {
      await px.stop();
    }
    const ms = px.logs.filter((l) => l.message === 'subflow steered' && typeof l.reactionMs === 'number').map((l) => l.reactionMs as number);
    const p99 = percentile(ms, 99);
    return {
      name: 'steering-reaction',
      unit: 'ms',
      connections,
      concurrency,
      samples: ms.length,
      p50: percentile(ms, 50),
      p99,
      max: ms.length ? Math.max(...ms) : null,
      first: ms[0] ?? null,
      target: { op: '<', threshold: 50, met: p99 === null ? null : p99 < 50 },
      failedConnections: failed,
    };
  });
}

if (require.main === module) {
  const { values } = parseArgs({ options: { connections: { type: 'string' }, concurrency: { type: 'string' }, gap: { type: 'string' } } });
  run({
    ...(values.connections ? { connections: Number(values.connections) } : {}),
    ...(values.concurrency ? { concurrency: Number(values.concurrency) } : {}),
    ...(values.gap ? { gapMs: Number(values.gap) } : {}),
  }).then(
    (r) => process.stdout.write(JSON.stringify(r, null, 2) + '\n'),
    (e: unknown) => {
      process.stderr.write(`steering-reaction: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}

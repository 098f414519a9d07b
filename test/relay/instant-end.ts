/**
 * Child of splice.test.ts: `n` relays whose client and upstream have both sent FIN before the
 * relay starts, so native ends each in its first pass. Prints what finished as one JSON line and
 * exits, even when relays never report (the process would otherwise stay up on their sockets).
 */
import fs from 'node:fs';
import { loadSpliceRelay } from '../../src/relay/splice-relay';
import type { RelayResult } from '../../src/core/relay';
import { closeOutcome, connect, listen, startProxy } from '../../testkit/splice-harness';

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 200);
  const engine = loadSpliceRelay();
  if (!engine) throw new Error('splice addon not built');
  const fdsBefore = fs.readdirSync('/proc/self/fd').length;
  const server = await listen('tcp', (s) => {
    s.end();
    void closeOutcome(s);
  });
  const results: RelayResult[] = [];
  const proxy = await startProxy({
    clientKind: 'mptcp',
    upstreamKind: 'tcp',
    upstreamPort: server.port,
    beforeRelay: () => new Promise((res) => setTimeout(res, 30)), // both FINs are in by now
    relay: async (c, u, o) => {
      const r = await engine.relay(c, u, o);
      results.push(r);
      return r;
    },
  });
  // In small waves, so the relay thread is often idle when a pair arrives.
  for (let wave = 0; wave < n; wave += 10) {
    await Promise.all(
      Array.from({ length: Math.min(10, n - wave) }, async () => {
        const c = await connect('mptcp', proxy.port);
        c.end();
        await closeOutcome(c);
      }),
    );
  }
  for (let i = 0; i < 100 && results.length < n; i++) await new Promise((res) => setTimeout(res, 20));
  const finished = results.length;
  if (finished === n) {
    await proxy.close();
    await server.close();
  }
  await new Promise((res) => setTimeout(res, 100));
  const fdsAfter = fs.readdirSync('/proc/self/fd').length;
  process.stdout.write(`${JSON.stringify({ n, finished, results, active: engine.active(), fdsBefore, fdsAfter })}\n`);
  process.exit(0);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});

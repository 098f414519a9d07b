/**
 * `mptcp-proxy cleanup`: remove by hand whatever a proxy that could not clean up (SIGKILL, power
 * loss) left in this network namespace. A proxy still running here keeps its state (its journal
 * says it is alive).
 */
import { KernelState } from '../kstate/kernel-state';
import { createLogger } from '../log/logger';

export const CLEANUP_HELP = 'cleanup                  remove kernel state left by a crashed proxy (nft tables, qdiscs, IFBs, ip rules and routes, MPTCP endpoints and limits)';

export async function runCleanupCommand(argv: string[]): Promise<number> {
  if (argv.length > 0 && argv[0] !== '--quiet') {
    process.stderr.write('usage: mptcp-proxy cleanup [--quiet]\n');
    return 2;
  }
  const log = createLogger({ level: 'warn', format: 'auto' });
  // What the journals of gone runs in this namespace name, and what owned names find, removed
  // in order; the original MPTCP limits restored.
  const removed = await new KernelState(log).adopt();
  if (argv[0] !== '--quiet') process.stdout.write(removed.length ? `removed:\n${removed.map((r) => `  ${r}`).join('\n')}\n` : 'nothing to remove\n');
  return 0;
}

/**
 * `mptcp-proxy cleanup`: remove by hand whatever a proxy that could not clean up (SIGKILL, power
 * loss) left in this network namespace. Safe to run any time no proxy is running here.
 */
import { createLogger } from '../log/logger';
import { cleanupOwnedState } from './cleanup';

export const CLEANUP_HELP = 'cleanup                  remove kernel state left by a crashed proxy (nft tables, qdiscs, IFBs, ip rules and routes, MPTCP endpoints)';

export async function runCleanupCommand(argv: string[]): Promise<number> {
  if (argv.length > 0 && argv[0] !== '--quiet') {
    process.stderr.write('usage: mptcp-proxy cleanup [--quiet]\n');
    return 2;
  }
  const log = createLogger({ level: 'warn', format: 'auto' });
  const removed = await cleanupOwnedState(log);
  if (argv[0] !== '--quiet') process.stdout.write(removed.length ? `removed:\n${removed.map((r) => `  ${r}`).join('\n')}\n` : 'nothing to remove\n');
  return 0;
}

/**
 * "Mark these subflows backup" (MP_PRIO), behind one interface so the steering modes do not
 * care how the kernel is asked. Today's marker is per endpoint: the in-kernel path manager
 * changes backup only per local address, for every subflow (of every connection) from it, so an
 * address is marked only when every established subflow from it is wanted backup. A marker on
 * the userspace path manager (MPTCP_PM_CMD_SET_FLAGS with token and both addresses) can mark
 * each subflow alone and plugs in here. What a marker leaves unmarked the engine holds back
 * with the standby HTB cap instead.
 */
import { unmapIPv6 } from '../core/address';
import type { Subflow } from '../registry/registry';

export interface BackupMarker {
  /**
   * Make the backup flags what `want` (subflow keys) says, among `established` (every
   * established subflow the proxy has). Returns the keys of the subflows now marked backup.
   */
  apply(want: ReadonlySet<string>, established: readonly Subflow[]): Promise<ReadonlySet<string>>;
}

/** Local addresses whose every established subflow is wanted backup (pure). */
export function wholeAddresses(want: ReadonlySet<string>, established: readonly Subflow[]): Set<string> {
  const byAddr = new Map<string, boolean>();
  for (const s of established) {
    const a = unmapIPv6(s.local.host);
    byAddr.set(a, (byAddr.get(a) ?? true) && want.has(s.key));
  }
  return new Set([...byAddr].filter(([, all]) => all).map(([a]) => a));
}

/** The per-endpoint marker: `setAddresses` owns backup endpoints for exactly those addresses and returns those it could mark. */
export class EndpointBackup implements BackupMarker {
  constructor(private readonly setAddresses: (addrs: ReadonlySet<string>) => Promise<ReadonlySet<string>>) {}

  async apply(want: ReadonlySet<string>, established: readonly Subflow[]): Promise<ReadonlySet<string>> {
    const marked = await this.setAddresses(wholeAddresses(want, established));
    return new Set(established.filter((s) => marked.has(unmapIPv6(s.local.host))).map((s) => s.key));
  }
}

/**
 * The userspace path manager's marker: MP_PRIO per subflow (`set`, e.g. PathManager.setBackup),
 * so every wanted subflow is marked and every other one it marked before is unmarked. A subflow
 * the path manager refuses stays unmarked (the engine caps it instead), with a log line.
 */
export class SubflowBackup implements BackupMarker {
  private marked = new Set<string>();

  constructor(
    private readonly set: (s: Subflow, on: boolean) => void,
    private readonly onError: (s: Subflow, e: Error) => void,
  ) {}

  async apply(want: ReadonlySet<string>, established: readonly Subflow[]): Promise<ReadonlySet<string>> {
    const next = new Set<string>();
    for (const s of established) {
      const on = want.has(s.key);
      if (on === this.marked.has(s.key)) {
        if (on) next.add(s.key);
        continue;
      }
      try {
        this.set(s, on);
        if (on) next.add(s.key);
      } catch (e) {
        this.onError(s, e as Error);
        if (!on) next.add(s.key);
      }
    }
    this.marked = next;
    return new Set([...next].filter((k) => want.has(k)));
  }
}

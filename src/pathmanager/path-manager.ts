/**
 * Who answers the kernel's MPTCP path-manager events for the proxy's connections, behind one
 * interface: `kernel` (the in-kernel PM: endpoints and limits, nothing per connection) or
 * `userspace` (this process: net.mptcp.pm_type=1 in its namespace, ADD_ADDR per connection,
 * MP_PRIO per subflow, lost paths healed). The callbacks follow mptcpd's plugin operations.
 */
import type { Config } from '../config/schema';
import { CodedError } from '../core/errors';
import type { SockEnd } from '../mptcp/netlink-codec';

export type PathManagerMode = Config['paths']['pathManager'];

export class PathManagerError extends CodedError<'MPX_PM_UNSUPPORTED' | 'MPX_PM_START'> {}

/** One subflow by its two ends (ports included): what MP_PRIO and SUBFLOW_DESTROY match. */
export interface SubflowEnds {
  local: SockEnd;
  remote: SockEnd;
}

/** mptcpd-style operations: what a path manager does when the kernel reports a change. */
export interface PmCallbacks {
  /** A server-side connection of the proxy is established (its initial subflow with it). */
  newConnection(token: number, initial: SubflowEnds): void;
  newSubflow(token: number, subflow: SubflowEnds): void;
  subflowClosed(token: number, subflow: SubflowEnds): void;
  connectionClosed(token: number): void;
}

export interface PathManager {
  readonly mode: PathManagerMode;
  /** Before any listener: joins of the first connections must find it answering. */
  start(): Promise<void>;
  /** A reloaded config of the same mode (another mode is a new PathManager). */
  reload(next: Pick<Config, 'listeners' | 'steering' | 'paths'>): Promise<void>;
  stop(): Promise<void>;
  /**
   * MP_PRIO on one subflow of one connection: `on` makes it a backup path (the peer and this
   * side's scheduler send on it only when no other subflow can). Userspace mode only; the kernel
   * PM has backup per endpoint alone, so there this throws PathManagerError MPX_PM_UNSUPPORTED.
   */
  setBackup(token: number, subflow: SubflowEnds, on: boolean): void;
}

/** The kernel PM: nothing to do per connection; backup stays steering's per-endpoint flag. */
export class KernelPathManager implements PathManager {
  readonly mode = 'kernel' as const;
  async start(): Promise<void> {}
  async reload(): Promise<void> {}
  async stop(): Promise<void> {}
  setBackup(): void {
    throw new PathManagerError('MPX_PM_UNSUPPORTED', 'per-subflow backup needs paths.pathManager: userspace (the in-kernel PM sets backup per endpoint only)');
  }
}

/** The ports the proxy's own MPTCP connections arrive on: its listeners' ports and transparent ports. */
export function ownPorts(listeners: Config['listeners']): Set<number> {
  return new Set(listeners.filter((l) => l.mptcp).flatMap((l) => [l.port, ...(l.ports ?? [])]));
}

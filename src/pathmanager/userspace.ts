/**
 * The userspace path manager: with net.mptcp.pm_type=1 in the proxy's namespace the kernel
 * announces nothing and creates no subflow on its own; it reports each connection's events on
 * the `mptcp_pm` multicast group (and accepts joins only while someone listens there: the kernel
 * view) and takes commands with the connection's token. This process answers for its own
 * connections (server side, on a listener's port):
 *
 * - new connection: ADD_ADDR of the addresses the policy allows: paths.announce, or by default what
 *   the in-kernel PM would have announced, the namespace's `signal` endpoints (read at start and reload);
 * - per-subflow backup: MP_PRIO on one subflow (setBackup), where the kernel PM has it per endpoint;
 *   steering's `backup: true` policies (per proxy address) become MP_PRIO on each new subflow there
 *   (the kernel's endpoint backup flag does not reach userspace-managed connections);
 * - healing: a client address whose last subflow closed is "lost". Measured on Linux 6.18
 *   (NOTES.md): the client's in-kernel PM never re-creates it, and a Linux client answers a
 *   server's SUBFLOW_CREATE toward it with a RST (it has no listener), but it joins an announced
 *   address it has no subflow to, from its fullmesh endpoint, at once. So the addresses announced
 *   on the lost path are removed (RM_ADDR: the client drops any subflow to them it still thinks
 *   alive), then announced again every HEAL_INTERVAL_MS while the address is up here, until a
 *   subflow from the lost client address is established or the connection closes.
 *
 * The pm_type sysctl is owned like all kernel state (src/kstate): restored on stop and, after a
 * crash, by the next start.
 */
import os from 'node:os';
import type { Config } from '../config/schema';
import type { KernelItem, KernelState } from '../kstate/kernel-state';
import type { Logger } from '../log/logger';
import type { KernelView, KernelViewEventMap } from '../mptcp/kernel-view';
import type { PmCommand } from '../mptcp/netlink-codec';
import { PmCommandError, PmCommandSocket } from '../mptcp/pm-commands';
import { listEndpoints } from '../sys/iproute';
import { PM_TYPE_SYSCTL, SysctlError, readSysctl, writeSysctl } from '../sys/sysctl';
import { PathManagerError, ownPorts, type PathManager, type PmCallbacks, type SubflowEnds } from './path-manager';

/** Re-announce period on a lost path: a returning path is rejoined within this plus a round trip. */
export const HEAL_INTERVAL_MS = 500;

/** An address to announce, with its id (1..255: the endpoint's, so every connection uses the same). */
export interface AnnounceAddr {
  id: number;
  address: string;
}

type PmCommander = Pick<PmCommandSocket, 'send' | 'close'>;
type PmConfig = Pick<Config, 'listeners' | 'steering' | 'paths'>;

export interface UserspaceDeps {
  commands?: () => PmCommander;
  /** Addresses on interfaces that are up and running (os.networkInterfaces leaves the others out). */
  upAddresses?: () => Set<string>;
  /** The default announce policy's addresses (when paths.announce is null). */
  signalEndpoints?: () => Promise<AnnounceAddr[]>;
}

interface Conn {
  token: number;
  initialLocal: string;
  live: Map<string, SubflowEnds>;
  /** Client addresses that had a subflow and have none now. */
  lost: Set<string>;
}

const keyOf = (s: SubflowEnds): string => `${s.local.address}:${s.local.port}>${s.remote.address}:${s.remote.port}`;
const family = (a: string): 4 | 6 => (a.includes(':') ? 6 : 4);

function upAddresses(): Set<string> {
  return new Set(Object.values(os.networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address)));
}

/** Steering's `backup: true` policies name one proxy address each (config/steering.ts). */
function backupAddresses(c: Pick<Config, 'steering'>): Set<string> {
  return new Set(c.steering.policies.flatMap((p) => (p.backup && p.match.local ? [p.match.local.replace(/\/(32|128)$/, '')] : [])));
}

async function signalEndpoints(): Promise<AnnounceAddr[]> {
  return (await listEndpoints()).filter((e) => e.flags.includes('signal')).map((e) => ({ id: e.id, address: e.address }));
}

export class UserspacePathManager implements PathManager, PmCallbacks {
  readonly mode = 'userspace' as const;
  private readonly conns = new Map<number, Conn>();
  /** The connections with a lost path: the heal round walks these, not every connection. */
  private readonly healing = new Set<Conn>();
  private ports: Set<number>;
  private backupAddrs: Set<string>;
  private announceConfig: string[] | null;
  private announce: AnnounceAddr[] = [];
  private cmd: PmCommander | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    config: PmConfig,
    private readonly kernel: KernelView,
    private readonly kstate: KernelState,
    private readonly log: Logger,
    private readonly deps: UserspaceDeps = {},
  ) {
    this.ports = ownPorts(config.listeners);
    this.backupAddrs = backupAddresses(config);
    this.announceConfig = config.paths.announce;
  }

  async start(): Promise<void> {
    const original = readSysctl(PM_TYPE_SYSCTL);
    if (original === null) throw new PathManagerError('MPX_PM_START', `paths.pathManager userspace: this kernel has no ${PM_TYPE_SYSCTL} (MPTCP missing or older than 5.19)`);
    // The kernel accepts a join for a userspace-managed connection only while the events group has a listener.
    if (!this.kernel.running) throw new PathManagerError('MPX_PM_START', 'paths.pathManager userspace needs the mptcp_pm netlink events, which are unavailable (see the warning above)');
    try {
      this.cmd = this.deps.commands ? this.deps.commands() : PmCommandSocket.open();
    } catch (e) {
      throw new PathManagerError('MPX_PM_START', `paths.pathManager userspace: ${(e as Error).message}`, { cause: e });
    }
    await this.loadPolicy();
    const item: KernelItem = { kind: 'sysctl', key: PM_TYPE_SYSCTL, original };
    try {
      if (original !== '1' || this.kstate.has(item)) await this.kstate.install(item, async () => writeSysctl(PM_TYPE_SYSCTL, '1'));
    } catch (e) {
      await this.cmd.close();
      this.cmd = null;
      if (!(e instanceof SysctlError)) throw e;
      throw new PathManagerError('MPX_PM_START', `paths.pathManager userspace: ${e.message}; set ${PM_TYPE_SYSCTL}=1 beforehand if /proc/sys is read-only`, { cause: e });
    }
    this.listen('connection-established', (e) => {
      if (e.serverSide && this.ports.has(e.local.port)) this.newConnection(e.token, { local: e.local, remote: e.remote });
    });
    this.listen('connection-closed', (e) => this.connectionClosed(e.token));
    this.listen('subflow-established', (v) => this.newSubflow(v.token, v));
    this.listen('subflow-closed', (v) => this.subflowClosed(v.token, v));
    this.log.info('userspace path manager on', { sysctl: `${PM_TYPE_SYSCTL}=1`, was: original, announce: this.announce.map((a) => `${a.address} (id ${a.id})`) });
  }

  /** (Node's typed EventEmitter cannot check a generic key: the cast is on the call, the handler is typed.) */
  private listen<K extends keyof KernelViewEventMap>(ev: K, fn: (...args: KernelViewEventMap[K]) => void): void {
    this.kernel.on(ev, fn as never);
    this.unsubscribe.push(() => this.kernel.off(ev, fn as never));
  }

  async reload(next: PmConfig): Promise<void> {
    this.ports = ownPorts(next.listeners);
    this.backupAddrs = backupAddresses(next);
    this.announceConfig = next.paths.announce;
    await this.loadPolicy();
  }

  async stop(): Promise<void> {
    for (const u of this.unsubscribe.splice(0)) u();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.conns.clear();
    this.healing.clear();
    await this.cmd?.close();
    this.cmd = null;
    // The sysctl goes back with all kernel state (SubflowPlane.stop), or here when only the mode changes.
    await this.kstate.removeInstalled([{ kind: 'sysctl', key: PM_TYPE_SYSCTL, original: '' }]);
  }

  setBackup(token: number, subflow: SubflowEnds, on: boolean): void {
    if (!this.cmd) throw new PathManagerError('MPX_PM_START', 'userspace path manager not running');
    this.cmd.send({ cmd: 'set-flags', token, local: subflow.local, remote: subflow.remote, backup: on });
  }

  newConnection(token: number, initial: SubflowEnds): void {
    const c: Conn = { token, initialLocal: initial.local.address, live: new Map([[keyOf(initial), initial]]), lost: new Set() };
    this.conns.set(token, c);
    this.applyBackup(c, initial);
    for (const a of this.allowed(c)) this.run(c, { cmd: 'announce', token, local: a });
  }

  newSubflow(token: number, s: SubflowEnds): void {
    const c = this.conns.get(token);
    if (!c) return;
    c.live.set(keyOf(s), { local: s.local, remote: s.remote });
    this.applyBackup(c, s);
    if (!c.lost.delete(s.remote.address)) return;
    if (c.lost.size === 0) this.healing.delete(c);
    this.log.info('path healed', { token: token.toString(16), client: s.remote.address, via: s.local.address });
  }

  subflowClosed(token: number, s: SubflowEnds): void {
    const c = this.conns.get(token);
    // Only subflows seen established count: a refused or failed join is no lost path.
    if (!c || !c.live.delete(keyOf(s))) return;
    const remaining = [...c.live.values()];
    if (remaining.length === 0 || remaining.some((x) => x.remote.address === s.remote.address)) return;
    c.lost.add(s.remote.address);
    this.healing.add(c);
    this.log.info('path lost; healing', { token: token.toString(16), client: s.remote.address });
    // The client may still hold subflows to our addresses that it thinks alive (their RST never
    // reached it): an address it has a subflow to is never joined again, so withdraw those first.
    for (const a of this.allowed(c)) if (!remaining.some((x) => x.local.address === a.address)) this.run(c, { cmd: 'remove', token, locId: a.id });
    this.timer ??= setInterval(() => this.heal(), HEAL_INTERVAL_MS).unref();
  }

  connectionClosed(token: number): void {
    const c = this.conns.get(token);
    if (c) this.healing.delete(c);
    this.conns.delete(token);
  }

  private applyBackup(c: Conn, s: SubflowEnds): void {
    if (!this.backupAddrs.has(s.local.address)) return;
    if (this.run(c, { cmd: 'set-flags', token: c.token, local: s.local, remote: s.remote, backup: true })) {
      this.log.debug('subflow marked backup', { token: c.token.toString(16), local: `${s.local.address}:${s.local.port}`, remote: `${s.remote.address}:${s.remote.port}` });
    }
  }

  /** One round of re-announcements for every connection with a lost path. */
  private heal(): void {
    if (this.healing.size === 0) {
      clearInterval(this.timer!);
      this.timer = null;
      return;
    }
    // An address on an interface that is down would send the client's join SYN into its backoff.
    const up = (this.deps.upAddresses ?? upAddresses)();
    for (const c of this.healing) for (const a of this.allowed(c)) if (up.has(a.address)) this.run(c, { cmd: 'announce', token: c.token, local: a });
  }

  /** The policy: the announce addresses of the connection's family, other than its initial one. */
  private allowed(c: Conn): AnnounceAddr[] {
    return this.announce.filter((a) => a.address !== c.initialLocal && family(a.address) === family(c.initialLocal));
  }

  /** One command; false when the kernel refused it (logged). */
  private run(c: Conn, command: PmCommand): boolean {
    try {
      this.cmd?.send(command);
      return true;
    } catch (e) {
      if (!(e instanceof PmCommandError)) throw e;
      // The connection may have closed between its event and this command.
      this.log.debug('path manager command refused', { token: c.token.toString(16), error: e.message });
      return false;
    }
  }

  private async loadPolicy(): Promise<void> {
    if (this.announceConfig) {
      this.announce = this.announceConfig.map((address, i) => ({ id: i + 1, address }));
      return;
    }
    try {
      this.announce = await (this.deps.signalEndpoints ?? signalEndpoints)();
    } catch (e) {
      this.log.warn('userspace path manager: cannot read the signal endpoints; announcing nothing', { error: (e as Error).message });
      this.announce = [];
    }
  }
}

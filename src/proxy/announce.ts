/**
 * Cluster mode: several instances behind an L4 load balancer that hashes new connections on a
 * shared address (the VIP). A join subflow has its own 5-tuple, so the balancer would hash it to
 * any instance, where it is reset. Each instance therefore sets the C flag
 * (net.mptcp.allow_join_initial_addr_port = 0: "do not join my initial address") and announces
 * its own unicast address with a `signal` endpoint: clients join that address, which reaches
 * this instance directly. Both go in and out through the owner of kernel state (src/kstate): the
 * sysctl's original value and the endpoint are restored/removed on stop, after a crash at the
 * next start, and by `mptcp-proxy cleanup`.
 *
 * Joins to the announced address arrive at this host's own address and the connection's port:
 * a listener bound to the wildcard takes them; one bound to another address gets a twin bound
 * to the announced address (servedListeners).
 */
import net from 'node:net';
import type { Config, ListenerConfig } from '../config/schema';
import { CodedError } from '../core/errors';
import type { KernelItem, KernelState } from '../kstate/kernel-state';
import type { Logger } from '../log/logger';
import { ANNOUNCE_ENDPOINT_ID, buildEndpointAdd, ipBatch, listEndpoints } from '../sys/iproute';
import { C_FLAG_SYSCTL, SysctlError, SysctlErrorCode, readSysctl, writeSysctl } from '../sys/sysctl';
import { localAddresses } from './transparent';

export class ClusterAnnounceError extends CodedError<'MPX_CLUSTER_ANNOUNCE'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MPX_CLUSTER_ANNOUNCE', message, options);
  }
}

/** Does a listener bound to `host` take connections (and joins) to `announce`? */
export function listenerCovers(host: string, announce: string): boolean {
  // A '::' socket is dual-stack (the proxy never sets IPV6_V6ONLY).
  return host === announce || host === '::' || (host === '0.0.0.0' && net.isIPv4(announce));
}

/**
 * The listeners to run: the configured ones, plus for each MPTCP listener that does not cover
 * the announced address a twin on that address and port (same name and protocol, so a
 * connection made to it directly is served and counted like the original's).
 */
export function servedListeners(c: Pick<Config, 'listeners' | 'cluster'>): ListenerConfig[] {
  const announce = c.cluster.announce;
  if (announce === null) return c.listeners;
  const twins = new Map<number, ListenerConfig>();
  for (const l of c.listeners) {
    const covered = c.listeners.some((o) => o.port === l.port && listenerCovers(o.host, announce));
    // One per port: two listeners on one port at different addresses share the twin.
    if (l.mptcp && !covered && !twins.has(l.port)) twins.set(l.port, { ...l, host: announce });
  }
  return [...c.listeners, ...twins.values()];
}

/**
 * Start checks, pure: the announced address must be one of this host's (clients join it here)
 * and not an address a listener is bound to (a client reaching the proxy there uses it as its
 * initial address, which the kernel never announces, and joins would go through the balancer).
 */
export function checkAnnounce(c: Pick<Config, 'listeners' | 'cluster'>, local: ReadonlySet<string>): void {
  const announce = c.cluster.announce;
  if (announce === null) return;
  if (!local.has(announce)) throw new ClusterAnnounceError(`cluster.announce ${announce} is not an address of this host (its network namespace): add it to an interface, or announce one that is`);
  const vip = c.listeners.find((l) => l.host === announce);
  if (vip) throw new ClusterAnnounceError(`cluster.announce ${announce} is listener ${vip.name}'s own address: announce this instance's unicast address, not the one clients first connect to`);
}

const SYSCTL_ITEM = (original: string): KernelItem => ({ kind: 'sysctl', key: C_FLAG_SYSCTL, original });
const endpointItem = (address: string): KernelItem => ({ kind: 'endpoint', id: ANNOUNCE_ENDPOINT_ID, address });

/** Kernel state of cluster mode. One per network namespace (the subflow plane's owner). */
export class ClusterAnnounce {
  private installed: string | null = null;

  constructor(
    private config: Pick<Config, 'listeners' | 'cluster'>,
    private readonly log: Logger,
    private readonly kstate: KernelState,
  ) {}

  /** Check, then set the C flag and add the signal endpoint; before any listener. */
  async start(): Promise<void> {
    const announce = this.config.cluster.announce;
    if (announce === this.installed) return;
    await this.removeEndpoint();
    if (announce === null) return void (await this.kstate.removeInstalled([SYSCTL_ITEM('')]));
    checkAnnounce(this.config, localAddresses());
    const foreign = (await listEndpoints()).find((e) => e.address === announce && e.id !== ANNOUNCE_ENDPOINT_ID);
    if (foreign && !foreign.flags.includes('signal')) {
      throw new ClusterAnnounceError(`cluster.announce ${announce} already has MPTCP endpoint id ${foreign.id} without "signal" (not the proxy's): ip mptcp endpoint delete id ${foreign.id}`);
    }
    try {
      const original = readSysctl(C_FLAG_SYSCTL);
      if (original === null) throw new Error(`${C_FLAG_SYSCTL} does not exist (kernel older than 5.18?)`);
      if (original !== '0') await this.kstate.install(SYSCTL_ITEM(original), async () => writeSysctl(C_FLAG_SYSCTL, '0'));
      // An operator's own signal endpoint for the address already announces it.
      if (!foreign) await this.kstate.install(endpointItem(announce), () => ipBatch([buildEndpointAdd(ANNOUNCE_ENDPOINT_ID, announce, ['signal'])]));
    } catch (e) {
      // /proc/sys read-only (systemd's ProtectKernelTunables) or no CAP_NET_ADMIN: set beforehand, it is left as it is.
      const hint = e instanceof SysctlError && e.code === SysctlErrorCode.Denied ? `; set ${C_FLAG_SYSCTL}=0 before the proxy starts (/etc/sysctl.d, or mptcp-proxy doctor --fix)` : '';
      throw new ClusterAnnounceError(`cluster mode: cannot set up ${announce}: ${(e as Error).message}${hint}`, { cause: e });
    }
    this.installed = announce;
    this.log.info('cluster mode: C flag set, announcing this instance', { announce, sysctl: `${C_FLAG_SYSCTL}=0`, endpoint: foreign ? `id ${foreign.id} (existing)` : `id ${ANNOUNCE_ENDPOINT_ID}` });
  }

  /** Follow a reloaded config (another address, or cluster mode off). */
  async reload(next: Pick<Config, 'listeners' | 'cluster'>): Promise<void> {
    this.config = next;
    await this.start();
  }

  private async removeEndpoint(): Promise<void> {
    if (this.installed !== null) await this.kstate.removeInstalled([endpointItem(this.installed)]);
    this.installed = null;
  }
}

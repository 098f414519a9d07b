/**
 * The subflow plane: the kernel's netlink view, the optional pcap sniffer, the subflow registry
 * they feed, the steering engine driven by the registry, and the owner of the kernel state that
 * steering, the MSS clamp and transparent mode install. One per host namespace: in the
 * single-process proxy beside the connection plane, in a cluster in the supervisor only (every
 * worker's connections are in the same kernel, and kernel state must have one owner).
 */
import type { Config } from './config/schema';
import { KernelState } from './kstate/kernel-state';
import type { Logger } from './log/logger';
import type { ProxyMetrics } from './metrics/metrics';
import { KernelView } from './mptcp/kernel-view';
import { feedKernelEvents } from './registry/kernel-feed';
import { SubflowRegistry } from './registry/registry';
import { startSnifferFeed } from './registry/sniffer-feed';
import type { SubflowSniffer } from './sniffer/capture';
import { SteeringEngine } from './steering/engine';
import { SubflowBackup } from './steering/backup';
import { MssClamp } from './tuning/mss';
import { netlinkWatcher } from './relay/native';
import { RtoCap } from './tuning/rto';
import { TransparentRules } from './proxy/transparent';
import { ClusterAnnounce } from './proxy/announce';
import { KernelPathManager, type PathManager } from './pathmanager/path-manager';
import { UserspacePathManager } from './pathmanager/userspace';

export class SubflowPlane {
  readonly registry = new SubflowRegistry();
  /**
   * Accepted connections only: the registry, path manager and tuner read nothing of the proxy's
   * upstream ones. Read on the main loop by the native addon where it loads.
   */
  readonly kernel = new KernelView({ serverSideOnly: true, watcher: netlinkWatcher() });
  /** Every nft table, qdisc, IFB, rule, route, endpoint and limit below goes in and out through it. */
  readonly kstate: KernelState;
  readonly steering: SteeringEngine;
  /** Kernel-wide like steering's state, so here (src/tuning/mss.ts). */
  readonly mss: MssClamp;
  /** The namespace's retransmission backoff cap (paths.rtoMaxMs): per namespace, so here. */
  readonly rto: RtoCap;
  /** Transparent mode's TPROXY table and local route: kernel-wide, so here too. */
  readonly transparent: TransparentRules;
  /** Cluster mode's C flag and announce endpoint: per namespace too. */
  readonly announce: ClusterAnnounce;
  /** paths.pathManager: the kernel's, or this process answering PM events (setBackup per subflow). */
  pathManager: PathManager;
  private sniffer: SubflowSniffer | null = null;

  constructor(
    private config: Config,
    private readonly log: Logger,
    metrics: ProxyMetrics,
  ) {
    metrics.observeSubflows(this.registry);
    // Kernel counters are per namespace, and this plane is the one per namespace.
    metrics.observeKernelMptcp();
    feedKernelEvents(this.kernel, this.registry);
    this.kstate = new KernelState(log);
    this.steering = SteeringEngine.provision(config.steering, this.registry, log, this.kstate, { metrics: metrics.registry });
    this.mss = new MssClamp(config.tuning, log, this.kstate);
    this.rto = new RtoCap(config.paths.rtoMaxMs, log, this.kstate);
    this.transparent = new TransparentRules(config, log, this.kstate);
    this.announce = new ClusterAnnounce(config, log, this.kstate);
    this.pathManager = this.makePathManager(config);
  }

  private makePathManager(c: Config): PathManager {
    const pm = c.paths.pathManager === 'userspace' ? new UserspacePathManager(c, this.kernel, this.kstate, this.log) : new KernelPathManager();
    // The steering modes' standby paths: MP_PRIO per subflow where the path manager can, else per endpoint.
    this.steering.useBackupMarker(
      pm.mode === 'userspace'
        ? new SubflowBackup(
            (s, on) => pm.setBackup(parseInt(s.token, 16), { local: { address: s.local.host, port: s.local.port }, remote: { address: s.remote.host, port: s.remote.port } }, on),
            (s, e) => this.log.warn('steering modes: subflow not marked backup; it is capped instead', { subflow: s.key, error: e.message }),
          )
        : null,
    );
    return pm;
  }

  /**
   * Before any listener: subflows of the first connections must find their policies in place.
   * The order: what an earlier run left is taken over and removed first (its journal and owned
   * names), then each part installs through the owner; stop removes it all in REMOVE_ORDER.
   */
  async start(): Promise<void> {
    const removed = await this.kstate.adopt();
    if (removed.length > 0) this.log.warn('kernel state: removed what an earlier run left', { removed });
    // First: its start checks refuse a bad announce address before anything else is installed.
    await this.announce.start();
    await this.startKernelView();
    await this.pathManager.start();
    if (this.config.sniffer.interfaces.length > 0) this.sniffer = startSnifferFeed(this.config.sniffer.interfaces, this.registry, this.log);
    if (this.steering.active) await this.steering.start();
    await this.mss.start();
    await this.rto.start();
    await this.transparent.start();
  }

  /** The kernel's event stream; without it subflows are still seen when connections are sampled. */
  private async startKernelView(): Promise<void> {
    try {
      await this.kernel.start();
      this.kernel.on('failed', (e) => this.log.warn('MPTCP netlink events stopped', { error: e.message }));
      this.kernel.on('lost', () => this.log.warn('MPTCP netlink events lost (socket buffer overflow)'));
    } catch (e) {
      this.log.warn('MPTCP netlink events unavailable; subflows are seen only when connections are sampled', { error: (e as Error).message });
    }
  }

  async reload(next: Config): Promise<void> {
    await this.steering.reload(next.steering);
    await this.mss.reload(next.tuning);
    await this.rto.reload(next.paths.rtoMaxMs);
    await this.transparent.reload(next);
    await this.announce.reload(next);
    if (next.paths.pathManager === this.pathManager.mode) await this.pathManager.reload(next);
    else {
      await this.pathManager.stop();
      this.pathManager = this.makePathManager(next);
      await this.pathManager.start();
    }
    this.config = next;
  }

  /** Remove everything installed in the kernel; never throws. */
  async stop(): Promise<void> {
    await this.steering.stop();
    await this.pathManager.stop();
    const removed = await this.kstate.removeAll();
    this.log.info('kernel state removed', { removed, ...(this.kstate.adopted.length > 0 ? { adoptedAtStart: this.kstate.adopted } : {}) });
    await this.kernel.stop();
    this.sniffer?.close();
    this.sniffer = null;
  }
}

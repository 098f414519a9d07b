/**
 * The subflow plane: the kernel's netlink view, the optional pcap sniffer, the subflow registry
 * they feed, and the steering engine driven by the registry. One per host namespace: in the
 * single-process proxy beside the connection plane, in a cluster in the supervisor only (every
 * worker's connections are in the same kernel, and kernel state must have one owner).
 */
import type { Config } from './config/schema';
import type { Logger } from './log/logger';
import type { ProxyMetrics } from './metrics/metrics';
import { KernelView } from './mptcp/kernel-view';
import { feedKernelEvents } from './registry/kernel-feed';
import { SubflowRegistry } from './registry/registry';
import { startSnifferFeed } from './registry/sniffer-feed';
import type { SubflowSniffer } from './sniffer/capture';
import { SteeringEngine } from './steering/engine';
import { MssClamp } from './tuning/mss';
import { TransparentRules } from './proxy/transparent';

export class SubflowPlane {
  readonly registry = new SubflowRegistry();
  readonly kernel = new KernelView();
  readonly steering: SteeringEngine;
  /** Kernel-wide like steering's state, so owned here (src/tuning/mss.ts). */
  readonly mss: MssClamp;
  /** Transparent mode's TPROXY table and local route: kernel-wide, so owned here too. */
  readonly transparent: TransparentRules;
  private sniffer: SubflowSniffer | null = null;

  constructor(
    private config: Config,
    private readonly log: Logger,
    metrics: ProxyMetrics,
  ) {
    metrics.observeSubflows(this.registry);
    feedKernelEvents(this.kernel, this.registry);
    this.steering = SteeringEngine.provision(config.steering, this.registry, log, { metrics: metrics.registry });
    this.mss = new MssClamp(config.tuning, log);
    this.transparent = new TransparentRules(config, log);
  }

  /** Before any listener: subflows of the first connections must find their policies in place. */
  async start(): Promise<void> {
    await this.startKernelView();
    if (this.config.sniffer.interfaces.length > 0) this.sniffer = startSnifferFeed(this.config.sniffer.interfaces, this.registry, this.log);
    if (this.steering.active) await this.steering.start();
    // After steering: its start removes every owned table a crashed run left, this one included.
    await this.mss.start();
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
    const wasActive = this.steering.active;
    await this.steering.reload(next.steering);
    if (!wasActive && this.steering.active) await this.steering.start();
    await this.mss.reload(next.tuning);
    await this.transparent.reload(next);
    this.config = next;
  }

  /** Remove everything installed in the kernel; never throws. */
  async stop(): Promise<void> {
    await this.mss.stop();
    await this.transparent.stop();
    await this.steering.stop();
    await this.kernel.stop();
    this.sniffer?.close();
    this.sniffer = null;
  }
}

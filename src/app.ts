/**
 * Assembles a running proxy from a Config: context, listeners, observers (logs, registry,
 * metrics, admin endpoint). Lifecycle per module: provision (constructor) → start → reload
 * (SIGHUP) → stop (cleanup).
 */
import type http from 'node:http';
import { AccessControl } from './access/access';
import { startAdminServer } from './admin/server';
import type { Config, ListenerConfig, ListenerProtocol } from './config/schema';
import { ProxyEvents } from './core/events';
import { ProxyListener } from './listener/listener';
import { logFinishedConnections } from './log/connection-log';
import type { Logger } from './log/logger';
import { ProxyMetrics } from './metrics/metrics';
import type { FrontEnd, ProxyContext } from './proxy/context';
import { createHttpFrontEnd } from './proxy/http/server';
import { createMixedFrontEnd } from './proxy/mixed';
import { handleSocks } from './proxy/socks/server';
import { SubflowRegistry } from './registry/registry';
import { selectRelayEngine } from './relay/select';
import { DefaultUpstreamConnector } from './upstream/connector';
import { KernelView } from './mptcp/kernel-view';
import { sampleConnection } from './mptcp/sample';
import { feedConnectionEvents, feedKernelEvents, registrySink } from './registry/kernel-feed';
import { startSnifferFeed } from './registry/sniffer-feed';
import type { SubflowSniffer } from './sniffer/capture';
import { SteeringEngine } from './steering/engine';
import type { ClientConnection } from './core/connection';

const listenerIdentity = (l: ListenerConfig): string => `${l.protocol}|${l.host}|${l.port}|${l.mptcp}`;

export class ProxyApp {
  readonly events = new ProxyEvents();
  readonly subflows = new SubflowRegistry();
  readonly metrics: ProxyMetrics;
  readonly ctx: ProxyContext;
  private listeners: ProxyListener[] = [];
  private readonly frontEnds: Record<ListenerProtocol, FrontEnd>;
  private admin: http.Server | null = null;
  readonly kernel = new KernelView();
  readonly steering: SteeringEngine;
  private sniffer: SubflowSniffer | null = null;

  constructor(
    config: Config,
    readonly log: Logger,
  ) {
    const access = new AccessControl(config.access);
    this.ctx = {
      config,
      log,
      events: this.events,
      access,
      upstream: new DefaultUpstreamConnector(config.upstream, access, this.events),
      relay: selectRelayEngine(config.relay.engine, log),
    };
    logFinishedConnections(this.events, log);
    this.metrics = new ProxyMetrics(this.events, this.subflows);
    feedKernelEvents(this.kernel, this.subflows);
    feedConnectionEvents(this.events, this.kernel, registrySink(this.subflows));
    this.steering = SteeringEngine.provision(config.steering, this.subflows, log, { metrics: this.metrics.registry });
    const http = createHttpFrontEnd(this.ctx);
    this.frontEnds = { http, socks: handleSocks, mixed: createMixedFrontEnd(http, handleSocks) };
  }

  get config(): Config {
    return this.ctx.config;
  }

  async start(): Promise<void> {
    try {
      this.startKernelView();
      if (this.config.sniffer.interfaces.length > 0) this.sniffer = startSnifferFeed(this.config.sniffer.interfaces, this.subflows, this.log);
      // Steering first: subflows of the first connections must find their policies in place.
      if (this.steering.active) await this.steering.start();
      for (const l of this.config.listeners) await this.startListener(l);
      if (this.config.metrics.enabled) {
        this.admin = await startAdminServer(
          this.config.metrics.host,
          this.config.metrics.port,
          {
            metrics: this.metrics,
            subflows: this.subflows,
            connections: () => this.openConnections(),
            refresh: () => {
              for (const c of this.openConnections()) sampleConnection(c, this.events);
            },
          },
          this.log,
        );
      }
    } catch (e) {
      await this.stop(0);
      throw e;
    }
  }

  /** The kernel's event stream; without it subflows are still seen when connections are sampled. */
  private startKernelView(): void {
    try {
      this.kernel.start();
      this.kernel.on('failed', (e) => this.log.warn('MPTCP netlink events stopped', { error: e.message }));
      this.kernel.on('lost', () => this.log.warn('MPTCP netlink events lost (socket buffer overflow)'));
    } catch (e) {
      this.log.warn('MPTCP netlink events unavailable; subflows are seen only when connections are sampled', { error: (e as Error).message });
    }
  }

  private async startListener(l: ListenerConfig): Promise<void> {
    const listener = new ProxyListener(l, this.frontEnds[l.protocol], this.ctx);
    await listener.start();
    this.listeners.push(listener);
  }

  *openConnections(): Iterable<ClientConnection> {
    for (const l of this.listeners) yield* l.active;
  }

  get activeConnections(): number {
    return this.listeners.reduce((n, l) => n + l.active.size, 0);
  }

  /**
   * Apply a new config without dropping established connections: access rules, upstream
   * settings and log level at once; listeners added/removed by identity (removed ones stop
   * accepting, their connections continue).
   */
  async reload(next: Config): Promise<void> {
    const access = new AccessControl(next.access);
    this.ctx.access = access;
    this.ctx.upstream = new DefaultUpstreamConnector(next.upstream, access, this.events);
    this.log.level = next.log.level;
    const steeringWasActive = this.steering.active;
    await this.steering.reload(next.steering);
    if (!steeringWasActive && this.steering.active) await this.steering.start();
    const wanted = new Map(next.listeners.map((l) => [listenerIdentity(l), l]));
    const keep: ProxyListener[] = [];
    for (const l of this.listeners) {
      const id = listenerIdentity(l.config);
      if (wanted.has(id)) {
        wanted.delete(id);
        keep.push(l);
      } else {
        await l.close();
        this.log.info('listener removed by reload', { listener: l.name });
      }
    }
    this.listeners = keep;
    for (const l of wanted.values()) await this.startListener(l);
    this.ctx.config = next;
    this.log.info('config reloaded', { listeners: this.listeners.map((l) => l.name) });
  }

  /** Stop accepting, let established connections finish for up to drainMs, then close them. */
  async stop(drainMs: number): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.close()));
    const admin = this.admin;
    this.admin = null;
    const deadline = Date.now() + drainMs;
    while (this.activeConnections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const l of this.listeners) l.destroyAll();
    if (admin) await new Promise((r) => admin.close(r));
    await this.steering.stop();
    await this.kernel.stop();
    this.sniffer?.close();
  }
}

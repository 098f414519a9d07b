/**
 * The connection plane: context, listeners, protocol front ends, relay, per-connection logs and
 * metrics. Runs alone (with a SubflowPlane beside it, see src/cli/run.ts) or as one of several
 * worker processes sharing the listening ports (SO_REUSEPORT, see src/cluster).
 * Lifecycle: provision (constructor) → start → reload (SIGHUP) → stop (drain, cleanup).
 */
import { AccessControl } from './access/access';
import type { Config, ListenerConfig, ListenerProtocol } from './config/schema';
import type { HostPort } from './core/address';
import type { ClientConnection } from './core/connection';
import { ProxyEvents } from './core/events';
import { FastPath } from './fastpath/fastpath';
import { ProxyListener } from './listener/listener';
import { logFinishedConnections } from './log/connection-log';
import { logLimitHits, type LimitLog } from './log/limit-log';
import type { Logger } from './log/logger';
import type { ProxyMetrics } from './metrics/metrics';
import { KernelView } from './mptcp/kernel-view';
import { sampleConnection } from './mptcp/sample';
import type { FrontEnd, ProxyContext } from './proxy/context';
import { fastOpenServerEnabled, handleConvert } from './proxy/convert/server';
import { createHttpFrontEnd, type HttpFrontEnd } from './proxy/http/server';
import { createMixedFrontEnd } from './proxy/mixed';
import { handleSocks } from './proxy/socks/server';
import { createTransparentFrontEnd } from './proxy/transparent';
import { servedListeners } from './proxy/announce';
import { feedConnectionEvents, type ConnectionSink } from './registry/kernel-feed';
import { selectRelayEngine } from './relay/select';
import { UpstreamRouter } from './upstream/router';
import { createBufferTuner } from './tuning/tuning';
import type { BufferTuner } from './tuning/tuner';

const listenerIdentity = (l: ListenerConfig): string => `${l.protocol}|${l.host}|${l.port}|${l.mptcp}|${l.fastOpenQueue ?? ''}`;

export interface ProxyAppOptions {
  /** Where connection samples go, and subflow-up comes from: the local registry, or the supervisor of a cluster. */
  sink: ConnectionSink;
  /** Several processes share each listening port. */
  reusePort: boolean;
  /** Socket reads for samples; only getsockopt, no netlink stream, so any process can have one. */
  kernel?: KernelView;
}

export class ProxyApp {
  readonly events = new ProxyEvents();
  readonly ctx: ProxyContext;
  private listeners: ProxyListener[] = [];
  private readonly frontEnds: Record<ListenerProtocol, FrontEnd>;
  private readonly http: HttpFrontEnd;
  private readonly limitLog: LimitLog;
  /** Per-connection buffer sizes (src/tuning); its status feeds /connections. */
  readonly tuner: BufferTuner;
  /** The native accept-to-splice path (src/fastpath), when on. */
  private readonly fastPath: FastPath | null;

  constructor(
    config: Config,
    readonly log: Logger,
    metrics: ProxyMetrics,
    private readonly opts: ProxyAppOptions,
  ) {
    const access = new AccessControl(config.access);
    this.ctx = {
      config,
      log,
      events: this.events,
      access,
      upstream: new UpstreamRouter(config.upstream, access, this.events, log),
      relay: selectRelayEngine(config.relay.engine, log),
    };
    logFinishedConnections(this.events, log);
    this.limitLog = logLimitHits(this.events, log);
    metrics.observeConnections(this.events);
    metrics.observeAuth(access.guard);
    const kernel = opts.kernel ?? new KernelView();
    feedConnectionEvents(this.events, kernel, opts.sink);
    this.tuner = createBufferTuner(config.tuning.buffers, { events: this.events, kernel, sink: opts.sink, log, metrics: metrics.registry });
    this.fastPath = FastPath.create(config, this.events, log, metrics.fastPathServed);
    const http = (this.http = createHttpFrontEnd(this.ctx));
    this.frontEnds = { http, socks: handleSocks, mixed: createMixedFrontEnd(http, handleSocks), transparent: createTransparentFrontEnd(() => this.ownEndpoints()), convert: handleConvert };
  }

  get config(): Config {
    return this.ctx.config;
  }

  async start(): Promise<void> {
    try {
      for (const l of servedListeners(this.config)) await this.startListener(l);
    } catch (e) {
      await this.stop(0);
      throw e;
    }
  }

  private async startListener(l: ListenerConfig): Promise<void> {
    const listener = new ProxyListener(l, this.frontEnds[l.protocol], this.ctx, {
      ...(this.opts.reusePort ? { reusePort: true } : {}),
      // TPROXY hands a listener foreign-addressed connections only when it is transparent.
      ...(l.protocol === 'transparent' ? { transparent: true } : {}),
      // A Convert client's first message rides in its SYN; Linux MPTCP clients send it without a cookie.
      ...(l.fastOpenQueue !== undefined ? { fastOpen: l.fastOpenQueue, fastOpenNoCookie: true } : {}),
    }, this.fastPath);
    await listener.start();
    this.listeners.push(listener);
    if (l.protocol === 'convert' && fastOpenServerEnabled() === false) {
      this.log.warn('TCP Fast Open server side is off here: Convert messages wait for the handshake and MPTCP clients sending data in the SYN fall back to TCP', { listener: l.name, hint: 'sysctl -w net.ipv4.tcp_fastopen=3' });
    }
  }

  /** Where this proxy listens now: what a transparent connection must never be sent back to. */
  private ownEndpoints(): HostPort[] {
    const own = this.listeners.map((l) => ({ host: l.config.host, port: l.boundPort }));
    const m = this.config.metrics;
    return m.enabled ? [...own, { host: m.host, port: m.port }] : own;
  }

  *openConnections(): Iterable<ClientConnection> {
    for (const l of this.listeners) yield* l.active;
    if (this.fastPath) yield* this.fastPath.open.values();
  }

  get activeConnections(): number {
    return this.listeners.reduce((n, l) => n + l.active.size, this.fastPath?.active ?? 0);
  }

  /** Read every open connection's kernel state now (status pages, scrapes). */
  sampleAll(): void {
    this.fastPath?.refreshLive();
    for (const c of this.openConnections()) sampleConnection(c, this.events);
  }

  /**
   * Apply a new config without dropping established connections: access rules, upstream
   * settings and log level at once; listeners added/removed by identity (removed ones stop
   * accepting, their connections continue).
   */
  async reload(next: Config): Promise<void> {
    const access = new AccessControl(next.access, this.ctx.access.guard);
    this.ctx.access = access;
    // The new parent list starts probing; connections through the old one keep their tunnels.
    this.ctx.upstream.close();
    this.ctx.upstream = new UpstreamRouter(next.upstream, access, this.events, this.log);
    this.fastPath?.configure(next);
    this.log.level = next.log.level;
    this.tuner.reload(next.tuning.buffers);
    const wanted = new Map(servedListeners(next).map((l) => [listenerIdentity(l), l]));
    const keep: ProxyListener[] = [];
    for (const l of this.listeners) {
      const id = listenerIdentity(l.config);
      if (wanted.has(id)) {
        wanted.delete(id);
        keep.push(l);
      } else {
        l.close();
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
    // Cluster mode: clients join the announced address through the listeners until the drain ends.
    const keepJoins = this.config.cluster.announce !== null && drainMs > 0;
    for (const l of this.listeners) if (keepJoins) l.refuseNew();
    else l.close();
    // Idle keep-alive connections would hold the drain to its end for nothing.
    this.http.drain();
    const deadline = Date.now() + drainMs;
    while (this.activeConnections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const l of this.listeners) {
      l.close();
      l.destroyAll();
    }
    await this.fastPath?.closeAll();
    this.ctx.upstream.close();
    this.tuner.stop();
    this.limitLog.flush();
  }
}

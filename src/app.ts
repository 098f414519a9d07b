/**
 * Assembles a running proxy from a Config: context, listeners, observers. Lifecycle per module:
 * provision (build) → validate (config already validated) → start → stop (cleanup).
 */
import { AccessControl } from './access/access';
import type { Config, ListenerProtocol } from './config/schema';
import { ProxyEvents } from './core/events';
import { ProxyListener } from './listener/listener';
import { logFinishedConnections } from './log/connection-log';
import type { Logger } from './log/logger';
import type { FrontEnd, ProxyContext } from './proxy/context';
import { createHttpFrontEnd } from './proxy/http/server';
import { createMixedFrontEnd } from './proxy/mixed';
import { handleSocks } from './proxy/socks/server';
import { selectRelayEngine } from './relay/select';
import { DefaultUpstreamConnector } from './upstream/connector';

export class ProxyApp {
  readonly events = new ProxyEvents();
  readonly ctx: ProxyContext;
  readonly listeners: ProxyListener[];

  constructor(
    readonly config: Config,
    readonly log: Logger,
  ) {
    const access = new AccessControl(config.access);
    const relay = selectRelayEngine(config.relay.engine, log);
    this.ctx = {
      config,
      log,
      events: this.events,
      access,
      upstream: new DefaultUpstreamConnector(config.upstream, access, this.events),
      relay,
    };
    logFinishedConnections(this.events, log);
    const http = createHttpFrontEnd(this.ctx);
    const frontEnds: Record<ListenerProtocol, FrontEnd> = { http, socks: handleSocks, mixed: createMixedFrontEnd(http, handleSocks) };
    this.listeners = config.listeners.map((l) => new ProxyListener(l, frontEnds[l.protocol], this.ctx));
  }

  async start(): Promise<void> {
    try {
      for (const l of this.listeners) await l.start();
    } catch (e) {
      await this.stop(0);
      throw e;
    }
  }

  get activeConnections(): number {
    return this.listeners.reduce((n, l) => n + l.active.size, 0);
  }

  /** Stop accepting, let established connections finish for up to drainMs, then close them. */
  async stop(drainMs: number): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.close()));
    const deadline = Date.now() + drainMs;
    while (this.activeConnections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const l of this.listeners) l.destroyAll();
  }
}

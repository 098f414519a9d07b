/**
 * The configured parents and their health: a cheap TCP connect to each every probe.intervalMs
 * (the same dial the tunnels use, MPTCP when the parent is), real connects' results beside, the
 * order to try them in (./selector), and the events metrics and logs follow. One pool per config:
 * a reload closes the old one and starts a new one.
 */
import type { ParentConfig, UpstreamConfig } from '../config/upstream';
import { formatHostPort } from '../core/address';
import type { ProxyEvents } from '../core/events';
import type { Logger } from '../log/logger';
import { dialParent } from './dial';
import { afterConnect, afterProbe, INITIAL_HEALTH, selectOrder, type ParentHealth } from './selector';

interface Entry {
  config: ParentConfig;
  health: ParentHealth;
  probing: boolean;
}

export class ParentPool {
  private readonly parents = new Map<string, Entry>();
  private readonly timer: NodeJS.Timeout | null;

  constructor(
    private readonly upstream: UpstreamConfig,
    private readonly events: ProxyEvents,
    private readonly log: Logger,
  ) {
    for (const config of upstream.parents) {
      this.parents.set(config.name, { config, health: INITIAL_HEALTH, probing: false });
      events.emit('parent-health', config.name, 'up', null);
    }
    this.timer = upstream.parents.length > 0 ? setInterval(() => this.probeAll(), upstream.probe.intervalMs).unref() : null;
    this.probeAll();
  }

  get(name: string): ParentConfig | undefined {
    return this.parents.get(name)?.config;
  }

  /** The parents of `names` to try now, best first; empty when all of them are down. */
  order(names: readonly string[]): ParentConfig[] {
    const listed = names.flatMap((n) => {
      const e = this.parents.get(n);
      return e ? [{ name: n, health: e.health }] : [];
    });
    return selectOrder(listed).map((n) => this.parents.get(n)!.config);
  }

  /** A connect through `name` finished: its connect time to the parent, or null when the parent failed. */
  connected(name: string, latencyMs: number | null): void {
    const e = this.parents.get(name);
    if (!e) return;
    this.events.emit('parent-check', name, 'connect', latencyMs !== null);
    this.update(e, afterConnect(e.health, latencyMs), 'connect');
  }

  /** Stop probing (reload or shutdown); the parents' metrics go with them. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const name of this.parents.keys()) this.events.emit('parent-health', name, 'removed', null);
    this.parents.clear();
  }

  private probeAll(): void {
    for (const e of this.parents.values()) if (!e.probing) void this.probe(e);
  }

  private async probe(e: Entry): Promise<void> {
    e.probing = true;
    const started = process.hrtime.bigint();
    let latencyMs: number | null = null;
    try {
      (await dialParent(e.config, this.upstream.probe.timeoutMs)).destroy();
      latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
    } catch (err) {
      // latencyMs stays null: the probe failed, which is what it measures.
      this.log.debug('parent probe failed', { parent: e.config.name, error: (err as Error).message });
    }
    e.probing = false;
    // Closed by a reload while the probe ran: this entry is no longer the parent's.
    if (this.parents.get(e.config.name) !== e) return;
    this.events.emit('parent-check', e.config.name, 'probe', latencyMs !== null);
    this.update(e, afterProbe(e.health, latencyMs, this.upstream.probe), 'probe');
  }

  private update(e: Entry, next: ParentHealth, by: 'probe' | 'connect'): void {
    const was = e.health.up;
    e.health = next;
    this.events.emit('parent-health', e.config.name, next.up ? 'up' : 'down', next.latencyMs);
    if (was === next.up) return;
    const fields = { parent: e.config.name, url: `${e.config.protocol}://${formatHostPort(e.config)}`, by };
    if (next.up) this.log.info('parent proxy up', fields);
    else this.log.warn('parent proxy down', fields);
  }
}

/**
 * Prometheus metrics (prom-client): every metric the proxy exports is defined in this file. The
 * names and labels below are a contract (README, Grafana dashboard). Labels stay bounded:
 * listener, interface, direction, result, code, uplink, policy, and the instance name on every
 * metric; never per connection or per client address. Connection and subflow metrics are fed here from events; the steering engine
 * and the buffer tuner observe their own (steeringMetrics, bufferTunerMetrics), registered in the
 * same registry.
 */
import client from 'prom-client';
import { DEFAULTS } from '../config/schema';
import { AUTH_FAILURE_REASONS, type AuthGuard } from '../access/auth-guard';
import type { ProxyEvents } from '../core/events';
import type { SubflowRegistry } from '../registry/registry';

const UNKNOWN_IF = 'unknown';

const mptcpLabel = (m: boolean | null): string => (m === null ? 'unknown' : String(m));

/**
 * A labelled child per label values, made on first use and kept: label sets here are bounded
 * (see above), and a reset of the registry is never done while the proxy runs.
 */
function labelledChildren<A extends string[], C>(make: (...values: A) => C): (...values: A) => C {
  const children = new Map<string, C>();
  return (...values: A): C => {
    const key = values.join('\u0000');
    let c = children.get(key);
    if (c === undefined) {
      c = make(...values);
      children.set(key, c);
    }
    return c;
  };
}

/** The steering engine's metrics (src/steering/engine.ts observes them). */
export function steeringMetrics(registry: client.Registry) {
  const registers = [registry];
  return {
    uplinkUp: new client.Gauge({ name: 'mptcp_proxy_uplink_up', help: 'Uplink health from its probes (1 up, 0 down)', labelNames: ['uplink'] as const, registers }),
    uplinkChanges: new client.Counter({ name: 'mptcp_proxy_uplink_changes_total', help: 'Uplink state changes (failover and failback)', labelNames: ['uplink', 'state'] as const, registers }),
    steered: new client.Gauge({ name: 'mptcp_proxy_steered_subflows', help: 'Subflows under a steering policy now', labelNames: ['policy'] as const, registers }),
    apply: new client.Histogram({ name: 'mptcp_proxy_steering_apply_seconds', help: 'Subflow event to kernel state applied', buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1], registers }),
    failures: new client.Counter({ name: 'mptcp_proxy_steering_failures_total', help: 'Kernel changes the steering engine could not apply', registers }),
  };
}
export type SteeringMetrics = ReturnType<typeof steeringMetrics>;

/** The buffer tuner's metrics (src/tuning/tuner.ts observes them). */
export function bufferTunerMetrics(registry: client.Registry) {
  const registers = [registry];
  return {
    applied: new client.Histogram({
      name: 'mptcp_proxy_socket_buffer_bytes',
      help: 'Receive/send buffer sizes the tuner set on client sockets (kernel bytes, as SO_RCVBUF/SO_SNDBUF read back)',
      labelNames: ['direction'] as const,
      buckets: [65_536, 180_000, 262_144, 524_288, 720_000, 1_048_576, 2_097_152, 4_194_304, 8_388_608, 16_777_216, 33_554_432, 67_108_864],
      registers,
    }),
    decisions: new client.Counter({ name: 'mptcp_proxy_socket_buffer_decisions_total', help: 'Buffer tuning decisions per client socket buffer', labelNames: ['direction', 'decision'] as const, registers }),
  };
}
export type BufferTunerMetrics = ReturnType<typeof bufferTunerMetrics>;

export class ProxyMetrics {
  readonly registry = new client.Registry();
  private readonly exportedPathBytes = new Map<string, number>();

  readonly connectionsActive = new client.Gauge({ name: 'mptcp_proxy_connections_active', help: 'Client connections open now', labelNames: ['listener', 'mptcp'] as const, registers: [this.registry] });
  readonly connectionsTotal = new client.Counter({ name: 'mptcp_proxy_connections_total', help: 'Client connections finished, by outcome', labelNames: ['listener', 'mptcp', 'result'] as const, registers: [this.registry] });
  readonly subflowsActive = new client.Gauge({ name: 'mptcp_proxy_subflows_active', help: 'MPTCP subflows established now, by client-facing interface', labelNames: ['interface'] as const, registers: [this.registry] });
  readonly subflowsTotal = new client.Counter({ name: 'mptcp_proxy_subflows_total', help: 'MPTCP subflows established, by client-facing interface', labelNames: ['interface'] as const, registers: [this.registry] });
  readonly pathBytes: client.Counter<'interface' | 'direction'> = new client.Counter({
    name: 'mptcp_proxy_path_bytes_total',
    help: 'Bytes carried by subflows on each client-facing interface (rx/tx seen from the proxy), closed subflows included',
    labelNames: ['interface', 'direction'] as const,
    registers: [this.registry],
    collect: () => this.syncPathBytes(),
  });
  readonly relayBytes = new client.Counter({ name: 'mptcp_proxy_relay_bytes_total', help: 'Bytes relayed between clients and destinations (up = client to destination)', labelNames: ['direction'] as const, registers: [this.registry] });
  readonly conversion = new client.Histogram({ name: 'mptcp_proxy_conversion_seconds', help: 'Client accepted to upstream connected', buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry] });
  readonly subflowRtt = new client.Histogram({ name: 'mptcp_proxy_subflow_rtt_seconds', help: 'Smoothed RTT of subflows when they close, by interface', labelNames: ['interface'] as const, buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], registers: [this.registry] });
  /** Effective MSS (tcp_info snd_mss) per path: shows a lowered MTU or the MSS clamp (src/tuning) at work. */
  readonly subflowMss = new client.Histogram({ name: 'mptcp_proxy_subflow_mss_bytes', help: 'Effective MSS of subflows when they close, by interface', labelNames: ['interface'] as const, buckets: [536, 960, 1200, 1380, 1448, 1460, 4000, 8948, 9000, 65483], registers: [this.registry] });
  readonly errors = new client.Counter({ name: 'mptcp_proxy_errors_total', help: 'Refusals and failures by stable error code', labelNames: ['code'] as const, registers: [this.registry] });
  readonly authFailures = new client.Counter({ name: 'mptcp_proxy_auth_failures_total', help: 'Password checks refused, by reason (throttled: the client failed recently and has a check in flight or too many; busy: the hash queue was full)', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly authHashes = new client.Counter({ name: 'mptcp_proxy_auth_hashes_total', help: 'Password hashes computed (checks not answered from the credential cache)', registers: [this.registry] });
  readonly fastPathTotal = new client.Counter({ name: 'mptcp_proxy_fast_path_total', help: 'Connections the native fast path accepted, by who served them (native, or handoff to the TS front ends)', labelNames: ['path'] as const, registers: [this.registry] });
  readonly authCacheHits = new client.Counter({ name: 'mptcp_proxy_auth_cache_hits_total', help: 'Password checks answered from the credential cache (access.credentialsTtlMs)', registers: [this.registry] });

  /**
   * `instance` goes on every metric, process_* and nodejs_* included (the registry's default
   * labels): instances behind one load balancer stay apart when their series are summed.
   */
  constructor(instance: string = DEFAULTS.instance) {
    this.registry.setDefaultLabels({ instance });
    client.collectDefaultMetrics({ register: this.registry });
  }

  /** Connection metrics from a connection plane's events. */
  observeConnections(events: ProxyEvents): void {
    // prom-client hashes a label object on every call: at thousands of connections a second the
    // labelled children are looked up once per label set and kept (the label sets are bounded).
    const active = labelledChildren((listener: string, mptcp: string) => this.connectionsActive.labels(listener, mptcp));
    const total = labelledChildren((listener: string, mptcp: string, result: string) => this.connectionsTotal.labels(listener, mptcp, result));
    const errors = labelledChildren((code: string) => this.errors.labels(code));
    const up = this.relayBytes.labels('up');
    const down = this.relayBytes.labels('down');
    events.on('connection-open', (c) => active(c.listener, mptcpLabel(c.mptcp)).inc());
    events.on('connection-close', (c) => {
      const mptcp = mptcpLabel(c.mptcp);
      active(c.listener, mptcp).dec();
      total(c.listener, mptcp, c.resultCode).inc();
    });
    events.on('upstream-connected', (c) => {
      const s = c.conversionSeconds;
      if (s !== null) this.conversion.observe(s);
    });
    events.on('relay-done', (_c, r) => {
      up.inc(r.bytesUp);
      down.inc(r.bytesDown);
    });
    events.on('proxy-error', (e) => errors(e.code).inc());
  }

  /** Password check metrics from the auth guard (it outlives reloads, so this is called once). */
  observeAuth(guard: AuthGuard): void {
    const failures = new Map(AUTH_FAILURE_REASONS.map((r) => [r as string, this.authFailures.labels(r)]));
    for (const c of failures.values()) c.inc(0); // every reason exported from the start, at 0
    guard.on('hash', () => this.authHashes.inc());
    guard.on('outcome', (o) => {
      if (o === 'cached') this.authCacheHits.inc();
      else failures.get(o)?.inc();
    });
  }

  /** Subflow metrics from the registry; path byte totals are read from it at each collection. */
  observeSubflows(subflows: SubflowRegistry): void {
    const active = labelledChildren((iface: string) => this.subflowsActive.labels(iface));
    const total = labelledChildren((iface: string) => this.subflowsTotal.labels(iface));
    const rtt = labelledChildren((iface: string) => this.subflowRtt.labels(iface));
    const mss = labelledChildren((iface: string) => this.subflowMss.labels(iface));
    subflows.on('subflow-up', (s) => {
      const iface = s.interface ?? UNKNOWN_IF;
      active(iface).inc();
      total(iface).inc();
    });
    subflows.on('subflow-down', (s) => {
      const iface = s.interface ?? UNKNOWN_IF;
      active(iface).dec();
      if (s.rttUs !== null) rtt(iface).observe(s.rttUs / 1e6);
      if (s.mss !== null) mss(iface).observe(s.mss);
    });
    this.pathSource = subflows;
  }

  private pathSource: SubflowRegistry | null = null;

  /** Bring the path byte counters up to the registry's totals (they only grow). */
  private syncPathBytes(): void {
    for (const [iface, b] of this.pathSource?.pathBytes ?? []) {
      for (const [direction, total] of [['rx', b.rx], ['tx', b.tx]] as const) {
        const key = `${iface}|${direction}`;
        const delta = total - (this.exportedPathBytes.get(key) ?? 0);
        if (delta > 0) {
          this.pathBytes.inc({ interface: iface, direction }, delta);
          this.exportedPathBytes.set(key, total);
        }
      }
    }
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * Prometheus metrics (prom-client): every metric the proxy exports is defined in this file. The
 * names and labels below are a contract (README, Grafana dashboard). Labels stay bounded:
 * listener, interface, direction, result, code, uplink, policy, parent, and the instance name on every
 * metric; never per connection or per client address. Connection and subflow metrics are fed here from events; the steering engine
 * and the buffer tuner observe their own (steeringMetrics, bufferTunerMetrics), registered in the
 * same registry.
 */
import client from 'prom-client';
import { DEFAULTS } from '../config/schema';
import { AUTH_FAILURE_REASONS, type AuthGuard } from '../access/auth-guard';
import type { ProxyEvents } from '../core/events';
import type { SubflowRegistry } from '../registry/registry';
import { readMptcpCounters } from '../sys/netstat';
import { readSysctl } from '../sys/sysctl';

const UNKNOWN_IF = 'unknown';

const mptcpLabel = (m: boolean | null): string => (m === null ? 'unknown' : String(m));

/**
 * A labelled child per label values, made on first use and kept: label sets here are bounded
 * (see above), and a reset of the registry is never done while the proxy runs. One map level per
 * label: the values are a few constant strings, so no key is built per call.
 */
function labelledChildren<A extends string[], C>(make: (...values: A) => C): (...values: A) => C {
  const root = new Map<string, unknown>();
  return (...values: A): C => {
    let level = root;
    const last = values.length - 1;
    for (let i = 0; i < last; i++) {
      let next = level.get(values[i]!) as Map<string, unknown> | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(values[i]!, next);
      }
      level = next;
    }
    let c = level.get(values[last]!) as C | undefined;
    if (c === undefined) {
      c = make(...values);
      level.set(values[last]!, c);
    }
    return c;
  };
}

/**
 * Increments of one labelled counter or gauge child, summed here and added when prom-client
 * collects the metric (a scrape, a cluster merge, any get()): prom-client validates and hashes
 * the label set on every call, and these run several times per connection. A child touched once
 * is exported from its first collection on, as it was when incremented at once.
 */
class PendingDelta {
  private delta = 0;
  private touched = false;
  constructor(private readonly child: { inc(value: number): void }) {}
  add(n: number): void {
    this.delta += n;
    this.touched = true;
  }
  flush(): void {
    if (!this.touched) return;
    const d = this.delta;
    this.delta = 0;
    this.touched = false;
    this.child.inc(d);
  }
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

/**
 * Which of the kernel's MPTcpExt counters (/proc/net/netstat, names as in Linux 6.18) feeds which
 * kernel health metric, under which label value. Several counters may share a label value (summed).
 */
const KERNEL_MPTCP = {
  /** A connection that started as MPTCP (or was asked to) and went on as plain TCP, by why. */
  fallbacks: {
    MPCapableFallbackACK: 'no-mp-capable-ack',
    MPCapableFallbackSYNACK: 'no-mp-capable-synack',
    MPCapableDataFallback: 'no-mp-capable-data',
    MPFallbackTokenInit: 'token-init',
    DssFallback: 'dss',
    DSSCorruptionFallback: 'dss-corruption',
    InfiniteMapRx: 'mp-fail',
    MD5SigFallback: 'md5sig',
    SimultConnectFallback: 'simultaneous-connect',
  },
  /** MP_JOIN subflows, by stage: SYNs received, final ACKs received (established), SYNs sent. */
  joins: { MPJoinSynRx: 'syn-rx', MPJoinAckRx: 'ack-rx', MPJoinSynTx: 'syn-tx' },
  /** MP_JOINs refused, by why ('limit': the path manager's subflow limit). */
  joinRejections: {
    MPJoinRejected: 'limit',
    MPJoinNoTokenFound: 'no-token',
    MPJoinSynAckHMacFailure: 'hmac',
    MPJoinAckHMacFailure: 'hmac',
    MismatchPortSynRx: 'port-mismatch',
    MismatchPortAckRx: 'port-mismatch',
    MPJoinSynTxCreatSkErr: 'create-error',
    MPJoinSynTxBindErr: 'bind-error',
    MPJoinSynTxConnectErr: 'connect-error',
  },
  addAddr: { AddAddr: 'rx', AddAddrDrop: 'rx-dropped', AddAddrTx: 'tx', AddAddrTxDrop: 'tx-dropped' },
  /** Blackhole detection (MPTCP SYNs lost on the way) and the SYNs then sent without MPTCP. */
  blackhole: { Blackhole: 'detected', MPCapableSYNTXDisabled: 'syn-without-mptcp' },
  /** Subflows marked stale after losses (net.mptcp.stale_loss_cnt) and recovered. */
  stale: { SubflowStale: 'stale', SubflowRecover: 'recovered' },
} as const satisfies Record<string, Record<string, string>>;

const KERNEL_LABEL: Record<keyof typeof KERNEL_MPTCP, string> = { fallbacks: 'cause', joins: 'stage', joinRejections: 'cause', addAddr: 'event', blackhole: 'event', stale: 'event' };

/**
 * Observations of one histogram, kept here and handed to prom-client in one run when it collects
 * the metric or the buffer fills: one observe per new connection cost ~3 µs amid the rest of the
 * connection's work, a fraction of that in a run.
 */
class PendingObservations {
  private readonly values = new Float64Array(1024);
  private count = 0;
  constructor(private readonly histogram: { observe(value: number): void }) {}
  add(v: number): void {
    // As prom-client's own check, at the call that brought the value.
    if (!Number.isFinite(v)) throw new TypeError(`Value is not a valid number: ${v}`);
    this.values[this.count++] = v;
    if (this.count === this.values.length) this.flush();
  }
  flush(): void {
    const n = this.count;
    this.count = 0;
    for (let i = 0; i < n; i++) this.histogram.observe(this.values[i]!);
  }
}

export class ProxyMetrics {
  readonly registry = new client.Registry();
  /** Every PendingDelta and PendingObservations made here; each deferred metric's collect flushes them all (a few dozen at most). */
  private readonly pending: { flush(): void }[] = [];
  private readonly exportedPathBytes = new Map<string, number>();

  readonly connectionsActive = new client.Gauge({ name: 'mptcp_proxy_connections_active', help: 'Client connections open now', labelNames: ['listener', 'mptcp'] as const, registers: [this.registry], collect: () => this.flushPending() });
  readonly connectionsTotal = new client.Counter({ name: 'mptcp_proxy_connections_total', help: 'Client connections finished, by outcome', labelNames: ['listener', 'mptcp', 'result'] as const, registers: [this.registry], collect: () => this.flushPending() });
  readonly subflowsActive = new client.Gauge({ name: 'mptcp_proxy_subflows_active', help: 'MPTCP subflows established now, by client-facing interface', labelNames: ['interface'] as const, registers: [this.registry], collect: () => this.flushPending() });
  readonly subflowsTotal = new client.Counter({ name: 'mptcp_proxy_subflows_total', help: 'MPTCP subflows established, by client-facing interface', labelNames: ['interface'] as const, registers: [this.registry], collect: () => this.flushPending() });
  readonly pathBytes: client.Counter<'interface' | 'direction'> = new client.Counter({
    name: 'mptcp_proxy_path_bytes_total',
    help: 'Bytes carried by subflows on each client-facing interface (rx/tx seen from the proxy), closed subflows included',
    labelNames: ['interface', 'direction'] as const,
    registers: [this.registry],
    collect: () => this.syncPathBytes(),
  });
  readonly relayBytes = new client.Counter({ name: 'mptcp_proxy_relay_bytes_total', help: 'Bytes relayed between clients and destinations (up = client to destination)', labelNames: ['direction'] as const, registers: [this.registry], collect: () => this.flushPending() });
  readonly conversion = new client.Histogram({ name: 'mptcp_proxy_conversion_seconds', help: 'Client accepted to upstream connected', buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry], collect: () => this.flushPending() });
  readonly subflowRtt = new client.Histogram({ name: 'mptcp_proxy_subflow_rtt_seconds', help: 'Smoothed RTT of subflows when they close, by interface', labelNames: ['interface'] as const, buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], registers: [this.registry] });
  /** Effective MSS (tcp_info snd_mss) per path: shows a lowered MTU or the MSS clamp (src/tuning) at work. */
  readonly subflowMss = new client.Histogram({ name: 'mptcp_proxy_subflow_mss_bytes', help: 'Effective MSS of subflows when they close, by interface', labelNames: ['interface'] as const, buckets: [536, 960, 1200, 1380, 1448, 1460, 4000, 8948, 9000, 65483], registers: [this.registry] });
  readonly errors = new client.Counter({ name: 'mptcp_proxy_errors_total', help: 'Refusals and failures by stable error code', labelNames: ['code'] as const, registers: [this.registry] });
  readonly authFailures = new client.Counter({ name: 'mptcp_proxy_auth_failures_total', help: 'Password checks refused, by reason (throttled: the client failed recently and has a check in flight or too many; busy: the hash queue was full)', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly authHashes = new client.Counter({ name: 'mptcp_proxy_auth_hashes_total', help: 'Password hashes computed (checks not answered from the credential cache), by lane (idle: at the lowest CPU priority, for clients that failed recently)', labelNames: ['lane'] as const, registers: [this.registry] });
  readonly fastPathTotal = new client.Counter({ name: 'mptcp_proxy_fast_path_total', help: 'Connections the native fast path accepted, by who served them (native, or handoff to the TS front ends)', labelNames: ['path'] as const, registers: [this.registry], collect: () => this.flushPending() });
  /** mptcp_proxy_fast_path_total's children, for the fast path (src/fastpath) to count into. */
  readonly fastPathServed = this.pendingChildren((path: 'native' | 'handoff') => this.fastPathTotal.labels(path));
  readonly lateWorkerScrapes = new client.Counter({ name: 'mptcp_proxy_metrics_late_workers_total', help: 'Workers that did not answer a /metrics scrape within 2 s (their previous figures were served)', registers: [this.registry] });
  /** Parent proxies (src/upstream): one series per configured parent, removed when a reload drops it. */
  // Every worker of a cluster probes on its own: merged, a parent is up when all of them see it up.
  readonly parentUp = new client.Gauge({ name: 'mptcp_proxy_parent_up', help: 'Parent proxy health from probes and connects (1 up, 0 down)', labelNames: ['parent'] as const, registers: [this.registry], aggregator: 'min' });
  readonly parentLatency = new client.Gauge({ name: 'mptcp_proxy_parent_latency_seconds', help: 'Smoothed TCP connect time to the parent proxy (the selector tries the lowest first)', labelNames: ['parent'] as const, registers: [this.registry], aggregator: 'average' });
  readonly parentConnections = new client.Counter({ name: 'mptcp_proxy_parent_connections_total', help: 'Tunnels and forwarded requests set up through the parent proxy', labelNames: ['parent'] as const, registers: [this.registry] });
  readonly parentFailures = new client.Counter({ name: 'mptcp_proxy_parent_failures_total', help: 'Probes of the parent proxy that failed, and connects through it that failed (no connection, or a broken or refused handshake)', labelNames: ['parent', 'stage'] as const, registers: [this.registry] });
  readonly authCacheHits = new client.Counter({ name: 'mptcp_proxy_auth_cache_hits_total', help: 'Password checks answered from the credential cache (access.credentialsTtlMs)', registers: [this.registry] });

  /** The kernel's MPTCP counters of the proxy's namespace (KERNEL_MPTCP), read at each scrape. */
  private readonly kernelCounters = {
    // Registered first of the kernel metrics, its collect reads the kernel for all of them.
    fallbacks: this.kernelCounter('mptcp_proxy_kernel_fallbacks_total', 'MPTCP connections that fell back to plain TCP, by cause (kernel counters)', KERNEL_LABEL.fallbacks, () => this.syncKernel?.()),
    joins: this.kernelCounter('mptcp_proxy_kernel_joins_total', 'MP_JOIN subflows by stage: syn-rx attempts, ack-rx established, syn-tx sent (kernel counters)', KERNEL_LABEL.joins),
    joinRejections: this.kernelCounter('mptcp_proxy_kernel_join_rejections_total', 'MP_JOINs refused, by cause (limit = the path manager subflow limit; kernel counters)', KERNEL_LABEL.joinRejections),
    addAddr: this.kernelCounter('mptcp_proxy_kernel_add_addr_total', 'ADD_ADDR announcements received/sent, and dropped (kernel counters)', KERNEL_LABEL.addAddr),
    blackhole: this.kernelCounter('mptcp_proxy_kernel_blackhole_total', 'MPTCP blackholes detected, and SYNs sent without MPTCP while active MPTCP was off (kernel counters)', KERNEL_LABEL.blackhole),
    stale: this.kernelCounter('mptcp_proxy_kernel_subflow_stale_total', 'Subflows marked stale after losses, and recovered (kernel counters)', KERNEL_LABEL.stale),
  };
  readonly blackholeTimeout = new client.Gauge({ name: 'mptcp_proxy_kernel_blackhole_timeout_seconds', help: 'net.mptcp.blackhole_timeout: how long active MPTCP stays off after a blackhole (0: detection off)', registers: [this.registry] });
  readonly blackholeActive = new client.Gauge({ name: 'mptcp_proxy_kernel_blackhole_active', help: '1 while within blackhole_timeout of the last blackhole seen (at a scrape): outgoing MPTCP is off', registers: [this.registry] });
  private blackholeSeenAt: number | null = null;

  /**
   * `instance` goes on every metric, process_* and nodejs_* included (the registry's default
   * labels): instances behind one load balancer stay apart when their series are summed.
   */
  constructor(instance: string = DEFAULTS.instance) {
    this.registry.setDefaultLabels({ instance });
    client.collectDefaultMetrics({ register: this.registry });
  }

  private flushPending(): void {
    for (const p of this.pending) p.flush();
  }

  /** labelledChildren of PendingDelta: the metric's collect must call flushPending. */
  private pendingChildren<A extends string[]>(child: (...values: A) => { inc(value: number): void }): (...values: A) => PendingDelta {
    return labelledChildren((...values: A) => {
      const p = new PendingDelta(child(...values));
      this.pending.push(p);
      return p;
    });
  }

  private kernelCounter(name: string, help: string, label: string, collect?: () => void): client.Counter<string> {
    return new client.Counter({ name, help, labelNames: [label], registers: [this.registry], ...(collect ? { collect } : {}) });
  }

  /**
   * Export the kernel's MPTCP counters of this namespace; only one process per namespace does
   * (the subflow plane's), so a cluster's merged metrics count them once.
   */
  observeKernelMptcp(read: () => Map<string, number> = readMptcpCounters, sysctl: (key: string) => string | null = readSysctl): void {
    const exported = new Map<string, number>();
    const sync = (): void => {
      const now = read();
      for (const [group, names] of Object.entries(KERNEL_MPTCP) as [keyof typeof KERNEL_MPTCP, Record<string, string>][]) {
        const sums = new Map<string, number>();
        for (const [counter, value] of Object.entries(names)) {
          const n = now.get(counter);
          if (n !== undefined) sums.set(value, (sums.get(value) ?? 0) + n);
        }
        const metric = this.kernelCounters[group];
        const label = KERNEL_LABEL[group];
        for (const [value, total] of sums) {
          const key = `${group}|${value}`;
          const seen = exported.get(key);
          // The first reading is the baseline of the namespace's life so far; later ones add growth.
          if (seen === undefined) metric.inc({ [label]: value }, total);
          else if (total > seen) metric.inc({ [label]: value }, total - seen);
          if (group === 'blackhole' && value === 'detected' && seen !== undefined && total > seen) this.blackholeSeenAt = Date.now();
          exported.set(key, Math.max(total, seen ?? 0));
        }
      }
      const timeout = Number(sysctl('net.mptcp.blackhole_timeout') ?? 0);
      this.blackholeTimeout.set(timeout);
      this.blackholeActive.set(this.blackholeSeenAt !== null && timeout > 0 && Date.now() - this.blackholeSeenAt < timeout * 1000 ? 1 : 0);
    };
    this.syncKernel = sync;
  }

  private syncKernel: (() => void) | null = null;

  /** Connection metrics from a connection plane's events. */
  observeConnections(events: ProxyEvents): void {
    // prom-client hashes a label object on every call: at thousands of connections a second the
    // labelled children are looked up once per label set and kept (the label sets are bounded).
    const active = this.pendingChildren((listener: string, mptcp: string) => this.connectionsActive.labels(listener, mptcp));
    const total = this.pendingChildren((listener: string, mptcp: string, result: string) => this.connectionsTotal.labels(listener, mptcp, result));
    const errors = labelledChildren((code: string) => this.errors.labels(code));
    const conversion = new PendingObservations(this.conversion);
    this.pending.push(conversion);
    const relay = this.pendingChildren((direction: string) => this.relayBytes.labels(direction));
    const up = relay('up');
    const down = relay('down');
    events.on('connection-open', (c) => active(c.listener, mptcpLabel(c.mptcp)).add(1));
    events.on('connection-close', (c) => {
      const mptcp = mptcpLabel(c.mptcp);
      active(c.listener, mptcp).add(-1);
      total(c.listener, mptcp, c.resultCode).add(1);
    });
    events.on('upstream-connected', (c) => {
      const s = c.conversionSeconds;
      if (s !== null) conversion.add(s);
    });
    // Running relays that report progress are counted as they go; their relay-done adds the rest.
    const counted = new WeakMap<object, { up: number; down: number }>();
    events.on('relay-progress', (c, u, d) => {
      const seen = counted.get(c) ?? { up: 0, down: 0 };
      if (u > seen.up) up.add(u - seen.up);
      if (d > seen.down) down.add(d - seen.down);
      counted.set(c, { up: Math.max(u, seen.up), down: Math.max(d, seen.down) });
    });
    events.on('relay-done', (c, r) => {
      const seen = counted.get(c);
      counted.delete(c);
      up.add(Math.max(0, r.bytesUp - (seen?.up ?? 0)));
      down.add(Math.max(0, r.bytesDown - (seen?.down ?? 0)));
    });
    events.on('proxy-error', (e) => errors(e.code).inc());
    this.observeParents(events);
  }

  private observeParents(events: ProxyEvents): void {
    events.on('parent-health', (parent, state, latencyMs) => {
      if (state === 'removed') {
        for (const m of [this.parentUp, this.parentLatency, this.parentConnections]) m.remove(parent);
        for (const stage of ['probe', 'connect']) this.parentFailures.remove(parent, stage);
        return;
      }
      this.parentUp.labels(parent).set(state === 'up' ? 1 : 0);
      if (latencyMs !== null) this.parentLatency.labels(parent).set(latencyMs / 1000);
    });
    events.on('parent-check', (parent, stage, ok) => {
      if (!ok) this.parentFailures.labels(parent, stage).inc();
      else if (stage === 'connect') this.parentConnections.labels(parent).inc();
    });
  }

  /** Password check metrics from the auth guard (it outlives reloads, so this is called once). */
  observeAuth(guard: AuthGuard): void {
    const failures = new Map(AUTH_FAILURE_REASONS.map((r) => [r as string, this.authFailures.labels(r)]));
    for (const c of failures.values()) c.inc(0); // every reason exported from the start, at 0
    guard.on('hash', (lane) => this.authHashes.inc({ lane }));
    guard.on('outcome', (o) => {
      if (o === 'cached') this.authCacheHits.inc();
      else failures.get(o)?.inc();
    });
  }

  /** Subflow metrics from the registry; path byte totals are read from it at each collection. */
  observeSubflows(subflows: SubflowRegistry): void {
    const active = this.pendingChildren((iface: string) => this.subflowsActive.labels(iface));
    const total = this.pendingChildren((iface: string) => this.subflowsTotal.labels(iface));
    const rtt = labelledChildren((iface: string) => this.subflowRtt.labels(iface));
    const mss = labelledChildren((iface: string) => this.subflowMss.labels(iface));
    subflows.on('subflow-up', (s) => {
      const iface = s.interface ?? UNKNOWN_IF;
      active(iface).add(1);
      total(iface).add(1);
    });
    subflows.on('subflow-down', (s) => {
      const iface = s.interface ?? UNKNOWN_IF;
      active(iface).add(-1);
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

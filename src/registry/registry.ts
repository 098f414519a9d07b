/**
 * The one subflow registry: MPTCP connections → subflows, fed by the kernel's view (netlink
 * events + per-socket MPTCP getsockopts) and by the pcap sniffer. Where both see a subflow the
 * kernel's data wins; in router mode the sniffer is the only source. Emits subflow-up,
 * subflow-down and priority-change for steering and metrics, and keeps per-interface byte
 * totals that survive subflow close.
 */
import { EventEmitter } from 'node:events';
import type { ClientView } from '../core/connection';
import { POLICY_CLIENT_FIELDS } from '../config/steering';
import type { HostPort } from '../core/address';
import { subflowKey } from '../core/subflow-id';

export type SubflowKind = 'initial' | 'join';
export type Source = 'kernel' | 'sniffer';

export interface Subflow {
  readonly key: string;
  readonly token: string;
  /** Proxy-side (or server-side, in router mode) address. */
  readonly local: HostPort;
  /** Client-side address. */
  readonly remote: HostPort;
  interface: string | null;
  kind: SubflowKind;
  backup: boolean;
  state: 'established' | 'closed';
  /** ms since epoch. */
  readonly since: number;
  closedAt: number | null;
  /** Bytes sent to / received from the client on this subflow. */
  bytesTx: number;
  bytesRx: number;
  rttUs: number | null;
  mss: number | null;
  /** From the kernel's tcp_info (null until sampled): the steering modes' loss and failure signals. */
  retransSegs: number | null;
  segsOut: number | null;
  backoff: number | null;
  stalledMs: number | null;
  /** When the kernel's counters were last read (ms since epoch), null before. */
  sampledAt: number | null;
  source: Source;
  /** Why it closed, when the kernel said (SUB_CLOSED): the subflow's socket error and the peer's MP_TCPRST reason. */
  closeError: number | null;
  resetReason: number | null;
}

/** What the kernel said about a subflow's end. */
export interface SubflowEnd {
  error?: number;
  resetReason?: number;
}

export interface MptcpConnectionRecord {
  readonly token: string;
  readonly since: number;
  client: ClientView | null;
  readonly subflows: Map<string, Subflow>;
}

/** A subflow with the connection record it belongs to, as the registry's events carry them. */
export type SubflowOf = readonly [subflow: Subflow, connection: MptcpConnectionRecord];

export interface SubflowEventMap {
  'subflow-up': [subflow: Subflow, connection: MptcpConnectionRecord];
  'subflow-down': [subflow: Subflow, connection: MptcpConnectionRecord];
  'priority-change': [subflow: Subflow, connection: MptcpConnectionRecord];
  'connection-closed': [connection: MptcpConnectionRecord];
  /** What is known of the client behind a connection changed (user, destination, ...). */
  'client-changed': [connection: MptcpConnectionRecord];
}

export interface SubflowSighting {
  token: string;
  local: HostPort;
  remote: HostPort;
  interface: string | null;
  kind: SubflowKind;
  backup: boolean;
  source: Source;
}

export interface SubflowCounters {
  bytesTx: number;
  bytesRx: number;
  rttUs?: number | null;
  mss?: number | null;
  retransSegs?: number;
  segsOut?: number;
  backoff?: number;
  stalledMs?: number;
}

const keyOf = (local: HostPort, remote: HostPort): string => subflowKey(local.host, local.port, remote.host, remote.port);

export class SubflowRegistry extends EventEmitter<SubflowEventMap> {
  readonly connections = new Map<string, MptcpConnectionRecord>();
  /** Per interface, bytes carried by every subflow ever seen on it (closed ones included). */
  readonly pathBytes = new Map<string, { rx: number; tx: number }>();

  private record(token: string): MptcpConnectionRecord {
    let c = this.connections.get(token);
    if (!c) {
      c = { token, since: Date.now(), client: null, subflows: new Map() };
      this.connections.set(token, c);
    }
    return c;
  }

  /**
   * Link the proxy's client connection to its MPTCP token (from MPTCP_INFO), or refresh what is
   * known of it. Emits client-changed (steering re-evaluates) when a fact a policy can match on
   * changed: the fields come from the policy schema, so a new match key is never missed.
   */
  attachClient(token: string, client: ClientView): void {
    const rec = this.record(token);
    const before = rec.client;
    rec.client = client;
    if (!before || POLICY_CLIENT_FIELDS.some((f) => before[f] !== client[f])) this.emit('client-changed', rec);
  }

  subflowUp(s: SubflowSighting): Subflow {
    const c = this.record(s.token);
    const key = keyOf(s.local, s.remote);
    const known = c.subflows.get(key);
    if (known && known.state === 'established') {
      // The kernel's view wins; a sniffer sighting only fills what the kernel did not say.
      if (s.source === 'kernel' || known.source === 'sniffer') {
        known.kind = s.kind;
        known.backup = s.backup;
        known.interface = s.interface ?? known.interface;
        known.source = s.source;
      } else known.interface ??= s.interface;
      return known;
    }
    const sub: Subflow = {
      key,
      token: s.token,
      local: s.local,
      remote: s.remote,
      interface: s.interface,
      kind: s.kind,
      backup: s.backup,
      state: 'established',
      since: Date.now(),
      closedAt: null,
      bytesTx: 0,
      bytesRx: 0,
      rttUs: null,
      mss: null,
      retransSegs: null,
      segsOut: null,
      backoff: null,
      stalledMs: null,
      sampledAt: null,
      source: s.source,
      closeError: null,
      resetReason: null,
    };
    c.subflows.set(key, sub);
    this.emit('subflow-up', sub, c);
    return sub;
  }

  /** Update a subflow's counters; growth is added to its interface's totals. */
  updateCounters(token: string, local: HostPort, remote: HostPort, n: SubflowCounters, source: Source): void {
    const sub = this.connections.get(token)?.subflows.get(keyOf(local, remote));
    if (!sub || (source === 'sniffer' && sub.source === 'kernel')) return;
    const dTx = Math.max(0, n.bytesTx - sub.bytesTx);
    const dRx = Math.max(0, n.bytesRx - sub.bytesRx);
    sub.bytesTx = Math.max(sub.bytesTx, n.bytesTx);
    sub.bytesRx = Math.max(sub.bytesRx, n.bytesRx);
    if (n.rttUs !== undefined) sub.rttUs = n.rttUs;
    if (n.mss !== undefined) sub.mss = n.mss;
    if (n.retransSegs !== undefined) sub.retransSegs = n.retransSegs;
    if (n.segsOut !== undefined) sub.segsOut = n.segsOut;
    if (n.backoff !== undefined) sub.backoff = n.backoff;
    if (n.stalledMs !== undefined) sub.stalledMs = n.stalledMs;
    if (source === 'kernel') sub.sampledAt = Date.now();
    if (sub.interface && (dTx > 0 || dRx > 0)) {
      const p = this.pathBytes.get(sub.interface) ?? { rx: 0, tx: 0 };
      p.tx += dTx;
      p.rx += dRx;
      this.pathBytes.set(sub.interface, p);
    }
  }

  priorityChanged(token: string, local: HostPort, remote: HostPort, backup: boolean): void {
    const c = this.connections.get(token);
    const sub = c?.subflows.get(keyOf(local, remote));
    if (!c || !sub || sub.backup === backup) return;
    sub.backup = backup;
    this.emit('priority-change', sub, c);
  }

  subflowDown(token: string, local: HostPort, remote: HostPort, end: SubflowEnd = {}): void {
    const c = this.connections.get(token);
    const sub = c?.subflows.get(keyOf(local, remote));
    if (!c || !sub || sub.state === 'closed') return;
    // The kernel sends 0 for "no error"; keep null for "not said".
    sub.closeError = end.error || null;
    sub.resetReason = end.resetReason ?? null;
    this.close(sub, c);
  }

  /** The whole connection closed: the kernel sends no per-subflow close then, so close them here. */
  connectionClosed(token: string): void {
    const c = this.connections.get(token);
    if (!c) return;
    for (const sub of c.subflows.values()) if (sub.state === 'established') this.close(sub, c);
    this.connections.delete(token);
    this.emit('connection-closed', c);
  }

  private close(sub: Subflow, c: MptcpConnectionRecord): void {
    sub.state = 'closed';
    sub.closedAt = Date.now();
    this.emit('subflow-down', sub, c);
  }

  activeSubflows(): SubflowOf[] {
    const out: SubflowOf[] = [];
    for (const c of this.connections.values()) for (const s of c.subflows.values()) if (s.state === 'established') out.push([s, c]);
    return out;
  }
}

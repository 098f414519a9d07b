/**
 * Per-connection buffer tuning: MPTCP needs buffer room for reordering across paths. Sizes each
 * client socket's receive and send buffers from what its subflows measure (delivery rate and
 * RTT, MPTCP_TCPINFO through the kernel view), within the configured bounds; see ./buffers for
 * when it acts at all.
 *
 * Event driven and bounded: a connection is sampled `SETTLE_MS` after it is first seen and after
 * each subflow comes up (as the subflow registry sees it, in the process that holds the registry;
 * bursts coalesce into one sample), and again every `intervalMs` only while it keeps moving bulk
 * data or gaining subflows, for at most MAX_WATCHED connections at once. Nothing walks all
 * connections on a timer.
 */
import type client from 'prom-client';
import type { ClientConnection } from '../core/connection';
import type { ProxyEvents } from '../core/events';
import { tokenHex } from '../core/subflow-id';
import type { Logger } from '../log/logger';
import { bufferTunerMetrics, type BufferTunerMetrics } from '../metrics/metrics';
import type { SubflowSnapshot } from '../mptcp/kernel-view';
import type { BufferDirection } from '../sys/socket';
import { decideBuffer, requiredBufferBytes, subflowRate, type BufferPolicy, type SubflowRate } from './buffers';

/** After a subflow comes up its delivery rate needs a few RTTs of data to mean anything. */
export const SETTLE_MS = 1_000;
/** A connection keeps being re-sampled only while it moved at least this much since the last sample. */
export const BULK_BYTES = 1_000_000;
/** Upper bound on connections with a pending re-sample: bounded work whatever the load. */
export const MAX_WATCHED = 1_024;

export interface TunerPolicy extends BufferPolicy {
  /** Re-sample period of bulk connections, ms; 0 = only when subflows come up. */
  intervalMs: number;
}

/** The kernel and socket calls the tuner makes, injectable for tests. */
export interface TunerPorts {
  snapshot(fd: number): SubflowSnapshot[];
  /** Lock one buffer; returns the size the kernel applied (kernel bytes). Throws on failure. */
  setBuffer(fd: number, dir: BufferDirection, bytes: number): number;
  getBuffer(fd: number, dir: BufferDirection): number | null;
  /** tcp_rmem / tcp_wmem max (kernel bytes); null when unreadable. */
  systemMax(dir: BufferDirection): number | null;
  /** Subscribe to the registry's subflow-up, by token text; a no-op where the registry is in another process (workers). */
  onSubflowUp(fn: (token: string) => void): void;
}

/** What /connections shows per connection. Sizes are kernel bytes as getsockopt reads them. */
export interface ConnectionBuffers {
  mode: BufferPolicy['mode'];
  /** Last computed need, payload bytes (2 × Σ rate × max RTT); null before the first sample. */
  needBytes: number | null;
  rcvBytes: number | null;
  sndBytes: number | null;
  /** True when this module set the size (kernel autotuning is then off for that buffer). */
  rcvLocked: boolean;
  sndLocked: boolean;
  reason: string;
  samples: number;
}

interface State {
  conn: ClientConnection;
  /** tokenHex of the connection's token, once known. */
  token: string | null;
  timer: NodeJS.Timeout | null;
  /** Kernel bytes this module set; null = untouched. */
  set: Record<BufferDirection, number | null>;
  need: number | null;
  reason: string;
  samples: number;
  /** Σ bytes acked + received over the subflows, and their count, at the last sample. */
  lastBytes: number;
  lastSubflows: number;
  watched: boolean;
}

const DIRS: readonly BufferDirection[] = ['rcv', 'snd'];

export class BufferTuner {
  private readonly byId = new Map<number, State>();
  private readonly byToken = new Map<string, State>();
  private watched = 0;
  private stopped = false;
  private readonly m: BufferTunerMetrics;

  constructor(
    private policy: TunerPolicy,
    private readonly ports: TunerPorts,
    events: ProxyEvents,
    private readonly log: Logger,
    metrics: client.Registry,
  ) {
    this.m = bufferTunerMetrics(metrics);
    events.on('connection-open', (c) => this.onOpen(c));
    events.on('connection-sample', (c) => this.onSample(c));
    events.on('connection-close', (c) => this.forget(c));
    ports.onSubflowUp((token) => {
      const s = this.byToken.get(token);
      if (s) this.schedule(s, SETTLE_MS);
    });
  }

  /** New bounds and mode apply to connections from now on; locked sizes stay as they are. */
  reload(policy: TunerPolicy): void {
    this.policy = policy;
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.byId.values()) if (s.timer) clearTimeout(s.timer);
    this.byId.clear();
    this.byToken.clear();
    this.watched = 0;
  }

  status(id: number): ConnectionBuffers | null {
    const s = this.byId.get(id);
    if (!s) return null;
    const fd = s.conn.closed ? -1 : s.conn.fd;
    return {
      mode: this.policy.mode,
      needBytes: s.need,
      rcvBytes: fd >= 0 ? this.ports.getBuffer(fd, 'rcv') : s.set.rcv,
      sndBytes: fd >= 0 ? this.ports.getBuffer(fd, 'snd') : s.set.snd,
      rcvLocked: s.set.rcv !== null,
      sndLocked: s.set.snd !== null,
      reason: s.reason,
      samples: s.samples,
    };
  }

  private state(conn: ClientConnection): State | null {
    if (this.stopped || this.policy.mode === 'off' || conn.fd < 0 || conn.closed) return null;
    let s = this.byId.get(conn.id);
    if (!s) {
      s = { conn, token: null, timer: null, set: { rcv: null, snd: null }, need: null, reason: 'not sampled yet', samples: 0, lastBytes: 0, lastSubflows: 0, watched: false };
      this.byId.set(conn.id, s);
    }
    if (s.token === null && conn.token !== null) {
      s.token = tokenHex(conn.token);
      this.byToken.set(s.token, s);
    }
    return s;
  }

  /**
   * fixed: every client socket, MPTCP or not, at accept (joins inherit it from the msk).
   * auto: an MPTCP connection is first measured once its subflows had time to come up; workers
   * have no subflow registry, so this settle timer is their only sight before a status read or close.
   */
  private onOpen(conn: ClientConnection): void {
    if (this.policy.mode === 'fixed') {
      const s = this.state(conn);
      if (s) this.decide(s, 0);
    } else if (this.policy.mode === 'auto' && conn.mptcp === true) {
      const s = this.state(conn);
      if (s) this.schedule(s, SETTLE_MS);
    }
  }

  /** Status reads and closes sample too: a connection not seen at open (token unknown then) starts here. */
  private onSample(conn: ClientConnection): void {
    if (this.policy.mode !== 'auto' || conn.mptcp !== true) return;
    const known = this.byId.has(conn.id);
    const s = this.state(conn);
    if (s && !known) this.schedule(s, SETTLE_MS);
  }

  private forget(conn: ClientConnection): void {
    const s = this.byId.get(conn.id);
    if (!s) return;
    this.unwatch(s);
    if (s.timer) clearTimeout(s.timer);
    this.byId.delete(conn.id);
    if (s.token !== null && this.byToken.get(s.token) === s) this.byToken.delete(s.token);
  }

  /** One pending sample per connection; an earlier request wins over a later periodic one. */
  private schedule(s: State, delayMs: number): void {
    if (this.stopped || this.policy.mode !== 'auto') return;
    if (s.timer) clearTimeout(s.timer);
    s.timer = setTimeout(() => {
      s.timer = null;
      this.sample(s);
    }, delayMs);
    s.timer.unref();
  }

  private sample(s: State): void {
    if (s.conn.closed || s.conn.fd < 0) return;
    const subs = this.ports.snapshot(s.conn.fd);
    const rates: SubflowRate[] = [];
    let bytes = 0;
    for (const x of subs) {
      if (!x.tcp) continue;
      rates.push(subflowRate({ deliveryRate: Number(x.tcp.deliveryRate), sndCwnd: x.tcp.sndCwnd, sndMss: x.tcp.sndMss, rttUs: x.tcp.rttUs }));
      bytes += Number(x.tcp.bytesAcked) + Number(x.tcp.bytesReceived);
    }
    s.samples++;
    // The connection's "most subflows at once" (its log line) gets this sighting too.
    s.conn.subflows = Math.max(s.conn.subflows, subs.length);
    this.decide(s, requiredBufferBytes(rates));
    const moved = bytes - s.lastBytes;
    const grew = rates.length > s.lastSubflows;
    s.lastBytes = bytes;
    s.lastSubflows = rates.length;
    // Keep watching only connections that are busy or still gaining paths; a quiet one is sampled
    // again when a subflow comes up (netlink) or the front end samples it.
    if (this.policy.intervalMs > 0 && (moved >= BULK_BYTES || grew) && (s.watched || this.watched < MAX_WATCHED)) {
      if (!s.watched) {
        s.watched = true;
        this.watched++;
      }
      this.schedule(s, this.policy.intervalMs);
    } else this.unwatch(s);
  }

  private unwatch(s: State): void {
    if (!s.watched) return;
    s.watched = false;
    this.watched--;
  }

  private decide(s: State, need: number): void {
    s.need = this.policy.mode === 'auto' ? need : s.need;
    const reasons: string[] = [];
    for (const dir of DIRS) {
      const d = decideBuffer(need, this.policy, this.ports.systemMax(dir), s.set[dir]);
      this.m.decisions.inc({ direction: dir, decision: d.action === 'set' ? 'set' : d.reason });
      reasons.push(`${dir}: ${d.reason}`);
      if (d.action !== 'set') continue;
      try {
        const got = this.ports.setBuffer(s.conn.fd, dir, d.bytes);
        // Record what we asked for: the fixed-mode check compares against it; status reads the kernel.
        s.set[dir] = d.bytes;
        this.m.applied.observe({ direction: dir }, got);
      } catch (e) {
        // The socket may have closed under us; nothing to tune then.
        this.log.debug('buffer tuning: setsockopt failed', { connection: s.conn.id, direction: dir, error: (e as Error).message });
      }
    }
    s.reason = reasons.join(', ');
  }
}

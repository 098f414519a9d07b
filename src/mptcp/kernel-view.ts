/**
 * The kernel's own view of MPTCP connections in this network namespace: the `mptcp_pm`
 * generic netlink events as typed, timestamped events, a small per-token table built from them,
 * and on-demand per-socket subflow snapshots (MPTCP_SUBFLOW_ADDRS + MPTCP_TCPINFO).
 *
 * Event driven only: nothing here walks the connections on a timer. The kernel sends no
 * SUB_CLOSED when a whole connection closes (measured on Linux 6.18), so connection-closed ends all of its
 * subflows.
 */
import { EventEmitter } from 'node:events';
import { CodedError } from '../core/errors';
import { subflowKey } from '../core/subflow-id';
import { GenlSocket, interfaceName, type NetlinkDatagram, type NetlinkWatcher } from '../sys/netlink';
import { SUBFLOW_ADDRS_SIZE, TCP_INFO_SIZE, mptcpInfoRaw, mptcpSubflowAddrsRaw, mptcpSubflowTcpInfoRaw } from '../sys/socket';
import { encodeSockFilter, mptcpEventFilter } from './event-filter';
import { decodeMptcpIdentity } from './info';
import {
  MPTCP_PM_EV_GRP_NAME,
  MPTCP_PM_NAME,
  decodeGetFamilyReply,
  decodeMptcpEventMessage,
  decodeNlmsgs,
  encodeGetFamilyRequest,
  type AnnouncedEvent,
  type ClosedEvent,
  type ConnectionEvent,
  type ListenerEvent,
  type MptcpEventName,
  type MptcpPmEvent,
  type NetlinkDecodeError,
  type RemovedEvent,
  type SockEnd,
  type PmSubflowEvent,
} from './netlink-codec';
import { pairSubflows, type SubflowSample } from './subflow-info';

export const KernelViewErrorCode = {
  /** The netlink socket could not be opened, bound or joined. */
  Netlink: 'MPX_KV_NETLINK',
  /** The kernel has no `mptcp_pm` family or no events group (MPTCP off or too old). */
  Unavailable: 'MPX_KV_UNAVAILABLE',
} as const;
export type KernelViewErrorCode = (typeof KernelViewErrorCode)[keyof typeof KernelViewErrorCode];

export class KernelViewError extends CodedError<KernelViewErrorCode> {}

/** process.hrtime.bigint() when the reader took the datagram, and when it was emitted here. */
export interface Timing {
  receivedAt: bigint;
  emittedAt: bigint;
}
export type Timed<T> = T & Timing;
/** A subflow event with its interface name (from if_idx, when the kernel sent one). */
export type SubflowView = Timed<PmSubflowEvent & { ifName: string | null }>;

export interface KernelViewEventMap {
  'connection-created': [Timed<ConnectionEvent>];
  'connection-established': [Timed<ConnectionEvent>];
  'connection-closed': [Timed<ClosedEvent>];
  'subflow-established': [SubflowView];
  'subflow-closed': [SubflowView];
  'priority-changed': [SubflowView];
  announced: [Timed<AnnouncedEvent>];
  removed: [Timed<RemovedEvent>];
  'listener-created': [Timed<ListenerEvent>];
  'listener-closed': [Timed<ListenerEvent>];
  /** A message that did not decode; the stream goes on. */
  malformed: [NetlinkDecodeError & { receivedAt: bigint }];
  /** The socket buffer overflowed and the kernel dropped events: the table may be stale. */
  lost: [{ receivedAt: bigint }];
  /** The reader stopped; no more events until start() again. */
  failed: [Error];
}

export interface TrackedSubflow {
  local: SockEnd;
  remote: SockEnd;
  locId: number | null;
  remId: number | null;
  /** Null for the initial subflow until a priority event says otherwise. */
  backup: boolean | null;
  ifName: string | null;
}

export interface TrackedConnection {
  token: number;
  serverSide: boolean;
  local: SockEnd;
  remote: SockEnd;
  established: boolean;
  /** Keyed by subflowKey (core/subflow-id). */
  subflows: Map<string, TrackedSubflow>;
}

export interface SubflowSnapshot extends SubflowSample {
  /** From the events, when this view saw the subflow; null otherwise. */
  locId: number | null;
  remId: number | null;
  backup: boolean | null;
  ifName: string | null;
}

const keyOf = (local: SockEnd, remote: SockEnd): string => subflowKey(local.address, local.port, remote.address, remote.port);

export interface KernelViewOptions {
  /**
   * Report only connections this host accepted: CREATED/ESTABLISHED of connections it opened
   * (the proxy's own upstream MPTCP connections, local clients) are dropped in the kernel, and
   * later events of a connection the table does not hold (those, or one whose ESTABLISHED was
   * lost) are not reported either.
   */
  serverSideOnly?: boolean;
  /** Read the events on the main thread's loop (the native addon) instead of a reader worker_thread. */
  watcher?: NetlinkWatcher | null;
}

/**
 * Event types nobody may be listening to, by the view's event name: the kernel drops them while
 * no listener exists (the table itself needs ESTABLISHED, CLOSED and the subflow events).
 */
const OPTIONAL_EVENTS: readonly [keyof KernelViewEventMap, MptcpEventName][] = [
  ['connection-created', 'created'],
  ['announced', 'announced'],
  ['removed', 'removed'],
  ['listener-created', 'listener-created'],
  ['listener-closed', 'listener-closed'],
];

/** Interface names change rarely; a short cache keeps bursts of events off the kernel. */
const IFNAME_TTL_MS = 60_000;

export class KernelView extends EventEmitter<KernelViewEventMap> {
  private sock: GenlSocket | null = null;
  private starting: Promise<void> | null = null;
  private familyId = -1;
  private readonly table = new Map<number, TrackedConnection>();
  private readonly ifNames = new Map<number, { name: string | null; at: number }>();
  private readonly serverSideOnly: boolean;
  private readonly watcher: NetlinkWatcher | null;
  /** The dropped event types of the attached filter, to attach again only when they change. */
  private filtered: string | null = null;

  constructor(opts: KernelViewOptions = {}) {
    super();
    this.serverSideOnly = opts.serverSideOnly ?? false;
    this.watcher = opts.watcher ?? null;
    // Events nobody listens to are dropped in the kernel, so the filter follows the listeners.
    // ('newListener' comes before the listener is added, 'removeListener' after it is gone.)
    const untyped = this as EventEmitter;
    untyped.on('newListener', (name: string) => this.sock && this.applyFilter(this.sock, name));
    untyped.on('removeListener', () => this.sock && this.applyFilter(this.sock));
  }

  get running(): boolean {
    return this.sock !== null;
  }

  /**
   * Resolve the family, join its events group, start reading. Resolves once events flow;
   * rejects with KernelViewError. Does not keep the process alive by itself.
   */
  async start(): Promise<void> {
    if (this.sock || this.starting) return this.starting ?? undefined;
    this.starting = this.open().finally(() => (this.starting = null));
    return this.starting;
  }

  private async open(): Promise<void> {
    let sock: GenlSocket;
    try {
      sock = GenlSocket.open();
    } catch (e) {
      throw new KernelViewError(KernelViewErrorCode.Netlink, `netlink socket: ${(e as Error).message}`, { cause: e });
    }
    try {
      const seq = sock.nextSeq();
      let reply: Buffer;
      try {
        reply = sock.request(encodeGetFamilyRequest(MPTCP_PM_NAME, seq));
      } catch (e) {
        throw new KernelViewError(KernelViewErrorCode.Netlink, `CTRL_CMD_GETFAMILY: ${(e as Error).message}`, { cause: e });
      }
      const fam = decodeGetFamilyReply(reply, seq);
      if (!fam.ok) throw new KernelViewError(KernelViewErrorCode.Unavailable, `generic netlink family ${MPTCP_PM_NAME}: ${fam.error.detail}`);
      const group = fam.value.groups.get(MPTCP_PM_EV_GRP_NAME);
      if (group === undefined) throw new KernelViewError(KernelViewErrorCode.Unavailable, `${MPTCP_PM_NAME} has no ${MPTCP_PM_EV_GRP_NAME} group`);
      this.familyId = fam.value.id;
      try {
        // Before joining: no event reaches the socket unfiltered.
        this.applyFilter(sock);
      } catch (e) {
        throw new KernelViewError(KernelViewErrorCode.Netlink, `event filter: ${(e as Error).message}`, { cause: e });
      }
      try {
        sock.join(group);
      } catch (e) {
        throw new KernelViewError(KernelViewErrorCode.Netlink, `join ${MPTCP_PM_EV_GRP_NAME}: ${(e as Error).message}`, { cause: e });
      }
      this.sock = sock;
      await sock
        .startReading({
          datagram: (d) => this.onDatagram(d),
          lost: (at) => this.emit('lost', { receivedAt: at }),
          failed: (err) => {
            void this.stop();
            this.emit('failed', err);
          },
        }, this.watcher)
        .catch((e: unknown) => {
          throw new KernelViewError(KernelViewErrorCode.Netlink, `netlink reader: ${(e as Error).message}`, { cause: e });
        });
    } catch (e) {
      this.sock = null;
      await sock.close();
      throw e;
    }
  }

  /** The kernel filter for the current listeners (and `adding`, about to be added). */
  private applyFilter(sock: GenlSocket, adding?: string): void {
    const drop = new Set<MptcpEventName>();
    for (const [name, type] of OPTIONAL_EVENTS) if (name !== adding && this.listenerCount(name) === 0) drop.add(type);
    const key = [...drop].join();
    if (key === this.filtered) return;
    sock.attachFilter(encodeSockFilter(mptcpEventFilter({ familyId: this.familyId, drop, serverSideOnly: this.serverSideOnly })));
    this.filtered = key;
  }

  /** Stop reading and close the socket; the table is cleared (it would go stale). */
  async stop(): Promise<void> {
    const s = this.sock;
    this.sock = null;
    this.filtered = null;
    this.table.clear();
    if (s) await s.close();
  }

  /** What the events said about one connection, while it is open. */
  connection(token: number): TrackedConnection | undefined {
    return this.table.get(token);
  }

  get connectionCount(): number {
    return this.table.size;
  }

  /** MPTCP_INFO token of a socket; null on plain TCP, a fallback socket or a listener. */
  mptcpToken(fd: number): number | null {
    const raw = mptcpInfoRaw(fd);
    const info = raw ? decodeMptcpIdentity(raw) : null;
    return info && !info.fallback && info.token !== 0 ? info.token : null;
  }

  /**
   * Per-subflow addresses and tcp_info of one MPTCP socket, enriched with ids, backup flag and
   * interface from the events when this view saw them. Empty when the socket is not MPTCP.
   */
  snapshot(fd: number, knownToken?: number): SubflowSnapshot[] {
    let samples: SubflowSample[] | null = null;
    // A subflow joining or closing between the two getsockopts makes the counts disagree.
    for (let attempt = 0; attempt < 3 && !samples; attempt++) {
      const addrs = mptcpSubflowAddrsRaw(fd);
      const infos = mptcpSubflowTcpInfoRaw(fd);
      if (!addrs || !infos) return [];
      samples = pairSubflows(addrs, SUBFLOW_ADDRS_SIZE, infos, TCP_INFO_SIZE);
    }
    if (!samples) return [];
    // A caller that has just read MPTCP_INFO passes its token: one getsockopt less per sample.
    const token = knownToken ?? this.mptcpToken(fd);
    const conn = token === null ? undefined : this.table.get(token);
    return samples.map((s) => {
      const t = conn && s.local && s.remote ? conn.subflows.get(keyOf(s.local, s.remote)) : undefined;
      // Fields spelt out, not spread: this runs for every connection that closes.
      return { index: s.index, local: s.local, remote: s.remote, tcp: s.tcp, locId: t?.locId ?? null, remId: t?.remId ?? null, backup: t?.backup ?? null, ifName: t?.ifName ?? null };
    });
  }

  private ifName(index: number | undefined): string | null {
    if (index === undefined || index <= 0) return null;
    const now = Date.now();
    const hit = this.ifNames.get(index);
    if (hit && now - hit.at < IFNAME_TTL_MS) return hit.name;
    const name = interfaceName(index);
    this.ifNames.set(index, { name, at: now });
    return name;
  }

  private onDatagram(d: NetlinkDatagram): void {
    const { messages, error } = decodeNlmsgs(d.data);
    for (const msg of messages) {
      if (msg.type !== this.familyId) continue;
      const ev = decodeMptcpEventMessage(msg);
      if (ev.ok) this.dispatch(ev.value, d.receivedAt);
      else this.emit('malformed', { ...ev.error, receivedAt: d.receivedAt });
    }
    if (error) this.emit('malformed', { ...error, receivedAt: d.receivedAt });
  }

  private dispatch(ev: MptcpPmEvent, receivedAt: bigint): void {
    // The decoded event is this call's own, so it becomes the emitted one with the timing added
    // in place: a spread into a new object took V8's slow path, twice per connection.
    const timed = <T extends MptcpPmEvent>(e: T): Timed<T> => {
      const t = e as Timed<T>;
      t.receivedAt = receivedAt;
      t.emittedAt = process.hrtime.bigint();
      return t;
    };
    switch (ev.type) {
      case 'created':
      case 'established': {
        this.track(ev);
        const name = ev.type === 'created' ? 'connection-created' : 'connection-established';
        // Several of these per new connection: no event object for an event nobody listens to.
        if (this.listenerCount(name) > 0) this.emit(name, timed(ev));
        return;
      }
      case 'closed':
        // Without its ESTABLISHED (dropped in the kernel) it is a connection this host opened.
        if (!this.table.delete(ev.token) && this.serverSideOnly) return;
        if (this.listenerCount('connection-closed') > 0) this.emit('connection-closed', timed(ev));
        return;
      case 'sub-established':
      case 'sub-closed':
      case 'sub-priority': {
        if (this.serverSideOnly && !this.table.has(ev.token)) return;
        const named = ev as PmSubflowEvent & { ifName: string | null };
        named.ifName = this.ifName(ev.ifIndex);
        const view: SubflowView = timed(named);
        this.trackSubflow(view);
        this.emit(ev.type === 'sub-established' ? 'subflow-established' : ev.type === 'sub-closed' ? 'subflow-closed' : 'priority-changed', view);
        return;
      }
      case 'announced':
        this.emit('announced', timed(ev));
        return;
      case 'removed':
        this.emit('removed', timed(ev));
        return;
      case 'listener-created':
      case 'listener-closed':
        this.emit(ev.type, timed(ev));
        return;
    }
  }

  /** CREATED/ESTABLISHED describe the connection and its initial subflow. */
  private track(ev: ConnectionEvent): void {
    let c = this.table.get(ev.token);
    if (!c) {
      c = { token: ev.token, serverSide: ev.serverSide, local: ev.local, remote: ev.remote, established: false, subflows: new Map() };
      this.table.set(ev.token, c);
    }
    c.serverSide ||= ev.serverSide;
    if (ev.type === 'established') c.established = true;
    const key = keyOf(ev.local, ev.remote);
    if (!c.subflows.has(key)) c.subflows.set(key, { local: ev.local, remote: ev.remote, locId: ev.locId ?? null, remId: ev.remId ?? null, backup: null, ifName: null });
  }

  private trackSubflow(v: SubflowView): void {
    const c = this.table.get(v.token);
    if (!c) return; // connection opened before start(): nothing to attach to
    const key = keyOf(v.local, v.remote);
    if (v.type === 'sub-closed') {
      c.subflows.delete(key);
      return;
    }
    c.subflows.set(key, { local: v.local, remote: v.remote, locId: v.locId, remId: v.remId, backup: v.backup, ifName: v.ifName ?? c.subflows.get(key)?.ifName ?? null });
  }
}

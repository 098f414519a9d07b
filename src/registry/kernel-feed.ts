/**
 * Feeds the registry from the kernel's own view of the proxy's connections: path-manager events
 * for subflows coming and going, and per-socket samples (MPTCP_SUBFLOW_ADDRS + MPTCP_TCPINFO)
 * for bytes, RTT and MSS whenever a connection is sampled. The kernel's data wins in the registry.
 * Samples are plain data so a worker process can take them and the supervisor apply them.
 */
import { viewOf, type ClientConnection, type ClientView } from '../core/connection';
import { subflowInterface, tokenHex } from '../core/subflow-id';
import type { ProxyEvents } from '../core/events';
import type { KernelView } from '../mptcp/kernel-view';
import type { SockEnd } from '../mptcp/netlink-codec';
import type { SubflowRegistry } from './registry';

const ep = (e: SockEnd): { host: string; port: number } => ({ host: e.address, port: e.port });
const iface = (local: SockEnd, remote: SockEnd, reported: string | null): string | null => subflowInterface(reported, local.address, remote.address);

/** One subflow as read from a socket, in plain numbers. */
export interface SubflowSampleData {
  index: number;
  local: SockEnd;
  remote: SockEnd;
  ifName: string | null;
  backup: boolean | null;
  bytesTx: number;
  bytesRx: number;
  rttUs: number;
  mss: number;
  /** Path quality for the steering modes: retransmitted and sent segments, pending timeout backoff. */
  retransSegs: number;
  segsOut: number;
  backoff: number;
  /** ms without an ACK while data is outstanding (0 when nothing is). */
  stalledMs: number;
}

/** Read one connection's subflows from its socket (it must be open). */
export function readSubflowSamples(view: KernelView, fd: number, token?: number): SubflowSampleData[] {
  const out: SubflowSampleData[] = [];
  for (const s of view.snapshot(fd, token)) {
    if (!s.local || !s.remote || !s.tcp) continue;
    out.push({ index: s.index, local: s.local, remote: s.remote, ifName: s.ifName, backup: s.backup, bytesTx: Number(s.tcp.bytesAcked), bytesRx: Number(s.tcp.bytesReceived), rttUs: s.tcp.rttUs, mss: s.tcp.sndMss, retransSegs: s.tcp.totalRetrans, segsOut: s.tcp.segsOut, backoff: s.tcp.backoff, stalledMs: s.tcp.unacked > 0 ? s.tcp.lastAckRecvMs : 0 });
  }
  return out;
}

/** Netlink path-manager events → registry. Only connections the proxy accepted are client-facing. */
export function feedKernelEvents(view: KernelView, registry: SubflowRegistry): void {
  const accepted = (token: number): boolean => view.connection(token)?.serverSide === true;
  view.on('connection-established', (e) => {
    if (!e.serverSide) return;
    registry.subflowUp({ token: tokenHex(e.token), local: ep(e.local), remote: ep(e.remote), interface: iface(e.local, e.remote, null), kind: 'initial', backup: false, source: 'kernel' });
  });
  view.on('subflow-established', (e) => {
    if (!accepted(e.token)) return;
    registry.subflowUp({ token: tokenHex(e.token), local: ep(e.local), remote: ep(e.remote), interface: iface(e.local, e.remote, e.ifName), kind: 'join', backup: e.backup, source: 'kernel' });
  });
  view.on('subflow-closed', (e) => registry.subflowDown(tokenHex(e.token), ep(e.local), ep(e.remote), { ...(e.error !== undefined ? { error: e.error } : {}), ...(e.resetReason !== undefined ? { resetReason: e.resetReason } : {}) }));
  view.on('priority-changed', (e) => registry.priorityChanged(tokenHex(e.token), ep(e.local), ep(e.remote), e.backup));
  view.on('connection-closed', (e) => registry.connectionClosed(tokenHex(e.token)));
}

/** A connection's sample → registry: link the client, count subflows a missed event hid, update counters. */
export function applySample(registry: SubflowRegistry, client: ClientView, samples: readonly SubflowSampleData[]): void {
  if (client.token === null) return;
  const token = tokenHex(client.token);
  registry.attachClient(token, client);
  for (const s of samples) {
    const local = ep(s.local);
    const remote = ep(s.remote);
    registry.subflowUp({ token, local, remote, interface: iface(s.local, s.remote, s.ifName), kind: s.index === 0 ? 'initial' : 'join', backup: s.backup ?? false, source: 'kernel' });
    registry.updateCounters(token, local, remote, { bytesTx: s.bytesTx, bytesRx: s.bytesRx, rttUs: s.rttUs, mss: s.mss, retransSegs: s.retransSegs, segsOut: s.segsOut, backoff: s.backoff, stalledMs: s.stalledMs }, 'kernel');
  }
}

/**
 * A connection plane's link to the subflow registry: its connection observations go in (straight
 * into a registry, or to the supervisor), subflows coming up come back out (for the tuner).
 */
export interface ConnectionSink {
  sample(client: ClientView, samples: SubflowSampleData[]): void;
  client(client: ClientView): void;
  closed(client: ClientView): void;
  /** Calls fn with the token text of each subflow the registry sees come up; never where the registry is in another process. */
  onSubflowUp(fn: (token: string) => void): void;
}

export function registrySink(registry: SubflowRegistry): ConnectionSink {
  return {
    sample: (client, samples) => applySample(registry, client, samples),
    client: (client) => {
      if (client.token !== null) registry.attachClient(tokenHex(client.token), client);
    },
    // The socket is gone: whatever the netlink stream said or missed, the connection is over.
    closed: (client) => {
      if (client.token !== null) registry.connectionClosed(tokenHex(client.token));
    },
    onSubflowUp: (fn) => registry.on('subflow-up', (s) => fn(s.token)),
  };
}

/** The proxy's own connection events → sink, sampling sockets while their fds are open. */
export function feedConnectionEvents(events: ProxyEvents, view: KernelView, sink: ConnectionSink): void {
  events.on('connection-sample', (conn: ClientConnection) => {
    if (conn.token === null || conn.fd < 0) return;
    sink.sample(viewOf(conn), readSubflowSamples(view, conn.fd, conn.token));
  });
  events.on('connection-open', (conn) => sink.client(viewOf(conn)));
  events.on('upstream-connected', (conn) => sink.client(viewOf(conn)));
  events.on('connection-close', (conn) => sink.closed(viewOf(conn)));
}

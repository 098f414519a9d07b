/**
 * Feeds the registry from the kernel's own view of the proxy's connections: path-manager events
 * for subflows coming and going, and per-socket samples (MPTCP_SUBFLOW_ADDRS + MPTCP_TCPINFO)
 * for bytes, RTT and MSS whenever a connection is sampled. The kernel's data wins in the registry.
 */
import type { ClientConnection } from '../core/connection';
import type { ProxyEvents } from '../core/events';
import type { KernelView } from '../mptcp/kernel-view';
import type { SockEnd } from '../mptcp/netlink-codec';
import { interfaceFor } from './interfaces';
import type { SubflowRegistry } from './registry';

const hex = (token: number): string => token.toString(16).padStart(8, '0');
const ep = (e: SockEnd): { host: string; port: number } => ({ host: e.address, port: e.port });

export function feedRegistryFromKernel(view: KernelView, registry: SubflowRegistry, events: ProxyEvents): void {
  const iface = (local: SockEnd, remote: SockEnd, reported: string | null): string | null => reported ?? interfaceFor(remote.address, local.address);
  // Only connections the proxy accepted are client-facing; its own MPTCP upstream connections
  // (and any other program's) are not.
  const accepted = (token: number): boolean => view.connection(token)?.serverSide === true;

  view.on('connection-established', (e) => {
    if (!e.serverSide) return;
    registry.subflowUp({ token: hex(e.token), local: ep(e.local), remote: ep(e.remote), interface: iface(e.local, e.remote, null), kind: 'initial', backup: false, source: 'kernel' });
  });
  view.on('subflow-established', (e) => {
    if (!accepted(e.token)) return;
    registry.subflowUp({ token: hex(e.token), local: ep(e.local), remote: ep(e.remote), interface: iface(e.local, e.remote, e.ifName), kind: 'join', backup: e.backup, source: 'kernel' });
  });
  view.on('subflow-closed', (e) => registry.subflowDown(hex(e.token), ep(e.local), ep(e.remote)));
  view.on('priority-changed', (e) => registry.priorityChanged(hex(e.token), ep(e.local), ep(e.remote), e.backup));
  view.on('connection-closed', (e) => registry.connectionClosed(hex(e.token)));

  // The socket is gone: whatever the netlink stream said or missed, the connection is over.
  events.on('connection-close', (conn: ClientConnection) => {
    if (conn.token !== null) registry.connectionClosed(hex(conn.token));
  });
  events.on('connection-sample', (conn: ClientConnection) => {
    if (conn.token === null || conn.fd < 0) return;
    const token = hex(conn.token);
    registry.attachClient(token, conn);
    for (const s of view.snapshot(conn.fd)) {
      if (!s.local || !s.remote || !s.tcp) continue;
      const local = ep(s.local);
      const remote = ep(s.remote);
      // A subflow whose event was missed (started before the view, or dropped) still counts.
      registry.subflowUp({ token, local, remote, interface: iface(s.local, s.remote, s.ifName), kind: s.index === 0 ? 'initial' : 'join', backup: s.backup ?? false, source: 'kernel' });
      registry.updateCounters(token, local, remote, { bytesTx: Number(s.tcp.bytesAcked), bytesRx: Number(s.tcp.bytesReceived), rttUs: s.tcp.rttUs, mss: s.tcp.sndMss }, 'kernel');
    }
  });
}

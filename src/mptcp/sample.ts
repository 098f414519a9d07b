/**
 * Reads a client connection's MPTCP state (token, subflow count) while its fd is open, then lets
 * observers (the kernel feed of the registry, the buffer tuner) sample the same moment. Called when
 * the client half-closes, right before a relay closes, and on status/scrape; at accept only the
 * token is read (the kernel's netlink events bring the first subflow; a full sample there was
 * about a tenth of the proxy's CPU at 1,000 new connections/s).
 */
import type { ClientConnection } from '../core/connection';
import type { ProxyEvents } from '../core/events';
import { isMptcp, mptcpInfoRaw } from '../sys/socket';
import { decodeMptcpIdentity } from './info';

/** Token and subflow count from one MPTCP_INFO read; false when the socket is not (or no longer) MPTCP. */
export function identifyConnection(conn: ClientConnection): boolean {
  if (!conn.mptcp || conn.fd < 0 || conn.closed) return false;
  const raw = mptcpInfoRaw(conn.fd);
  const info = raw && decodeMptcpIdentity(raw);
  if (!info || info.fallback) return false;
  conn.token = info.token;
  conn.subflows = Math.max(conn.subflows, info.subflows);
  return true;
}

/**
 * At accept: did the client negotiate MPTCP, and which token. MPTCP_INFO answers only on a socket
 * that is MPTCP and has not fallen back, so for MPTCP clients it settles both in one getsockopt;
 * only when it fails is TCP_IS_MPTCP asked (false for plain TCP, null when it cannot tell).
 */
export function identifyAccepted(conn: ClientConnection): void {
  if (conn.fd < 0) {
    conn.mptcp = null;
    return;
  }
  conn.mptcp = true;
  if (!identifyConnection(conn)) conn.mptcp = isMptcp(conn.fd);
}

export function sampleConnection(conn: ClientConnection, events: ProxyEvents): void {
  if (identifyConnection(conn)) events.emit('connection-sample', conn);
}

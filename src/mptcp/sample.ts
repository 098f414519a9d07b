/**
 * Reads a client connection's MPTCP state (token, subflow count) while its fd is open, then lets
 * observers (the kernel feed of the registry) sample the same moment. Called at accept, when a
 * tunnel starts, when the client half-closes, right before a relay closes, and on status/scrape.
 */
import type { ClientConnection } from '../core/connection';
import type { ProxyEvents } from '../core/events';
import { mptcpInfoRaw } from '../sys/socket';
import { decodeMptcpInfo } from './info';

export function sampleConnection(conn: ClientConnection, events: ProxyEvents): void {
  if (!conn.mptcp || conn.fd < 0 || conn.closed) return;
  const raw = mptcpInfoRaw(conn.fd);
  const info = raw && decodeMptcpInfo(raw);
  if (!info || info.fallback) return;
  conn.token = info.token;
  conn.subflows = Math.max(conn.subflows, info.subflows);
  events.emit('connection-sample', conn);
}

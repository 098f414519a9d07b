/**
 * The step every tunnelling front end (HTTP CONNECT, SOCKS) ends with: relay the two connected
 * sockets with the configured engine and record what happened on the connection.
 */
import type net from 'node:net';
import type { ClientConnection } from '../core/connection';
import { ErrorCode, ProxyError } from '../core/errors';
import { decodeMptcpInfo } from '../mptcp/info';
import { mptcpInfoRaw } from '../sys/socket';
import type { ProxyContext } from './context';

/** Refresh the connection's MPTCP token and the most subflows seen, while its fd is open. */
export function sampleMptcp(conn: ClientConnection): void {
  if (!conn.mptcp || conn.fd < 0 || conn.closed) return;
  const raw = mptcpInfoRaw(conn.fd);
  const info = raw && decodeMptcpInfo(raw);
  if (!info) return;
  conn.token = info.token;
  conn.subflows = Math.max(conn.subflows, info.subflows);
}

export async function tunnel(conn: ClientConnection, upstream: net.Socket, ctx: ProxyContext, head?: Buffer): Promise<void> {
  sampleMptcp(conn);
  // Bytes the client pipelined behind its handshake, still in Node's buffer, go first.
  const buffered = conn.socket.readableLength > 0 ? (conn.socket.read() as Buffer | null) : null;
  const clientHead = buffered ? (head && head.length > 0 ? Buffer.concat([head, buffered]) : buffered) : head;
  const result = await ctx.relay.relay(conn.socket, upstream, {
    idleMs: ctx.config.timeouts.idleMs,
    ...(clientHead && clientHead.length > 0 ? { clientHead } : {}),
    beforeClose: () => sampleMptcp(conn),
  });
  if (ctx.relay.name !== 'stream') {
    // Bytes that bypassed the client socket's own counters.
    conn.relayBytesUp += result.bytesUp - (clientHead?.length ?? 0);
    conn.relayBytesDown += result.bytesDown;
  }
  if (result.end === 'idle') {
    const err = new ProxyError(ErrorCode.IdleTimeout, `${ctx.config.timeouts.idleMs} ms`);
    conn.fail(err);
    ctx.events.emit('proxy-error', err, conn);
  } else if (result.end === 'upstream-error' && result.errorCode && result.errorCode !== 'ECONNRESET') {
    conn.fail(new ProxyError(ErrorCode.UpstreamReset, result.errorCode));
  }
  ctx.events.emit('relay-done', conn, result);
}

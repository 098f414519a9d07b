/**
 * The step every tunnelling front end (HTTP CONNECT, SOCKS) ends with: relay the two connected
 * sockets with the configured engine and record what happened on the connection.
 */
import type net from 'node:net';
import type { ClientConnection } from '../core/connection';
import { ErrorCode, ProxyError } from '../core/errors';
import { identifyConnection, sampleConnection } from '../mptcp/sample';
import type { ProxyContext } from './context';
import { refuse } from './refusal';

export async function tunnel(conn: ClientConnection, upstream: net.Socket, ctx: ProxyContext, head?: Buffer): Promise<void> {
  // Only the subflow count here (one getsockopt): a full sample costs several and a registry
  // update, a large share of a short tunnel's cost, and joins reach the registry from the
  // kernel's events anyway. The count must be read while the subflows are up: by the time the
  // relay's closing sample runs, the client's DATA_FIN may have closed its joins.
  identifyConnection(conn);
  // Bytes the client pipelined behind its handshake, still in Node's buffer, go first.
  const buffered = conn.socket.readableLength > 0 ? (conn.socket.read() as Buffer | null) : null;
  const clientHead = buffered ? (head && head.length > 0 ? Buffer.concat([head, buffered]) : buffered) : head;
  const result = await ctx.relay.relay(conn.socket, upstream, {
    idleMs: ctx.config.timeouts.idleMs,
    ...(clientHead && clientHead.length > 0 ? { clientHead } : {}),
    beforeClose: () => sampleConnection(conn, ctx.events),
  });
  if (ctx.relay.name !== 'stream') {
    // Bytes that bypassed the client socket's own counters.
    conn.relayBytesUp += result.bytesUp - (clientHead?.length ?? 0);
    conn.relayBytesDown += result.bytesDown;
  }
  if (result.end === 'idle') refuse(ctx, conn, new ProxyError(ErrorCode.IdleTimeout, `${ctx.config.timeouts.idleMs} ms`));
  else if (result.end === 'upstream-error' && result.errorCode && result.errorCode !== 'ECONNRESET') refuse(ctx, conn, new ProxyError(ErrorCode.UpstreamReset, result.errorCode));
  ctx.events.emit('relay-done', conn, result);
}

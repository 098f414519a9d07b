/**
 * The step every tunnelling front end (HTTP CONNECT, SOCKS) ends with: relay the two connected
 * sockets with the configured engine and record what happened on the connection.
 */
import type net from 'node:net';
import type { ClientConnection } from '../core/connection';
import { ErrorCode, ProxyError } from '../core/errors';
import { sampleConnection } from '../mptcp/sample';
import type { ProxyContext } from './context';

export async function tunnel(conn: ClientConnection, upstream: net.Socket, ctx: ProxyContext, head?: Buffer): Promise<void> {
  // No sample here: the listener sampled at accept, moments ago (a sample costs a few
  // getsockopts and a registry update, a large share of a short tunnel's cost); joins that come
  // later reach the registry from the kernel's events, and the relay samples once before close.
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
  if (result.end === 'idle') {
    const err = new ProxyError(ErrorCode.IdleTimeout, `${ctx.config.timeouts.idleMs} ms`);
    conn.fail(err);
    ctx.events.emit('proxy-error', err, conn);
  } else if (result.end === 'upstream-error' && result.errorCode && result.errorCode !== 'ECONNRESET') {
    conn.fail(new ProxyError(ErrorCode.UpstreamReset, result.errorCode));
  }
  ctx.events.emit('relay-done', conn, result);
}

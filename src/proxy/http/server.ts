/**
 * HTTP forward proxy front end: Node's http server (llhttp) parses; the parts are absolute-form
 * forwarding (forward.ts), CONNECT tunnels (connect.ts) and per-head deadlines (head-deadline.ts),
 * sharing each socket's connection, head checks, admission and refusals (front.ts). Every refusal
 * is one short response, one log line and one counted error (proxy/refusal.ts).
 */
import http from 'node:http';
import type net from 'node:net';
import type { ClientConnection } from '../../core/connection';
import { ErrorCode, ProxyError } from '../../core/errors';
import { handshakeTimeLeft, type FrontEnd, type ProxyContext } from '../context';
import { createConnectHandler } from './connect';
import { createForwarder } from './forward';
import { HttpFront } from './front';
import { HeadDeadlines } from './head-deadline';

/** The HTTP front end, plus drain(): close idle keep-alive connections, and busy ones once answered. */
export type HttpFrontEnd = FrontEnd & { drain(): void };

export function createHttpFrontEnd(ctx: ProxyContext): HttpFrontEnd {
  const server = http.createServer({
    maxHeaderSize: ctx.config.limits.maxHeaderBytes,
    headersTimeout: ctx.config.timeouts.handshakeMs,
    requestTimeout: 0,
    keepAliveTimeout: 30_000,
    requireHostHeader: false,
    insecureHTTPParser: false,
  });
  const front = new HttpFront(ctx);
  const deadlines = new HeadDeadlines(server, ctx);
  server.on('request', createForwarder(front));
  server.on('connect', createConnectHandler(front));
  server.on('clientError', (e: NodeJS.ErrnoException, socket: net.Socket) => {
    // A client that reset or went away has nobody to answer.
    if (e.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const timedOut = e.code === 'ERR_HTTP_REQUEST_TIMEOUT' || e.code === 'ERR_HTTP_HEADERS_TIMEOUT';
    const tooLarge = e.code === 'HPE_HEADER_OVERFLOW';
    const err = new ProxyError(timedOut ? ErrorCode.HandshakeTimeout : tooLarge ? ErrorCode.LimitReached : ErrorCode.BadRequest, e.code ?? e.message);
    front.refuseRaw(front.connectionOf(socket), socket, err, tooLarge ? 431 : undefined);
  });

  const serve = (conn: ClientConnection): void => {
    const head = front.attach(conn);
    if (deadlines.draining) return void conn.socket.destroy();
    // The first head's deadline counts from accept (the mixed port may have waited already).
    deadlines.track(conn.socket, handshakeTimeLeft(conn, ctx));
    // The parser takes it per connection (so a reload applies to new ones): one more than
    // allowed, so a request over the limit is seen (Node drops the excess silently).
    server.maxHeadersCount = head.maxHeaderLines + 1;
    server.emit('connection', conn.socket);
    front.watchRequestLines(conn.socket);
    conn.socket.resume();
  };
  return Object.assign(serve, { drain: () => deadlines.drain() });
}

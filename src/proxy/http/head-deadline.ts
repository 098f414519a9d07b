/**
 * Slowloris: Node enforces headersTimeout only on servers that listen() themselves (its
 * connection checks start on 'listening', and arming them that way cut long chunked uploads), so
 * every request head gets its own deadline here: the first from accept, each later one from the
 * moment the connection went idle (previous request read and its response sent) until the head is
 * complete. Bodies are never timed by it, however long an upload runs. Draining closes idle
 * keep-alive connections at once and busy ones once answered.
 */
import type http from 'node:http';
import type net from 'node:net';
import type { ProxyContext } from '../context';

interface SocketState {
  /** Requests whose head arrived and that are not yet both fully read and answered. */
  pending: number;
  /** Requests fully answered on this connection. */
  served: number;
  deadline: NodeJS.Timeout | undefined;
}

export class HeadDeadlines {
  private readonly sockets = new Map<net.Socket, SocketState>();
  private isDraining = false;

  constructor(
    private readonly server: http.Server,
    private readonly ctx: ProxyContext,
  ) {
    server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.headArrived(req, res));
    server.prependListener('connect', (req: http.IncomingMessage) => this.headArrived(req, null));
  }

  get draining(): boolean {
    return this.isDraining;
  }

  /** A new connection; its first head's deadline is `firstMs` (what is left of the handshake time since accept). */
  track(socket: net.Socket, firstMs: number): void {
    const st: SocketState = { pending: 0, served: 0, deadline: undefined };
    this.sockets.set(socket, st);
    socket.once('close', () => {
      clearTimeout(st.deadline);
      this.sockets.delete(socket);
    });
    this.arm(socket, st, firstMs);
  }

  drain(): void {
    this.isDraining = true;
    for (const [socket, st] of this.sockets) if (st.pending === 0) socket.destroySoon();
  }

  private arm(socket: net.Socket, st: SocketState, ms = this.ctx.config.timeouts.handshakeMs): void {
    clearTimeout(st.deadline);
    const readAtIdle = socket.bytesRead;
    st.deadline = setTimeout(() => {
      st.deadline = undefined;
      // An idle keep-alive connection with no byte of a new head is closed quietly (a 408
      // there could be read as the answer to a request the client is sending right now).
      if (st.served > 0 && socket.bytesRead === readAtIdle) return void socket.destroy();
      this.server.emit('clientError', Object.assign(new Error('request head not received in time'), { code: 'ERR_HTTP_HEADERS_TIMEOUT' }), socket);
    }, ms);
    st.deadline.unref();
  }

  /** A request's head is complete: no deadline until it is fully read and answered. */
  private headArrived(req: http.IncomingMessage, res: http.ServerResponse | null): void {
    const socket = req.socket;
    const st = this.sockets.get(socket);
    if (!st) return;
    clearTimeout(st.deadline);
    st.deadline = undefined;
    st.pending++;
    if (!res) return; // CONNECT: the socket becomes a tunnel and is never idle again
    if (this.isDraining && !res.headersSent) res.setHeader('Connection', 'close');
    let parts = 2;
    const partDone = (): void => {
      if (--parts > 0) return;
      st.pending--;
      st.served++;
      if (st.pending > 0 || socket.destroyed) return;
      if (this.isDraining) socket.destroySoon();
      else this.arm(socket, st);
    };
    if (req.complete) partDone();
    else req.once('end', partDone);
    res.once('finish', partDone);
  }
}

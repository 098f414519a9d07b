/** CONNECT: the head checked and admitted like any request, then the socket becomes a tunnel. */
import type http from 'node:http';
import type net from 'node:net';
import { ErrorCode, ProxyError, toProxyError } from '../../core/errors';
import { tunnel } from '../tunnel';
import type { HttpFront } from './front';
import { parseAuthority } from './headers';

export function createConnectHandler(front: HttpFront): (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => Promise<void> {
  const { ctx } = front;
  return async (req, socket, head) => {
    const conn = front.request(socket, 'connect');
    if (!conn) return void (front.isClosing(socket) ? socket.end() : socket.destroy());
    socket.pause();
    const answer = (err: ProxyError, status?: number): void => front.refuseRaw(conn, socket, err, status);
    const breach = front.headBreach(req);
    if (breach) return answer(breach.err, breach.status);
    const verdict = front.admit(conn, req);
    const denied = verdict instanceof Promise ? await verdict : verdict;
    if (socket.destroyed) return;
    if (front.isClosing(socket)) return void socket.end();
    if (denied) return answer(denied);
    const target = parseAuthority(req.url ?? '');
    if (!target) return answer(new ProxyError(ErrorCode.BadRequest, `CONNECT target ${JSON.stringify(req.url)}`));
    ctx.upstream.connect(target, conn).then(
      (upstream) => {
        if (socket.destroyed) return void upstream.destroy();
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        return tunnel(conn, upstream, ctx, head);
      },
      (e) => answer(toProxyError(e)),
    );
  };
}

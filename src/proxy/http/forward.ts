/**
 * Absolute-form requests: forwarded with Node's http client over pooled upstream connections made
 * by the upstream connector, so every new upstream socket passes the destination policy after DNS.
 * The origin gets the target's authority as its one Host (RFC 9112 §3.2.2). A route through an
 * HTTP parent sends the request there absolute-form with the parent's Proxy-Authorization; through
 * a SOCKS parent, origin-form over the tunnel.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { ClientConnection } from '../../core/connection';
import { ErrorCode, ProxyError, toProxyError } from '../../core/errors';
import type { ProxyContext } from '../context';
import type { ForwardHop } from '../../upstream/router';
import type { HttpFront } from './front';
import { forwardHeaders } from './headers';

/** Agent whose sockets come from the upstream connector, attributed to the client connection. */
class UpstreamAgent extends http.Agent {
  constructor(private readonly ctx: ProxyContext) {
    super({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo', timeout: 60_000 });
  }
  override createConnection(options: http.ClientRequestArgs, cb?: (err: Error | null, socket: Duplex) => void): undefined {
    const conn = (options as { proxyConn?: ClientConnection }).proxyConn!;
    this.ctx.upstream.connect({ host: options.host ?? options.hostname ?? '', port: Number(options.port) }, conn).then(
      (socket) => {
        socket.resume();
        cb!(null, socket);
      },
      (err) => cb!(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

export function createForwarder(front: HttpFront): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
  const agent = new UpstreamAgent(front.ctx);
  return async (req, res) => {
    const conn = front.request(req.socket, 'http');
    if (!conn) {
      if (!front.isClosing(req.socket)) res.destroy();
      return;
    }
    const breach = front.headBreach(req);
    if (breach) return front.refuseResponse(conn, res, breach.err, true, breach.status);
    const verdict = front.admit(conn, req);
    const denied = verdict instanceof Promise ? await verdict : verdict;
    // The client left while its password was checked, or an earlier request's refusal closes the connection.
    if (req.socket.destroyed || front.isClosing(req.socket)) return;
    // A body the client may still send would be read as the next request: close unless there is none.
    if (denied) return front.refuseResponse(conn, res, denied, req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined);
    let url: URL;
    try {
      url = new URL(req.url ?? '');
      if (url.protocol !== 'http:') throw new Error(`scheme ${url.protocol} not supported`);
    } catch (e) {
      return front.refuseResponse(conn, res, new ProxyError(ErrorCode.BadRequest, `request target ${JSON.stringify(req.url)}: ${(e as Error).message}`), true);
    }
    const target = { host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port ? Number(url.port) : 80 };
    const through = front.ctx.upstream.forwardHop(target, conn);
    let hop: ForwardHop | null = null;
    if (through) {
      try {
        hop = await through;
      } catch (e) {
        return front.refuseResponse(conn, res, toProxyError(e), true);
      }
      if (req.socket.destroyed) return void hop.socket.destroy();
    }
    const headers = forwardHeaders(req.rawHeaders, url.host);
    if (hop?.proxyAuthorization) headers.push('Proxy-Authorization', hop.proxyAuthorization);
    // Through a parent: the connection made for this request alone, without an agent (the pooled
    // agent's sockets go direct, and a parent's route can differ per client; `agent: false` would
    // make Node dial with a fresh agent and ignore createConnection).
    const socket = hop?.socket;
    const via: http.RequestOptions = socket ? { createConnection: () => socket.resume() } : { agent };
    const upstreamReq = http.request({
      ...target,
      method: req.method,
      // To an HTTP parent the request goes as it came, absolute-form (RFC 9112 §3.2.2).
      path: hop?.absoluteForm ? `${url.protocol}//${url.host}${url.pathname}${url.search}` : `${url.pathname}${url.search}`,
      headers,
      setHost: false,
      proxyConn: conn,
      ...via,
    } as http.RequestOptions);
    // A pooled socket was connected (and checked) for an earlier client: this connection's log
    // and /connections still name where its requests went.
    upstreamReq.on('socket', (socket) => {
      conn.destination ??= target;
      if (conn.parent === null) conn.upstreamAddress ??= socket.remoteAddress ?? null;
    });
    upstreamReq.on('response', (upstreamRes) => {
      // The parent refusing our credentials is not the client's to answer: a 407 would ask it for its own.
      if (hop?.absoluteForm && upstreamRes.statusCode === 407) {
        upstreamReq.destroy();
        return front.refuseResponse(conn, res, new ProxyError(ErrorCode.ParentRefused, `parent ${conn.parent ?? ''} answered 407 (check its user and password)`), true);
      }
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, forwardHeaders(upstreamRes.rawHeaders));
      upstreamRes.pipe(res);
      upstreamRes.on('error', () => res.destroy());
    });
    upstreamReq.on('error', (e) => {
      const err = toProxyError(e);
      if (!res.headersSent) front.refuseResponse(conn, res, err, true);
      else front.refuse(conn, err, () => res.destroy());
    });
    res.on('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    req.pipe(upstreamReq);
  };
}

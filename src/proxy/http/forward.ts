/**
 * Absolute-form requests, over keep-alive upstream connections of the origin pool (origin-pool.ts:
 * one string written per head, the body streamed after it, llhttp reading the answer, no http
 * client objects per request), made by the upstream connector, so every new upstream socket passes
 * the destination policy after DNS. The origin gets the target's authority as its one Host (RFC
 * 9112 §3.2.2). A route through an HTTP parent sends the request there absolute-form with the
 * parent's Proxy-Authorization; through a SOCKS parent, origin-form over the tunnel; either way
 * over a connection made for that request alone.
 */
import type http from 'node:http';
import type net from 'node:net';
import { ErrorCode, ProxyError, toProxyError } from '../../core/errors';
import type { ForwardHop } from '../../upstream/router';
import type { HttpFront } from './front';
import { forwardHeaders } from './headers';
import { OriginPool, type OriginMessage, type OriginRequest } from './origin-pool';

/** Methods that carry no body unless the request frames one (no Content-Length: 0 added for them). */
const BODILESS_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE']);

/**
 * The request to send: head (request line, forwarded fields, the framing of its body) and body.
 * A sized body goes as it came; a chunked one chunk-encoded again (Node's parser decoded it);
 * a method meant to carry content but sent without any says Content-Length: 0.
 */
function originMessage(req: http.IncomingMessage, path: string, headers: readonly string[]): OriginMessage {
  const chunked = req.headers['transfer-encoding'] !== undefined;
  const sized = req.headers['content-length'] !== undefined;
  let head = `${req.method} ${path} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) {
    // Never both framings (Node's parser refuses a request with both; this keeps it so).
    if (chunked && headers[i]!.toLowerCase() === 'content-length') continue;
    head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  }
  if (chunked) head += 'Transfer-Encoding: chunked\r\n';
  else if (!sized && !BODILESS_METHODS.has(req.method!)) head += 'Content-Length: 0\r\n';
  return { head: `${head}Connection: keep-alive\r\n\r\n`, body: chunked || sized ? { from: req, chunked } : null, headRequest: req.method === 'HEAD' };
}

export function createForwarder(front: HttpFront): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
  const pool = new OriginPool((dest, conn) => front.ctx.upstream.connect(dest, conn));
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
    // To an HTTP parent the request goes as it came, absolute-form (RFC 9112 §3.2.2).
    const path = hop?.absoluteForm ? `${url.protocol}//${url.host}${url.pathname}${url.search}` : `${url.pathname}${url.search}`;
    // A pooled socket was connected (and checked) for an earlier client: this connection's log
    // and /connections still name where its requests went.
    const attribute = (socket: net.Socket): void => {
      conn.destination ??= target;
      if (conn.parent === null) conn.upstreamAddress ??= socket.remoteAddress ?? null;
    };
    const failed = (e: unknown): void => {
      const err = toProxyError(e);
      if (!res.headersSent) front.refuseResponse(conn, res, err, true);
      else front.refuse(conn, err, () => res.destroy());
    };
    if (hop?.proxyAuthorization) headers.push('Proxy-Authorization', hop.proxyAuthorization);
    const msg = originMessage(req, path, headers);
    if (!msg.body) req.resume(); // reading the (empty) body lets the request end
    const answer = {
      socket: attribute,
      head: (status: number, message: string, raw: string[]): void => {
        // The parent refusing our credentials is not the client's to answer: a 407 would ask it for its own.
        if (hop?.absoluteForm && status === 407) {
          sent.abort();
          return front.refuseResponse(conn, res, new ProxyError(ErrorCode.ParentRefused, `parent ${conn.parent ?? ''} answered 407 (check its user and password)`), true);
        }
        res.writeHead(status, message, forwardHeaders(raw));
      },
      body: (chunk: Buffer): boolean => res.write(chunk) || (res.once('drain', () => sent.resume()), false),
      end: (last: Buffer | null): void => void (last ? res.end(last) : res.end()),
      error: failed,
    };
    const sent: OriginRequest = hop ? pool.sendOnce(hop.socket, msg, answer) : pool.send(target, conn, msg, answer);
    res.on('close', () => {
      if (!res.writableFinished) sent.abort();
    });
  };
}

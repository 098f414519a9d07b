/**
 * HTTP forward proxy front end: Node's http server (llhttp) parses; absolute-form requests are
 * forwarded with Node's http client over pooled upstream connections made by the upstream
 * connector (so every new upstream socket passes the destination policy after DNS); CONNECT
 * becomes a tunnel. Every refusal is one short response, one log line and one error event.
 */
import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ClientConnection } from '../../core/connection';
import { ErrorCode, ProxyError, toProxyError } from '../../core/errors';
import { handshakeTimeLeft, type FrontEnd, type ProxyContext } from '../context';
import { httpRefusal, refusalBytes, refuse as refuseConnection } from '../refusal';
import { tunnel } from '../tunnel';
import { forwardHeaders, parseAuthority, parseBasicCredentials } from './headers';
import { messageRuleBreach, RequestLineWatch } from './message-rules';

/** limits.maxHeaderLines (as Apache's LimitRequestFields); the size limit is limits.maxHeaderBytes. */
function tooManyHeaders(req: http.IncomingMessage, max: number): ProxyError | null {
  const count = req.rawHeaders.length / 2;
  return count > max ? new ProxyError(ErrorCode.LimitReached, `more than ${max} header lines`) : null;
}

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

/** The HTTP front end, plus drain(): close idle keep-alive connections, and busy ones once answered. */
export type HttpFrontEnd = FrontEnd & { drain(): void };

export function createHttpFrontEnd(ctx: ProxyContext): HttpFrontEnd {
  const connections = new WeakMap<net.Socket, ClientConnection>();
  const authCache = new WeakMap<ClientConnection, string>();
  /** Sockets whose last answer says Connection: close. */
  const closing = new WeakSet<net.Socket>();
  const agent = new UpstreamAgent(ctx);
  const server = http.createServer({
    maxHeaderSize: ctx.config.limits.maxHeaderBytes,
    headersTimeout: ctx.config.timeouts.handshakeMs,
    requestTimeout: 0,
    keepAliveTimeout: 30_000,
    requireHostHeader: false,
    insecureHTTPParser: false,
  });

  const refuse = (conn: ClientConnection, err: ProxyError): void => refuseConnection(ctx, conn, err);

  /**
   * Client ACL and proxy auth: the error to answer with, or null to go on; a promise only when a
   * password is checked (off the event loop), so every other request goes on at once.
   */
  const admit = (conn: ClientConnection, req: http.IncomingMessage): ProxyError | null | Promise<ProxyError | null> => {
    if (!ctx.access.clientAllowed(conn.clientAddress)) return new ProxyError(ErrorCode.ClientDenied, conn.clientAddress);
    if (!ctx.access.authRequired) return null;
    const header = req.headers['proxy-authorization'];
    if (header && authCache.get(conn) === header) return null;
    const creds = parseBasicCredentials(header);
    if (!creds) return new ProxyError(ErrorCode.AuthRequired);
    return ctx.access.authenticate(creds.user, creds.password, conn.clientAddress).then((refused) => {
      if (refused) return refused;
      conn.user = creds.user;
      authCache.set(conn, header!);
      return null;
    });
  };

  /**
   * Pipelined requests are admitted in order: a later request's check may end first (a cached
   * password), but it goes on only after the earlier one was answered, so a refusal that closes
   * the connection (`closing`) is seen before anything behind it is forwarded.
   */
  const admitted = new WeakMap<net.Socket, Promise<unknown>>();
  const admitInOrder = (conn: ClientConnection, req: http.IncomingMessage): ReturnType<typeof admit> => {
    const check = admit(conn, req);
    const earlier = admitted.get(req.socket);
    if (!earlier && !(check instanceof Promise)) return check;
    const turn = Promise.all([earlier, check]).then(([, denied]) => denied);
    admitted.set(req.socket, turn);
    // The last one done, later requests on the connection go on at once again.
    void turn.then(() => {
      if (admitted.get(req.socket) === turn) admitted.delete(req.socket);
    });
    return turn;
  };

  const errorResponse = (res: http.ServerResponse, err: ProxyError, close: boolean, status = err.mapping.http): void => {
    const r = httpRefusal(err.code, status, close);
    if (close) closing.add(res.req.socket);
    res.writeHead(r.status, r.headers);
    res.end(r.body);
  };

  /** Answer on a socket that is no (longer an) HTTP response: CONNECT, or a head that did not parse. */
  const answerRaw = (socket: net.Socket, err: ProxyError, status?: number): void => {
    socket.end(refusalBytes('http', err.code, status));
    setTimeout(() => socket.destroy(), 2_000).unref();
  };

  server.on('request', async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const conn = connections.get(req.socket);
    if (!conn) return void res.destroy();
    // Pipelined behind an answer that closes the connection: never forwarded, never answered.
    if (closing.has(req.socket)) return;
    conn.protocol = 'http';
    conn.requests++;
    const crowded = crowdedHead(req);
    if (crowded) {
      refuse(conn, crowded);
      return errorResponse(res, crowded, true, 431);
    }
    const broken = brokenRule(req);
    if (broken) {
      refuse(conn, broken);
      return errorResponse(res, broken, true);
    }
    const verdict = admitInOrder(conn, req);
    const denied = verdict instanceof Promise ? await verdict : verdict;
    // The client left while its password was checked, or an earlier request's refusal closes the connection.
    if (req.socket.destroyed || closing.has(req.socket)) return;
    if (denied) {
      refuse(conn, denied);
      // A body the client may still send would be read as the next request: close unless there is none.
      return errorResponse(res, denied, req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined);
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '');
      if (url.protocol !== 'http:') throw new Error(`scheme ${url.protocol} not supported`);
    } catch (e) {
      const err = new ProxyError(ErrorCode.BadRequest, `request target ${JSON.stringify(req.url)}: ${(e as Error).message}`);
      refuse(conn, err);
      return errorResponse(res, err, true);
    }
    const target = { host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port ? Number(url.port) : 80 };
    const upstreamReq = http.request({
      agent,
      ...target,
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers: forwardHeaders(req.rawHeaders, url.host),
      setHost: false,
      proxyConn: conn,
    } as http.RequestOptions);
    // A pooled socket was connected (and checked) for an earlier client: this connection's log
    // and /connections still name where its requests went.
    upstreamReq.on('socket', (socket) => {
      conn.destination ??= target;
      conn.upstreamAddress ??= socket.remoteAddress ?? null;
    });
    upstreamReq.on('response', (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, forwardHeaders(upstreamRes.rawHeaders));
      upstreamRes.pipe(res);
      upstreamRes.on('error', () => res.destroy());
    });
    upstreamReq.on('error', (e) => {
      const err = toProxyError(e);
      refuse(conn, err);
      if (!res.headersSent) errorResponse(res, err, true);
      else res.destroy();
    });
    res.on('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    req.pipe(upstreamReq);
  });

  server.on('connect', async (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const conn = connections.get(socket);
    if (!conn) return void socket.destroy();
    if (closing.has(socket)) return void socket.end();
    conn.protocol = 'connect';
    conn.requests++;
    socket.pause();
    const answer = (err: ProxyError, status?: number): void => refuseConnection(ctx, conn, err, () => answerRaw(socket, err, status));
    const crowded = crowdedHead(req);
    if (crowded) return answer(crowded, 431);
    const broken = brokenRule(req);
    if (broken) return answer(broken);
    const verdict = admitInOrder(conn, req);
    const denied = verdict instanceof Promise ? await verdict : verdict;
    if (socket.destroyed) return;
    if (closing.has(socket)) return void socket.end();
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
  });

  server.on('clientError', (e: NodeJS.ErrnoException, socket: net.Socket) => {
    const conn = connections.get(socket);
    const timedOut = e.code === 'ERR_HTTP_REQUEST_TIMEOUT' || e.code === 'ERR_HTTP_HEADERS_TIMEOUT';
    const tooLarge = e.code === 'HPE_HEADER_OVERFLOW';
    // A client that reset or went away has nobody to answer.
    if (e.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const err = new ProxyError(timedOut ? ErrorCode.HandshakeTimeout : tooLarge ? ErrorCode.LimitReached : ErrorCode.BadRequest, e.code ?? e.message);
    if (conn) refuse(conn, err);
    answerRaw(socket, err, tooLarge ? 431 : undefined);
  });

  // Slowloris: Node enforces headersTimeout only on servers that listen() themselves (its
  // connection checks start on 'listening', and arming them that way cut long chunked uploads),
  // so every request head gets its own deadline here: the first from accept, each later one from
  // the moment the connection went idle (previous request read and its response sent) until the
  // head is complete. Bodies are never timed by it, however long an upload runs.
  const sockets = new Map<net.Socket, SocketState>();
  /** Judged by the limit the connection's parser was armed with at accept (see serve). */
  const crowdedHead = (req: http.IncomingMessage): ProxyError | null => tooManyHeaders(req, sockets.get(req.socket)?.maxHeaderLines ?? ctx.config.limits.maxHeaderLines);
  /** RFC 9112 rules llhttp lets through; a CONNECT's socket becomes a tunnel, whose bytes are not watched. */
  const brokenRule = (req: http.IncomingMessage): ProxyError | null => {
    const lines = sockets.get(req.socket)?.lines;
    const err = messageRuleBreach(req, lines);
    if (req.method === 'CONNECT') lines?.stop();
    return err;
  };
  let draining = false;
  const handshakeMs = (): number => ctx.config.timeouts.handshakeMs;

  const armHeadDeadline = (socket: net.Socket, st: SocketState, ms = handshakeMs()): void => {
    clearTimeout(st.deadline);
    const readAtIdle = socket.bytesRead;
    st.deadline = setTimeout(() => {
      st.deadline = undefined;
      // An idle keep-alive connection with no byte of a new head is closed quietly (a 408
      // there could be read as the answer to a request the client is sending right now).
      if (st.served > 0 && socket.bytesRead === readAtIdle) return void socket.destroy();
      server.emit('clientError', Object.assign(new Error('request head not received in time'), { code: 'ERR_HTTP_HEADERS_TIMEOUT' }), socket);
    }, ms);
    st.deadline.unref();
  };

  /** A request's head is complete: no deadline until it is fully read and answered. */
  const headArrived = (req: http.IncomingMessage, res: http.ServerResponse | null): void => {
    const socket = req.socket;
    const st = sockets.get(socket);
    if (!st) return;
    clearTimeout(st.deadline);
    st.deadline = undefined;
    st.pending++;
    if (!res) return; // CONNECT: the socket becomes a tunnel and is never idle again
    if (draining && !res.headersSent) res.setHeader('Connection', 'close');
    let parts = 2;
    const partDone = (): void => {
      if (--parts > 0) return;
      st.pending--;
      st.served++;
      if (st.pending > 0 || socket.destroyed) return;
      if (draining) socket.destroySoon();
      else armHeadDeadline(socket, st);
    };
    if (req.complete) partDone();
    else req.once('end', partDone);
    res.once('finish', partDone);
  };
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => headArrived(req, res));
  server.prependListener('connect', (req: http.IncomingMessage) => headArrived(req, null));

  const serve = (conn: ClientConnection): void => {
    connections.set(conn.socket, conn);
    const socket = conn.socket;
    const st: SocketState = { pending: 0, served: 0, deadline: undefined, maxHeaderLines: ctx.config.limits.maxHeaderLines };
    sockets.set(socket, st);
    socket.once('close', () => {
      clearTimeout(st.deadline);
      sockets.delete(socket);
    });
    if (draining) return void socket.destroy();
    // The first head's deadline counts from accept (the mixed port may have waited already).
    armHeadDeadline(socket, st, handshakeTimeLeft(conn, ctx));
    // The parser takes it per connection (so a reload applies to new ones): one more than
    // allowed, so a request over the limit is seen (Node drops the excess silently).
    server.maxHeadersCount = st.maxHeaderLines + 1;
    server.emit('connection', conn.socket);
    // Beyond the longest head the header size limit lets through unpadded (field lines count only name and value).
    st.lines = new RequestLineWatch(socket, 4 * ctx.config.limits.maxHeaderBytes);
    conn.socket.resume();
  };
  return Object.assign(serve, {
    drain(): void {
      draining = true;
      for (const [socket, st] of sockets) if (st.pending === 0) socket.destroySoon();
    },
  });
}

interface SocketState {
  /** limits.maxHeaderLines when accepted: its parser was armed with it, so its requests are judged by it. */
  maxHeaderLines: number;
  /** Requests whose head arrived and that are not yet both fully read and answered. */
  pending: number;
  /** Requests fully answered on this connection. */
  served: number;
  deadline: NodeJS.Timeout | undefined;
  /** Where its request lines are checked for single spaces (set once Node's server took the socket). */
  lines?: RequestLineWatch;
}

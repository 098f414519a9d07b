/**
 * What the parts of the HTTP front end share for each client socket: its connection record, the
 * checks every request head passes (header-line limit, RFC 9112 message rules), admission (client
 * allow-list and proxy auth, in request order) and the refusal answers, always through the one
 * refuse() of proxy/refusal.ts.
 */
import type http from 'node:http';
import type net from 'node:net';
import type { ClientConnection } from '../../core/connection';
import { ErrorCode, ProxyError } from '../../core/errors';
import type { ProxyContext } from '../context';
import { httpRefusal, refusalBytes, refuse } from '../refusal';
import { parseBasicCredentials } from './headers';
import { messageRuleBreach, RequestLineWatch } from './message-rules';

type Verdict = ProxyError | null;

interface HeadState {
  /** limits.maxHeaderLines when accepted: its parser was armed with it, so its requests are judged by it. */
  maxHeaderLines: number;
  /** Where its request lines are checked for single spaces (set once Node's server took the socket). */
  lines?: RequestLineWatch;
}

export class HttpFront {
  private readonly connections = new WeakMap<net.Socket, ClientConnection>();
  private readonly heads = new WeakMap<net.Socket, HeadState>();
  private readonly authCache = new WeakMap<ClientConnection, string>();
  /** Sockets whose last answer says Connection: close. */
  private readonly closing = new WeakSet<net.Socket>();
  private readonly admitted = new WeakMap<net.Socket, Promise<unknown>>();

  constructor(readonly ctx: ProxyContext) {}

  /** A new client socket, before Node's server takes it. */
  attach(conn: ClientConnection): HeadState {
    const head: HeadState = { maxHeaderLines: this.ctx.config.limits.maxHeaderLines };
    this.connections.set(conn.socket, conn);
    this.heads.set(conn.socket, head);
    return head;
  }

  /** After Node's server took the socket: its 'data' tap must come after the server's own. */
  watchRequestLines(socket: net.Socket): void {
    const head = this.heads.get(socket);
    // Beyond the longest head the header size limit lets through unpadded (field lines count only name and value).
    if (head) head.lines = new RequestLineWatch(socket, 4 * this.ctx.config.limits.maxHeaderBytes);
  }

  /**
   * The connection a request on `socket` belongs to, counted as one more request of `protocol`;
   * null when there is none or when the request is pipelined behind an answer that closes the
   * connection (never forwarded, never answered).
   */
  request(socket: net.Socket, protocol: 'http' | 'connect'): ClientConnection | null {
    const conn = this.connections.get(socket);
    if (!conn || this.closing.has(socket)) return null;
    conn.protocol = protocol;
    conn.requests++;
    return conn;
  }

  connectionOf(socket: net.Socket): ClientConnection | undefined {
    return this.connections.get(socket);
  }

  isClosing(socket: net.Socket): boolean {
    return this.closing.has(socket);
  }

  /** The checks on a head before anything else: the error and the status to answer it with. */
  headBreach(req: http.IncomingMessage): { err: ProxyError; status?: number } | null {
    const head = this.heads.get(req.socket);
    const max = head?.maxHeaderLines ?? this.ctx.config.limits.maxHeaderLines;
    // limits.maxHeaderLines (as Apache's LimitRequestFields); the size limit is limits.maxHeaderBytes.
    if (req.rawHeaders.length / 2 > max) return { err: new ProxyError(ErrorCode.LimitReached, `more than ${max} header lines`), status: 431 };
    const err = messageRuleBreach(req, head?.lines);
    // A CONNECT's socket becomes a tunnel, whose bytes are not HTTP.
    if (req.method === 'CONNECT') head?.lines?.stop();
    return err ? { err } : null;
  }

  /**
   * Client ACL and proxy auth, pipelined requests admitted in order: a later request's check may
   * end first (a cached password), but it goes on only after the earlier one was answered, so a
   * refusal that closes the connection is seen before anything behind it goes on. A promise only
   * when a password is checked (off the event loop) or an earlier check is pending.
   */
  admit(conn: ClientConnection, req: http.IncomingMessage): Verdict | Promise<Verdict> {
    const check = this.check(conn, req);
    const earlier = this.admitted.get(req.socket);
    if (!earlier && !(check instanceof Promise)) return check;
    const turn = Promise.all([earlier, check]).then(([, denied]) => denied);
    this.admitted.set(req.socket, turn);
    // The last one done, later requests on the connection go on at once again.
    void turn.then(() => {
      if (this.admitted.get(req.socket) === turn) this.admitted.delete(req.socket);
    });
    return turn;
  }

  private check(conn: ClientConnection, req: http.IncomingMessage): Verdict | Promise<Verdict> {
    const { access } = this.ctx;
    if (!access.clientAllowed(conn.clientAddress)) return new ProxyError(ErrorCode.ClientDenied, conn.clientAddress);
    if (!access.authRequired) return null;
    const header = req.headers['proxy-authorization'];
    if (header && this.authCache.get(conn) === header) return null;
    const creds = parseBasicCredentials(header);
    if (!creds) return new ProxyError(ErrorCode.AuthRequired);
    return access.authenticate(creds.user, creds.password, conn.clientAddress).then((refused) => {
      if (refused) return refused;
      conn.user = creds.user;
      this.authCache.set(conn, header!);
      return null;
    });
  }

  refuse(conn: ClientConnection, err: ProxyError, answer?: () => void): void {
    refuse(this.ctx, conn, err, answer);
  }

  /** Refuse with a response on a request that is still HTTP. */
  refuseResponse(conn: ClientConnection, res: http.ServerResponse, err: ProxyError, close: boolean, status?: number): void {
    this.refuse(conn, err, () => {
      const r = httpRefusal(err.code, status, close);
      if (close) this.closing.add(res.req.socket);
      res.writeHead(r.status, r.headers);
      res.end(r.body);
    });
  }

  /** Refuse on a socket that is no (longer an) HTTP response: CONNECT, or a head that did not parse. */
  refuseRaw(conn: ClientConnection | undefined, socket: net.Socket, err: ProxyError, status?: number): void {
    const answer = (): void => {
      socket.end(refusalBytes('http', err.code, status));
      setTimeout(() => socket.destroy(), 2_000).unref();
    };
    if (conn) this.refuse(conn, err, answer);
    else answer();
  }
}

/**
 * One proxy listener: an IPPROTO_MPTCP listening socket made through FFI and handed to
 * net.Server, or plain TCP when the kernel refuses MPTCP (one warning). Every accepted socket
 * becomes a ClientConnection, is asked whether the client really used MPTCP, is checked against
 * the connection limits, and is handed paused to the protocol front end. With the native fast
 * path (src/fastpath) native accepts instead, and this listener serves only the connections it
 * hands off.
 */
import dns from 'node:dns';
import net from 'node:net';
import type { ListenerConfig } from '../config/schema';
import { ClientConnection } from '../core/connection';
import { ErrorCode, ProxyError } from '../core/errors';
import type { FrontEnd, ProxyContext } from '../proxy/context';
import { refuse } from '../proxy/refusal';
import { identifyAccepted, sampleConnection } from '../mptcp/sample';
import { closeFd, createListenSocket, socketFd, socketName, type ListenSocket, type SocketOptions } from '../sys/socket';
import type { FastPath, FastPathTarget } from '../fastpath/fastpath';
import { NATIVE_PROTO, type NativeHandoff } from '../fastpath/addon';
import { clientOfKey } from '../fastpath/records';
import { handleSocks } from '../proxy/socks/server';
import { activatedSockets, type ActivatedSocket } from './activation';
import { ListenerError } from './listener-error';

const BACKLOG = 4096;

export class ProxyListener implements FastPathTarget {
  private server: net.Server | null = null;
  /** With the fast path: the listening fd native accepts on, and its id there. */
  private native: { fd: number; id: number } | null = null;
  /** Whether the listening socket really is MPTCP (false after a fallback). */
  mptcp = false;
  /** The port actually bound (differs from the config for port 0). */
  boundPort = 0;
  readonly active = new Set<ClientConnection>();
  private readonly perClient = new Map<string, number>();
  /** Gives a passed (socket-activated) socket back when this listener closes. */
  private releasePassed: (() => void) | null = null;
  /** Draining with the socket open (see refuseNew). */
  private refusing = false;

  constructor(
    readonly config: ListenerConfig,
    private readonly frontEnd: FrontEnd,
    private readonly ctx: ProxyContext,
    private readonly socketOptions: SocketOptions = {},
    private readonly fastPath: FastPath | null = null,
  ) {}

  get name(): string {
    return this.config.name;
  }

  async start(): Promise<void> {
    const passed = activatedSockets().take(this.config);
    const ls = passed ? this.adopt(passed) : await this.bind();
    this.mptcp = ls.mptcp;
    if (this.config.mptcp && !ls.mptcp) {
      const why = passed ? { reason: 'the passed socket is TCP', hint: 'SocketProtocol=mptcp in the .socket unit (systemd >= 257)' } : { reason: ls.fallbackReason, hint: 'sysctl -w net.mptcp.enabled=1' };
      this.ctx.log.warn('listening with plain TCP, not MPTCP', { listener: this.name, ...why });
    }
    const bound = socketName(ls.fd);
    this.boundPort = bound.port;
    const { protocol } = this.config;
    // Transparent and Convert connections are not on the fast path (see README).
    if (this.fastPath && (protocol === 'http' || protocol === 'socks' || protocol === 'mixed')) {
      this.native = { fd: ls.fd, id: this.fastPath.attach(this, ls.fd, protocol) };
    } else await this.serve(ls);
    this.ctx.log.info('listening', { listener: this.name, protocol, address: `${bound.address}:${bound.port}`, mptcp: this.mptcp, ...(this.native ? { fastPath: true } : {}) });
  }

  private async serve(ls: ListenSocket): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (s) => this.accept(s));
    server.maxConnections = this.ctx.config.limits.maxConnections;
    // Node has closed the socket already: no ClientConnection, so the limit log is told the peer.
    server.on('drop', (d?: net.DropArgument) => {
      const peer = d?.remoteAddress;
      refuse(this.ctx, null, new ProxyError(ErrorCode.LimitReached, `maxConnections, client ${peer ?? 'unknown'}`), undefined, peer);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd: ls.fd }, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.ctx.log.error('listener error', { listener: this.name, error: e.message }));
    this.server = server;
  }

  /** A socket passed by socket activation (see ./activation), served whatever `listen:` says. */
  private adopt(passed: ActivatedSocket & { release(): void }): ListenSocket {
    this.releasePassed = passed.release;
    this.ctx.log.info('socket activation: using a passed socket', { listener: this.name, fdName: passed.name, address: `${passed.address}:${passed.port}`, protocol: passed.protocol });
    return { fd: passed.fd, mptcp: passed.protocol === 'mptcp' };
  }

  private async bind(): Promise<ListenSocket> {
    const { host, port } = this.config;
    let address = host;
    if (!net.isIP(host)) {
      try {
        address = (await dns.promises.lookup(host)).address;
      } catch {
        throw new ListenerError(`listener ${this.name}: cannot resolve ${host}`);
      }
    }
    try {
      return createListenSocket(address, port, { mptcp: this.config.mptcp, backlog: BACKLOG, options: this.socketOptions });
    } catch (e) {
      const code = (e as { code?: string }).code;
      const why = code === 'EADDRINUSE' ? 'address already in use' : code === 'EADDRNOTAVAIL' ? 'address not available on this host' : code === 'EACCES' ? 'permission denied (ports < 1024 need CAP_NET_BIND_SERVICE)' : (e as Error).message;
      throw new ListenerError(`listener ${this.name}: cannot listen on ${host}:${port}: ${why}`);
    }
  }

  private accept(socket: net.Socket): void {
    if (this.refusing) return void socket.resetAndDestroy();
    const fd = socketFd(socket);
    const conn = new ClientConnection(socket, this.name, fd);
    identifyAccepted(conn);
    const client = conn.clientAddress;
    const count = (this.perClient.get(client) ?? 0) + 1;
    this.perClient.set(client, count);
    this.track(conn, () => {
      const left = (this.perClient.get(client) ?? 1) - 1;
      if (left === 0) this.perClient.delete(client);
      else this.perClient.set(client, left);
    });
    if (count > this.ctx.config.limits.maxConnectionsPerClient) {
      return refuse(this.ctx, conn, new ProxyError(ErrorCode.LimitReached, `per-client limit for ${client}`), () => socket.destroy());
    }
    this.frontEnd(conn, this.ctx);
  }

  /**
   * A connection the fast path accepted and handed over (native checked the limits and counts
   * it until `release`): the front end gets it with the bytes native already read in front.
   */
  adoptHandoff(h: NativeHandoff, release: () => void): void {
    const socket = new net.Socket({ fd: h.fd, readable: true, writable: true, allowHalfOpen: true, pauseOnCreate: true } as net.SocketConstructorOpts);
    const conn = new ClientConnection(socket, this.name, h.fd, h.acceptedNs);
    // A client that reset during its handshake has no peer name by now: native checked this address.
    conn.acceptedFrom = clientOfKey(h.key);
    conn.mptcp = h.mptcp < 0 ? null : h.mptcp === 1;
    if (conn.mptcp) conn.token = h.token;
    conn.subflows = h.subflows;
    // Bytes native read and wrote never passed the socket's own counters.
    conn.relayBytesUp = h.head.length;
    if (h.greeted) conn.relayBytesDown = 2;
    this.track(conn, release);
    if (h.greeted && NATIVE_PROTO[h.proto] === 'socks5') return handleSocks(conn, this.ctx, h.head, true);
    if (h.head.length > 0) socket.unshift(h.head);
    this.frontEnd(conn, this.ctx);
  }

  /** Bookkeeping every served connection gets, from open to close. */
  private track(conn: ClientConnection, onClose: () => void): void {
    const socket = conn.socket;
    // The client's FIN arrives while the fd is still open: last chance for plain HTTP connections.
    socket.once('end', () => sampleConnection(conn, this.ctx.events));
    this.active.add(conn);
    socket.on('error', () => {}); // errors are handled by whoever owns the socket; never crash on a late one
    socket.once('close', () => {
      conn.closed = true;
      this.active.delete(conn);
      onClose();
      this.ctx.events.emit('connection-close', conn);
    });
    this.ctx.events.emit('connection-open', conn);
  }

  /**
   * Drain with the listening socket kept open: new connections are reset as they are accepted,
   * while MP_JOINs of established connections, which the kernel matches on the listening socket
   * and never hands to accept(), still find it. close() at the end of the drain.
   */
  refuseNew(): void {
    this.refusing = true;
    // The fast path would go on serving: the TS accept loop takes the socket over to reset them.
    if (this.native) {
      const { fd, id } = this.native;
      this.native = null;
      this.fastPath!.detach(id);
      this.serve({ fd, mptcp: this.mptcp }).catch((e: Error) => this.ctx.log.error('listener error', { listener: this.name, error: e.message }));
    }
  }

  /** Stop accepting; established connections continue. */
  close(): void {
    // server.close()'s callback waits for every connection; draining is the caller's business.
    this.server?.close();
    this.server = null;
    if (this.native) {
      this.fastPath!.detach(this.native.id);
      closeFd(this.native.fd);
      this.native = null;
    }
    this.releasePassed?.();
    this.releasePassed = null;
  }

  /** Destroy every established connection (after a drain). */
  destroyAll(): void {
    for (const c of this.active) c.socket.destroy();
  }
}

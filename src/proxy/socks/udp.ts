/**
 * SOCKS5 UDP ASSOCIATE (RFC 1928 §7). One association = one UDP socket bound on the address the
 * control TCP connection arrived on (the client reaches it the same way), plus lazily created
 * outbound sockets per address family. Datagrams are taken only from the client's IP (and the
 * port it declared, when it declared one); fragments are dropped (no reassembly); every
 * destination is resolved and checked against the access policy before anything is sent; only
 * sources the client has sent to may answer. It lives as long as the control connection.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { normalizeIpLiteral, unmapIPv6 } from '../../core/address';
import type { ClientConnection } from '../../core/connection';
import { ErrorCode, ProxyError } from '../../core/errors';
import type { RelayEnd } from '../../core/relay';
import type { ProxyContext } from '../context';
import { refuse } from '../refusal';
import type { SocksAddress } from './codec/common';
import { encodeSocks5Datagram, parseSocks5Datagram } from './codec/socks5';

/** Reply sources remembered per association (oldest forgotten first): bounds memory per client. */
const MAX_PEERS = 1024;

const activeByContext = new WeakMap<ProxyContext, { count: number }>();

/** Associations currently open under this context (for tests and status). */
export function activeUdpAssociations(ctx: ProxyContext): number {
  return activeByContext.get(ctx)?.count ?? 0;
}

function bindUdp(address: string, port = 0): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type: net.isIPv6(address) ? 'udp6' : 'udp4' });
  return new Promise((resolve, reject) => {
    socket.once('error', (e) => {
      try {
        socket.close();
      } catch {
        // never bound: nothing to close
      }
      reject(e);
    });
    socket.bind({ address, port, exclusive: true }, () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

/**
 * Check the limit and bind the client-facing socket. Throws ProxyError (LimitReached, Internal);
 * the association then needs run() to serve until the control connection closes.
 */
export async function openUdpAssociation(conn: ClientConnection, ctx: ProxyContext, declared: SocksAddress): Promise<UdpAssociation> {
  let active = activeByContext.get(ctx);
  if (!active) activeByContext.set(ctx, (active = { count: 0 }));
  if (active.count >= ctx.config.limits.maxUdpAssociations) {
    throw new ProxyError(ErrorCode.LimitReached, `maxUdpAssociations ${ctx.config.limits.maxUdpAssociations}`);
  }
  active.count++;
  try {
    const socket = await bindUdp(unmapIPv6(conn.localAddress));
    return new UdpAssociation(conn, ctx, socket, declared.port, active);
  } catch (e) {
    active.count--;
    throw new ProxyError(ErrorCode.Internal, `UDP bind on ${conn.localAddress}: ${(e as Error).message}`, { cause: e });
  }
}

export class UdpAssociation {
  readonly host: string;
  readonly port: number;
  private readonly clientIp: string;
  /** Where replies go: the declared port, else the source port of the client's last datagram. */
  private clientPort: number;
  private readonly outbound = new Map<'udp4' | 'udp6', Promise<dgram.Socket>>();
  private readonly peers = new Map<string, true>();
  private idleTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private bytesUp = 0;
  private bytesDown = 0;

  constructor(
    private readonly conn: ClientConnection,
    private readonly ctx: ProxyContext,
    private readonly socket: dgram.Socket,
    private readonly declaredPort: number,
    private readonly active: { count: number },
  ) {
    const addr = socket.address();
    this.host = unmapIPv6(addr.address);
    this.port = addr.port;
    this.clientIp = unmapIPv6(conn.clientAddress);
    this.clientPort = declaredPort;
  }

  /** Serve until the control connection closes or the association idles out; then clean up. */
  run(): Promise<void> {
    const control = this.conn.socket;
    return new Promise<RelayEnd>((resolve) => {
      this.socket.on('message', (msg, rinfo) => {
        this.fromClient(msg, rinfo).catch((e: Error) => this.debug('datagram not relayed', e.message));
      });
      this.socket.on('error', (e) => this.debug('client-side UDP socket error', e.message));
      // The control connection carries nothing more; reading it is how its close is noticed.
      control.on('data', () => {});
      control.once('end', () => resolve('done'));
      control.once('close', () => resolve('done'));
      control.on('error', () => resolve('client-error'));
      control.resume();
      const idleMs = this.ctx.config.timeouts.idleMs;
      if (idleMs > 0) this.idleTimer = setTimeout(() => resolve('idle'), idleMs);
    }).then((end) => this.close(end));
  }

  private touch(): void {
    this.idleTimer?.refresh();
  }

  private debug(message: string, detail: string): void {
    this.ctx.log.debug(`socks5 udp: ${message}`, { conn: this.conn.id, detail });
  }

  private async fromClient(msg: Buffer, rinfo: dgram.RemoteInfo): Promise<void> {
    if (unmapIPv6(rinfo.address) !== this.clientIp) return this.debug('dropped datagram from a stranger', `${rinfo.address}:${rinfo.port}`);
    if (this.declaredPort !== 0 && rinfo.port !== this.declaredPort) return this.debug('dropped datagram from an undeclared port', String(rinfo.port));
    const parsed = parseSocks5Datagram(msg);
    if (parsed.kind !== 'ok') return this.debug('dropped malformed datagram', parsed.kind === 'error' ? parsed.detail : 'truncated header');
    const { frag, address, data } = parsed.value;
    if (frag !== 0) return this.debug('dropped fragment', `FRAG ${frag}`);
    this.clientPort = rinfo.port;
    const ip = await this.resolveAllowed(address);
    if (ip === null || this.closed) return;
    const type = net.isIPv6(ip) ? 'udp6' : 'udp4';
    const out = await this.outboundSocket(type);
    if (this.closed) return;
    this.remember(`${ip}|${address.port}`);
    this.touch();
    out.send(data, address.port, ip, (err) => {
      if (err) return this.debug('send to destination failed', err.message);
      this.bytesUp += data.length;
      this.conn.relayBytesUp += data.length;
    });
  }

  /** The destination as a numeric address the policy allows, or null (dropped, logged at debug). */
  private async resolveAllowed(address: SocksAddress): Promise<string | null> {
    try {
      this.ctx.access.checkPort(address.port);
    } catch (e) {
      this.debug('dropped datagram to a denied port', (e as Error).message);
      return null;
    }
    const literal = normalizeIpLiteral(address.host);
    let candidates: string[];
    if (literal) candidates = [literal];
    else {
      try {
        const found = await dns.promises.lookup(address.host, { all: true, verbatim: true });
        candidates = found.map((a) => normalizeIpLiteral(a.address) ?? a.address);
      } catch (e) {
        this.debug('dropped datagram: name not resolved', `${address.host}: ${(e as Error).message}`);
        return null;
      }
    }
    const allowed = candidates.find((ip) => this.ctx.access.destinationAllowed(ip));
    if (allowed === undefined) this.debug('dropped datagram to a denied destination', `${address.host} (${candidates.join(', ')})`);
    return allowed ?? null;
  }

  private remember(key: string): void {
    this.peers.delete(key);
    this.peers.set(key, true);
    if (this.peers.size > MAX_PEERS) this.peers.delete(this.peers.keys().next().value!);
  }

  private outboundSocket(type: 'udp4' | 'udp6'): Promise<dgram.Socket> {
    let p = this.outbound.get(type);
    if (!p) {
      p = bindUdp(type === 'udp6' ? '::' : '0.0.0.0').then((s) => {
        s.on('message', (msg, rinfo) => this.fromDestination(msg, rinfo));
        s.on('error', (e) => this.debug('outbound UDP socket error', e.message));
        return s;
      });
      // A failed bind is not cached: the next datagram tries again.
      p.catch(() => this.outbound.delete(type));
      this.outbound.set(type, p);
    }
    return p;
  }

  private fromDestination(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const source = unmapIPv6(rinfo.address);
    if (!this.peers.has(`${source}|${rinfo.port}`)) return this.debug('dropped datagram from a host the client did not send to', `${source}:${rinfo.port}`);
    if (this.clientPort === 0 || this.closed) return;
    this.touch();
    this.socket.send(encodeSocks5Datagram(source, rinfo.port, msg), this.clientPort, this.clientIp, (err) => {
      if (err) return this.debug('send to client failed', err.message);
      this.bytesDown += msg.length;
      this.conn.relayBytesDown += msg.length;
    });
  }

  private async close(end: RelayEnd): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.active.count--;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.socket.close();
    for (const p of this.outbound.values()) await p.then((s) => s.close(), () => {});
    this.conn.socket.destroy();
    if (end === 'idle') {
      refuse(this.ctx, this.conn, new ProxyError(ErrorCode.IdleTimeout, `${this.ctx.config.timeouts.idleMs} ms`));
    }
    this.ctx.events.emit('relay-done', this.conn, { bytesUp: this.bytesUp, bytesDown: this.bytesDown, end });
  }
}

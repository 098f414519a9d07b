/**
 * The SOCKS front end (4, 4a and 5): handshake with the pure codec, client ACL, RFC 1929
 * authentication, CONNECT through the upstream connector, UDP ASSOCIATE through ./udp, then the
 * relay. Every refusal is answered in the protocol's own words from ERROR_TABLE, then closed.
 */
import net from 'node:net';
import { unmapIPv6 } from '../../core/address';
import type { ClientConnection, Destination } from '../../core/connection';
import { ErrorCode, ProxyError, toProxyError } from '../../core/errors';
import { handshakeTimeLeft, type ProxyContext } from '../context';
import { refuse } from '../refusal';
import { tunnel } from '../tunnel';
import { encodeSocks4Reply, parseSocks4Request, Socks4Command, Socks4Reply, SOCKS4_VERSION } from './codec/socks4';
import {
  AuthStatus,
  encodeAuthStatus,
  encodeMethodSelection,
  encodeSocks5Reply,
  parseSocks5Auth,
  parseSocks5Greeting,
  parseSocks5Request,
  Socks5Command,
  Socks5Method,
  Socks5Reply,
  SOCKS5_VERSION,
  type Socks5Request,
} from './codec/socks5';
import { INCOMPLETE, ok, type ParseResult } from './codec/common';
import { HandshakeReader } from './reader';
import { openUdpAssociation } from './udp';

/** How long a refused client gets to read our reply and close before we destroy the socket. */
const CLOSE_GRACE_MS = 1000;

/** For the mixed-port dispatcher: a connection whose first byte is 0x04 or 0x05 speaks SOCKS. */
export function isSocksFirstByte(byte: number): boolean {
  return byte === SOCKS4_VERSION || byte === SOCKS5_VERSION;
}

/**
 * FrontEnd for SOCKS listeners. The socket arrives paused. `head` is what a dispatcher already
 * read from it (the mixed port peeks at the first byte), processed before anything new.
 * `greeted`: the native fast path already answered this SOCKS5 greeting (in `head`) with
 * "no authentication", so it is not answered again.
 */
export function handleSocks(conn: ClientConnection, ctx: ProxyContext, head?: Buffer, greeted = false): void {
  void new SocksSession(conn, ctx, head, greeted).run();
}

/** End our side now (with a last message), destroy once the client closes or after a grace. */
export function closeGracefully(socket: net.Socket, last?: Buffer): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.once('end', () => socket.destroySoon());
  socket.on('data', () => {}); // drain what the client still sends so its FIN is seen
  socket.on('error', () => {}); // a reset now changes nothing: the socket is being closed anyway
  if (last) socket.end(last);
  else socket.end();
  if (socket.readableEnded) socket.destroySoon();
  else socket.resume();
}

/** Peeks at the version byte without consuming it. */
function parseVersion(buf: Buffer): ParseResult<number> {
  return buf.length < 1 ? INCOMPLETE : ok(buf[0]!, 0);
}

function boundAddress(socket: net.Socket): { host: string; port: number } {
  return { host: unmapIPv6(socket.localAddress ?? '0.0.0.0'), port: socket.localPort ?? 0 };
}

class SocksSession {
  private readonly reader: HandshakeReader;
  private readonly timer: NodeJS.Timeout;
  private finished = false;
  /** What a refusal says in the current phase; null before the version is known. */
  private refusalReply: ((err: ProxyError) => Buffer) | null = null;

  constructor(
    private readonly conn: ClientConnection,
    private readonly ctx: ProxyContext,
    head?: Buffer,
    private readonly greeted = false,
  ) {
    this.reader = new HandshakeReader(conn.socket, head);
    // Counted from accept: on the mixed port the wait for the first byte is part of it.
    const ms = ctx.config.timeouts.handshakeMs;
    this.timer = setTimeout(() => this.refuse(new ProxyError(ErrorCode.HandshakeTimeout, `${ms} ms`)), handshakeTimeLeft(conn, ctx));
  }

  async run(): Promise<void> {
    try {
      const version = await this.reader.read(parseVersion);
      if (version === SOCKS4_VERSION) await this.socks4();
      else if (version === SOCKS5_VERSION) await this.socks5();
      else throw new ProxyError(ErrorCode.VersionUnsupported, `first byte 0x${version.toString(16).padStart(2, '0')}`);
    } catch (e) {
      this.refuse(toProxyError(e));
    }
  }

  private async socks4(): Promise<void> {
    this.conn.protocol = 'socks4';
    this.refusalReply = (err) => encodeSocks4Reply(err.mapping.socks4);
    const req = await this.reader.read(parseSocks4Request);
    this.checkClient();
    if (this.ctx.access.authRequired) throw new ProxyError(ErrorCode.AuthRequired, 'SOCKS4 cannot authenticate; use SOCKS5');
    if (req.command !== Socks4Command.Connect) throw new ProxyError(ErrorCode.CommandUnsupported, 'SOCKS4 BIND');
    const upstream = await this.connect({ host: req.host, port: req.port });
    if (!upstream) return;
    const bound = boundAddress(upstream);
    this.conn.socket.write(encodeSocks4Reply(Socks4Reply.Granted, bound.host, bound.port));
    await tunnel(this.conn, upstream, this.ctx, this.reader.detach());
  }

  private async socks5(): Promise<void> {
    this.conn.protocol = 'socks5';
    // Until a method is chosen, the only refusal RFC 1928 has is "no acceptable methods".
    this.refusalReply = () => encodeMethodSelection(Socks5Method.NoAcceptable);
    const { methods } = await this.reader.read(parseSocks5Greeting);
    if (!this.ctx.access.clientAllowed(this.conn.clientAddress) && methods.includes(Socks5Method.NoAuth)) {
      // Refuse where the protocol can say why: REP 0x02 "not allowed by ruleset" to the request.
      if (!this.greeted) this.conn.socket.write(encodeMethodSelection(Socks5Method.NoAuth));
      this.refusalReply = (err) => encodeSocks5Reply(err.mapping.socks5);
      // Whatever the request says, a denied client learns nothing but "denied".
      await this.reader.read(parseSocks5Request).catch(() => null);
    }
    this.checkClient();
    await this.authenticate(methods);
    this.refusalReply = (err) => encodeSocks5Reply(err.mapping.socks5);
    const req = await this.reader.read(parseSocks5Request);
    await this.serve(req);
  }

  private async authenticate(methods: number[]): Promise<void> {
    const { socket } = this.conn;
    if (!this.ctx.access.authRequired) {
      if (!methods.includes(Socks5Method.NoAuth)) throw new ProxyError(ErrorCode.BadRequest, `no acceptable method among [${methods.join(', ')}]`);
      if (!this.greeted) socket.write(encodeMethodSelection(Socks5Method.NoAuth));
      return;
    }
    if (this.greeted) {
      // The fast path chose "no authentication" before a reload turned it on: the method is
      // answered already, so the request gets the refusal.
      this.refusalReply = (err) => encodeSocks5Reply(err.mapping.socks5);
      await this.reader.read(parseSocks5Request);
      throw new ProxyError(ErrorCode.AuthRequired, 'authentication turned on after the fast path answered the greeting');
    }
    if (!methods.includes(Socks5Method.UserPass)) throw new ProxyError(ErrorCode.AuthRequired, 'client did not offer username/password');
    socket.write(encodeMethodSelection(Socks5Method.UserPass));
    this.refusalReply = () => encodeAuthStatus(AuthStatus.Failure);
    const { user, password } = await this.reader.read(parseSocks5Auth);
    const refused = await this.ctx.access.authenticate(user, password, this.conn.clientAddress);
    if (refused) throw refused;
    this.conn.user = user;
    socket.write(encodeAuthStatus(AuthStatus.Success));
  }

  private async serve(req: Socks5Request): Promise<void> {
    const { address } = req;
    if (req.command === Socks5Command.Connect) {
      const upstream = await this.connect({ host: address.host, port: address.port });
      if (!upstream) return;
      const bound = boundAddress(upstream);
      this.conn.socket.write(encodeSocks5Reply(Socks5Reply.Succeeded, bound.host, bound.port));
      await tunnel(this.conn, upstream, this.ctx, this.reader.detach());
    } else if (req.command === Socks5Command.UdpAssociate) {
      this.handshakeDone();
      const assoc = await openUdpAssociation(this.conn, this.ctx, address);
      this.finished = true;
      this.conn.socket.write(encodeSocks5Reply(Socks5Reply.Succeeded, assoc.host, assoc.port));
      this.reader.detach();
      await assoc.run();
    } else {
      throw new ProxyError(ErrorCode.CommandUnsupported, 'SOCKS5 BIND');
    }
  }

  private checkClient(): void {
    if (!this.ctx.access.clientAllowed(this.conn.clientAddress)) throw new ProxyError(ErrorCode.ClientDenied, this.conn.clientAddress);
  }

  /** The request is complete: from here the connect and relay timeouts govern. */
  private handshakeDone(): void {
    clearTimeout(this.timer);
  }

  /** Connect upstream; null when the client left meanwhile (nothing to answer). */
  private async connect(dest: Destination): Promise<net.Socket | null> {
    this.handshakeDone();
    const upstream = await this.ctx.upstream.connect(dest, this.conn);
    if (this.conn.socket.destroyed) {
      upstream.destroy();
      return null;
    }
    this.finished = true;
    return upstream;
  }

  private refuse(err: ProxyError): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    const { conn, ctx } = this;
    refuse(ctx, conn, err);
    const reply = this.refusalReply?.(err);
    this.reader.detach();
    closeGracefully(conn.socket, reply);
  }
}

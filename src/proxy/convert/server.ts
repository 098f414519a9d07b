/**
 * The RFC 8803 Transport Converter front end. The client puts a Convert message (a Connect TLV
 * with the destination, maybe a Cookie) in the data of its MPTCP SYN (TCP Fast Open on the
 * listening socket, see app.ts) or sends it right after the handshake: both arrive here as the
 * first bytes of the stream. The converter checks the client and the destination exactly like a
 * CONNECT (allow-list, destination policy on the address dialled, ports), connects, answers with
 * a Convert header and an Extended TCP Header TLV, then relays; bytes the client sent after the
 * message go upstream right after connect. An Info TLV alone is answered with the Supported TCP
 * Extensions. Every refusal is an Error TLV from the one error table, then close; nothing
 * reaches the destination.
 */
import type net from 'node:net';
import { CidrSet } from '../../core/address';
import type { ClientConnection } from '../../core/connection';
import { ErrorCode, ProxyError, toProxyError } from '../../core/errors';
import { socketFd, tcpInfoRaw } from '../../sys/socket';
import { readSysctl } from '../../sys/sysctl';
import { handshakeTimeLeft, type ProxyContext } from '../context';
import { refuse, refusalBytes } from '../refusal';
import { closeGracefully } from '../socks/server';
import { HandshakeReader } from '../socks/reader';
import { tunnel } from '../tunnel';
import { decodeConvertTlvs, encodeConvertMessage, parseConvertFrame, parseTcpOptions, type ConvertTlv } from './codec';

/** A refusal whose Error TLV carries a value only this front end knows. */
class ConvertRefusal extends ProxyError {
  constructor(
    code: ErrorCode,
    detail: string,
    readonly value: Buffer,
  ) {
    super(code, detail);
  }
}

/**
 * RFC 8803 §6.2.5: a Connect to a loopback, multicast or broadcast address is a Malformed
 * Message whatever the destination policy says (the unspecified address likewise names no host).
 */
const NOT_A_DESTINATION = new CidrSet(['127.0.0.0/8', '::1/128', '224.0.0.0/4', 'ff00::/8', '255.255.255.255/32', '0.0.0.0/32', '::/128']);

/** TCP option kinds that Linux puts on every upstream SYN by itself (with its own values). */
const KERNEL_SYN_OPTIONS = [2, 3, 4, 8];
const MPTCP_OPTION = 30;

/** The option kinds a Connect may ask for, which Info announces: MPTCP only when the upstream side tries it. */
export function honouredTcpOptions(upstreamMptcp: boolean): number[] {
  return upstreamMptcp ? [...KERNEL_SYN_OPTIONS, MPTCP_OPTION] : KERNEL_SYN_OPTIONS;
}

/** net.ipv4.tcp_fastopen bit 0x2: the server side of TCP Fast Open, per network namespace. */
const TFO_SERVER_ENABLE = 0x2;

/**
 * Whether this namespace takes data in SYNs on a TFO listener. Measured: without bit 0x2 the
 * socket options alone do nothing, and a Linux MPTCP client sending data in its SYN falls back
 * to plain TCP (the Convert message then comes after the handshake). Null when unreadable.
 */
export function fastOpenServerEnabled(): boolean | null {
  const v = readSysctl('net.ipv4.tcp_fastopen');
  return v === null || !/^\d+$/.test(v) ? null : (Number(v) & TFO_SERVER_ENABLE) !== 0;
}

/** FrontEnd for `protocol: convert` listeners. */
export function handleConvert(conn: ClientConnection, ctx: ProxyContext): void {
  void new ConvertSession(conn, ctx).run();
}

class ConvertSession {
  private readonly reader: HandshakeReader;
  private readonly timer: NodeJS.Timeout;
  private finished = false;

  constructor(
    private readonly conn: ClientConnection,
    private readonly ctx: ProxyContext,
  ) {
    conn.protocol = 'convert';
    this.reader = new HandshakeReader(conn.socket);
    const ms = ctx.config.timeouts.handshakeMs;
    this.timer = setTimeout(() => this.refuse(new ProxyError(ErrorCode.HandshakeTimeout, `${ms} ms`)), handshakeTimeLeft(conn, ctx));
  }

  async run(): Promise<void> {
    try {
      const frame = await this.reader.read(parseConvertFrame);
      if (!this.ctx.access.clientAllowed(this.conn.clientAddress)) throw new ProxyError(ErrorCode.ClientDenied, this.conn.clientAddress);
      const tlvs = decodeConvertTlvs(frame);
      // The value echoes the message one byte on, so it keeps its word alignment (§6.6).
      if (tlvs.kind === 'error') throw new ConvertRefusal(tlvs.code, tlvs.detail, Buffer.concat([Buffer.of(0), frame]));
      if (tlvs.kind === 'ok') await this.serve(tlvs.value);
    } catch (e) {
      this.refuse(toProxyError(e));
    }
  }

  private async serve(tlvs: ConvertTlv[]): Promise<void> {
    const connect = tlvs.find((t) => t.type === 'connect');
    if (!connect) {
      if (!tlvs.some((t) => t.type === 'info')) throw new ProxyError(ErrorCode.CommandUnsupported, 'neither Connect nor Info TLV');
      this.done();
      this.reader.detach();
      closeGracefully(this.conn.socket, encodeConvertMessage([{ type: 'supported-tcp-extensions', kinds: honouredTcpOptions(this.ctx.config.upstream.mptcp) }]));
      return;
    }
    this.checkCookie(tlvs);
    this.checkTcpOptions(connect.options);
    const dest = { host: connect.host, port: connect.port };
    this.conn.destination = dest;
    if (NOT_A_DESTINATION.has(dest.host)) throw new ProxyError(ErrorCode.BadRequest, `${dest.host} is loopback, multicast, broadcast or unspecified`);
    this.done();
    const upstream = await this.ctx.upstream.connect(dest, this.conn);
    if (this.conn.socket.destroyed) return void upstream.destroy();
    this.finished = true;
    this.conn.socket.write(encodeConvertMessage([{ type: 'extended-tcp-header', header: negotiatedOptions(upstream) }]));
    await tunnel(this.conn, upstream, this.ctx, this.reader.detach());
  }

  /** With cookies configured: none is Missing Cookie (3), a wrong one Not Authorized (32). */
  private checkCookie(tlvs: ConvertTlv[]): void {
    const accepted = this.ctx.config.listeners.find((l) => l.name === this.conn.listener)?.cookies ?? [];
    if (accepted.length === 0) return;
    const sent = tlvs.filter((t) => t.type === 'cookie').map((t) => t.cookie);
    if (sent.length === 0) throw new ProxyError(ErrorCode.AuthRequired, 'no Cookie TLV');
    // The TLV pads the cookie with zeros to a word boundary: compare padded forms.
    const padded = (hex: string): Buffer => Buffer.concat([Buffer.from(hex, 'hex'), Buffer.alloc((4 - ((hex.length / 2) % 4)) % 4)]);
    if (!sent.some((c) => accepted.some((a) => padded(a).equals(c)))) throw new ProxyError(ErrorCode.AuthFailed, 'unknown cookie');
  }

  /** Options the client wants on the upstream SYN: what the kernel does itself passes, the rest is refused by kind. */
  private checkTcpOptions(raw: Buffer): void {
    const opts = parseTcpOptions(raw);
    if (opts.kind === 'error') throw new ProxyError(opts.code, opts.detail);
    if (opts.kind !== 'ok') return;
    const honoured = honouredTcpOptions(this.ctx.config.upstream.mptcp);
    const refused = [...new Set(opts.value.map((o) => o.kind).filter((k) => !honoured.includes(k)))];
    if (refused.length > 0) throw new ConvertRefusal(ErrorCode.TcpOptionUnsupported, `TCP option kinds ${refused.join(', ')}`, Buffer.from(refused));
  }

  /** The message is in: from here the connect and relay timeouts govern. */
  private done(): void {
    clearTimeout(this.timer);
  }

  private refuse(err: ProxyError): void {
    if (this.finished) return;
    this.finished = true;
    this.done();
    refuse(this.ctx, this.conn, err);
    this.reader.detach();
    closeGracefully(this.conn.socket, refusalBytes('convert', err.code, undefined, err instanceof ConvertRefusal ? err.value : undefined));
  }
}

// struct tcp_info: tcpi_options at byte 5, tcpi_snd_wscale in the low nibble of byte 6,
// tcpi_snd_mss at byte 16.
const TCPI_OPT_TIMESTAMPS = 1;
const TCPI_OPT_SACK = 2;
const TCPI_OPT_WSCALE = 4;
/** The Timestamps option's 10 bytes (and 2 of alignment) come off every segment's MSS. */
const TIMESTAMP_OVERHEAD = 12;

/**
 * The options the destination's SYN/ACK carried, as far as the kernel tells (tcp_info; Linux
 * keeps no copy of the SYN/ACK): MSS, Window Scale and SACK-permitted. Timestamps are agreed
 * per connection, so the option is not repeated with made-up values.
 */
export function negotiatedOptions(upstream: net.Socket): Buffer {
  const info = tcpInfoRaw(socketFd(upstream));
  return info ? optionsFromTcpInfo(info) : Buffer.alloc(0);
}

export function optionsFromTcpInfo(info: Buffer): Buffer {
  if (info.length < 20) return Buffer.alloc(0);
  const flags = info[5]!;
  const mss = info.readUInt32LE(16) + (flags & TCPI_OPT_TIMESTAMPS ? TIMESTAMP_OVERHEAD : 0);
  const out = [2, 4, (mss >> 8) & 0xff, mss & 0xff];
  if (flags & TCPI_OPT_WSCALE) out.push(3, 3, info[6]! & 0x0f);
  if (flags & TCPI_OPT_SACK) out.push(4, 2);
  return Buffer.from(out);
}

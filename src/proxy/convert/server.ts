/**
 * The RFC 8803 Transport Converter front end. The client puts a Convert message (a Connect TLV
 * with the destination, maybe a Cookie) in the data of its MPTCP SYN (TCP Fast Open on the
 * listening socket, see app.ts) or sends it right after the handshake: both arrive here as the
 * first bytes of the stream. The converter checks the client and the destination exactly like a
 * CONNECT (allow-list, destination policy on the address dialled, ports), connects, answers with
 * a Convert header and an Extended TCP Header TLV, then relays; bytes the client sent after the
 * message go upstream in the upstream SYN where TCP Fast Open allows, else right after connect.
 * An Info TLV alone is answered with the Supported TCP Extensions. Every refusal is an Error TLV
 * from the one error table, then close; nothing reaches the destination.
 */
import type net from 'node:net';
import { CidrSet } from '../../core/address';
import type { ClientConnection } from '../../core/connection';
import { ErrorCode, ProxyError, toProxyError } from '../../core/errors';
import { socketFd, tcpInfoRaw } from '../../sys/socket';
import { readSysctl } from '../../sys/sysctl';
import { handshakeTimeLeft, type ProxyContext } from '../context';
import { convertErrorValue, refuse, refusalBytes } from '../refusal';
import { closeGracefully } from '../socks/server';
import { HandshakeReader } from '../socks/reader';
import { tunnel } from '../tunnel';
import { decodeConvertTlvs, encodeConvertMessage, parseConvertFrame, parseTcpOptions, type ConvertTlv } from './codec';

/** A refusal whose Error TLV carries a value only this front end knows (the refused option kinds). */
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

/**
 * RFC 8803 §7: option kinds a Connect may carry that the converter ignores and never announces:
 * EOL and NOP (padding) and MSS (§7.1) and Window Scale (§7.2), whose values belong to the
 * converter's own stack, and SACK blocks (§7.3), which no SYN carries.
 */
const IGNORED_OPTIONS = new Set([0, 1, 2, 3, 5]);
const SACK_PERMITTED = 4;
const TIMESTAMPS = 8;
const MPTCP_OPTION = 30;

/**
 * The option kinds a Connect may ask for on the upstream SYN, which Info announces (§6.2.4):
 * SACK-permitted (§7.3) and Timestamps (§7.4) while this namespace's net.ipv4.tcp_sack /
 * tcp_timestamps make Linux put them on every SYN (it has no per-socket switch for either, so
 * honouring one is checking its sysctl), and MPTCP (§7.5) when the upstream side tries it. Read
 * when asked (an Info, or a Connect with options), so a sysctl change counts at once.
 */
export function honouredTcpOptions(upstreamMptcp: boolean, sysctl: (name: string) => string | null = readSysctl): number[] {
  const on = (name: string): boolean => Number(sysctl(name) ?? 0) > 0;
  return [...(on('net.ipv4.tcp_sack') ? [SACK_PERMITTED] : []), ...(on('net.ipv4.tcp_timestamps') ? [TIMESTAMPS] : []), ...(upstreamMptcp ? [MPTCP_OPTION] : [])];
}

/** Kinds of `requested` the converter can neither ignore nor honour, each once: Unsupported TCP Option's value (§6.2.8). */
export function refusedTcpOptions(requested: readonly number[], honoured: readonly number[]): number[] {
  return [...new Set(requested.filter((k) => !IGNORED_OPTIONS.has(k) && !honoured.includes(k)))];
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
  /** The whole message once read: a Malformed Message refusal echoes it. */
  private frame: Buffer | null = null;

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
      const frame = (this.frame = await this.reader.read(parseConvertFrame));
      if (!this.ctx.access.clientAllowed(this.conn.clientAddress)) throw new ProxyError(ErrorCode.ClientDenied, this.conn.clientAddress);
      const tlvs = decodeConvertTlvs(frame);
      if (tlvs.kind === 'error') throw new ProxyError(tlvs.code, tlvs.detail);
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
    // The client's bytes behind the message go in the upstream SYN where the kernel allows.
    const upstream = await this.ctx.upstream.connect(dest, this.conn, this.reader.detach());
    if (this.conn.socket.destroyed) return void upstream.destroy();
    this.finished = true;
    this.conn.socket.write(encodeConvertMessage([{ type: 'extended-tcp-header', header: negotiatedOptions(upstream) }]));
    await tunnel(this.conn, upstream, this.ctx);
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

  /** Options the client wants on the upstream SYN: ignored or honoured (see above), the rest refused by kind. */
  private checkTcpOptions(raw: Buffer): void {
    const opts = parseTcpOptions(raw);
    if (opts.kind === 'error') throw new ProxyError(opts.code, opts.detail);
    if (opts.kind !== 'ok' || opts.value.length === 0) return;
    const refused = refusedTcpOptions(
      opts.value.map((o) => o.kind),
      honouredTcpOptions(this.ctx.config.upstream.mptcp),
    );
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
    // Before the message is whole, what has arrived is what a Malformed Message echoes.
    const received = this.reader.detach();
    const dest = this.conn.destination;
    const value = err instanceof ConvertRefusal ? err.value : convertErrorValue(err.code, { message: this.frame ?? received, ipv6: dest?.host.includes(':') ?? false });
    closeGracefully(this.conn.socket, refusalBytes('convert', err.code, undefined, value));
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

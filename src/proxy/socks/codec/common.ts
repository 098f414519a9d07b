/**
 * Shared pieces of the SOCKS codecs: the incremental parse result, and the SOCKS5 address
 * (ATYP + address + port) used by requests, replies and UDP datagram headers alike.
 * Everything here is pure: Buffers in, values out, never throws on input bytes.
 */
import net from 'node:net';
import { ipv6ToBytes } from '../../../core/address';
import { ErrorCode } from '../../../core/errors';

/** What every parse function returns for the bytes buffered so far. */
export type ParseResult<T> =
  | { kind: 'incomplete' }
  | { kind: 'ok'; value: T; consumed: number }
  | { kind: 'error'; code: ErrorCode; detail: string };

export const INCOMPLETE: { kind: 'incomplete' } = Object.freeze({ kind: 'incomplete' });

export function ok<T>(value: T, consumed: number): ParseResult<T> {
  return { kind: 'ok', value, consumed };
}

export function fail<T = never>(code: ErrorCode, detail: string): ParseResult<T> {
  return { kind: 'error', code, detail };
}

export const ATYP = { IPv4: 0x01, Domain: 0x03, IPv6: 0x04 } as const;
export type Atyp = (typeof ATYP)[keyof typeof ATYP];

export interface SocksAddress {
  atyp: Atyp;
  /** Dotted quad, canonical IPv6 text, or the domain name as sent. */
  host: string;
  port: number;
}

export const MAX_NAME_BYTES = 255;

/**
 * Host names are handed to the resolver: refuse control characters, spaces and NUL, which no
 * valid name contains and which would only confuse logs and resolvers.
 */
export function validName(bytes: Buffer): boolean {
  if (bytes.length < 1 || bytes.length > MAX_NAME_BYTES) return false;
  for (const b of bytes) if (b <= 0x20 || b === 0x7f) return false;
  return true;
}

export function ipv4FromBytes(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

export function ipv4ToBytes(ip: string): Buffer {
  return Buffer.from(ip.split('.').map(Number));
}

export function ipv6FromBytes(b: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(at + i).toString(16));
  // SocketAddress formats with inet_ntop: the canonical (RFC 5952) text.
  return new net.SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/** Parse ATYP, address and port starting at `at`. `consumed` counts from `at`. */
export function parseSocksAddress(buf: Buffer, at: number): ParseResult<SocksAddress> {
  if (buf.length < at + 1) return INCOMPLETE;
  const atyp = buf[at]!;
  switch (atyp) {
    case ATYP.IPv4:
      if (buf.length < at + 7) return INCOMPLETE;
      return ok({ atyp, host: ipv4FromBytes(buf, at + 1), port: buf.readUInt16BE(at + 5) }, 7);
    case ATYP.IPv6:
      if (buf.length < at + 19) return INCOMPLETE;
      return ok({ atyp, host: ipv6FromBytes(buf, at + 1), port: buf.readUInt16BE(at + 17) }, 19);
    case ATYP.Domain: {
      if (buf.length < at + 2) return INCOMPLETE;
      const len = buf[at + 1]!;
      if (len === 0) return fail(ErrorCode.BadRequest, 'empty domain name');
      if (buf.length < at + 2 + len + 2) return INCOMPLETE;
      const name = buf.subarray(at + 2, at + 2 + len);
      if (!validName(name)) return fail(ErrorCode.BadRequest, 'domain name contains control characters or spaces');
      return ok({ atyp, host: name.toString('latin1'), port: buf.readUInt16BE(at + 2 + len) }, 2 + len + 2);
    }
    default:
      return fail(ErrorCode.AddressTypeUnsupported, `address type 0x${atyp.toString(16).padStart(2, '0')}`);
  }
}

/**
 * ATYP + address + port. IP literals go out as IPv4/IPv6, anything else as a domain name.
 * Throws RangeError for names over 255 bytes or ports out of range: callers pass their own data.
 */
export function encodeSocksAddress(host: string, port: number): Buffer {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`port ${port} out of range`);
  const portBytes = Buffer.alloc(2);
  portBytes.writeUInt16BE(port);
  if (net.isIPv4(host)) return Buffer.concat([Buffer.of(ATYP.IPv4), ipv4ToBytes(host), portBytes]);
  if (net.isIPv6(host)) return Buffer.concat([Buffer.of(ATYP.IPv6), ipv6ToBytes(host), portBytes]);
  const name = Buffer.from(host, 'latin1');
  if (name.length < 1 || name.length > MAX_NAME_BYTES) throw new RangeError(`domain name of ${name.length} bytes`);
  return Buffer.concat([Buffer.of(ATYP.Domain, name.length), name, portBytes]);
}

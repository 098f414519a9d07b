/**
 * SOCKS 5 codec (RFC 1928) with username/password sub-negotiation (RFC 1929), pure over Buffers:
 *
 *   greeting:  VER=5 | NMETHODS | METHODS...            → VER=5 | METHOD
 *   auth:      VER=1 | ULEN | UNAME | PLEN | PASSWD      → VER=1 | STATUS
 *   request:   VER=5 | CMD | RSV | ATYP | DST.ADDR | DST.PORT
 *   reply:     VER=5 | REP | RSV | ATYP | BND.ADDR | BND.PORT
 *   UDP:       RSV(2) | FRAG | ATYP | DST.ADDR | DST.PORT | DATA   (§7)
 */
import { ErrorCode } from '../../../core/errors';
import { encodeSocksAddress, fail, INCOMPLETE, ok, parseSocksAddress, type ParseResult, type SocksAddress } from './common';

export const SOCKS5_VERSION = 0x05;
export const AUTH_VERSION = 0x01;

export const Socks5Method = { NoAuth: 0x00, Gssapi: 0x01, UserPass: 0x02, NoAcceptable: 0xff } as const;

export const Socks5Command = { Connect: 0x01, Bind: 0x02, UdpAssociate: 0x03 } as const;
export type Socks5Command = (typeof Socks5Command)[keyof typeof Socks5Command];

export const Socks5Reply = { Succeeded: 0x00 } as const;

export const AuthStatus = { Success: 0x00, Failure: 0x01 } as const;

export interface Socks5Greeting {
  methods: number[];
}

export interface Socks5Credentials {
  user: string;
  password: string;
}

export interface Socks5Request {
  command: Socks5Command;
  address: SocksAddress;
}

export interface Socks5Datagram {
  frag: number;
  address: SocksAddress;
  data: Buffer;
}

export function versionError<T>(got: number, want: number): ParseResult<T> {
  return fail(ErrorCode.VersionUnsupported, `version byte 0x${got.toString(16)}, expected 0x${want.toString(16)}`);
}

/** Every message a SOCKS5 client sends starts with a version byte and one more: that byte, or why not. */
function afterVersion(buf: Buffer, version: number): number | ParseResult<never> {
  if (buf.length < 1) return INCOMPLETE;
  if (buf[0] !== version) return versionError(buf[0]!, version);
  if (buf.length < 2) return INCOMPLETE;
  return buf[1]!;
}

export function parseSocks5Greeting(buf: Buffer): ParseResult<Socks5Greeting> {
  const n = afterVersion(buf, SOCKS5_VERSION);
  if (typeof n !== 'number') return n;
  if (n === 0) return fail(ErrorCode.BadRequest, 'greeting lists no methods');
  if (buf.length < 2 + n) return INCOMPLETE;
  return ok({ methods: [...buf.subarray(2, 2 + n)] }, 2 + n);
}

export function encodeMethodSelection(method: number): Buffer {
  return Buffer.of(SOCKS5_VERSION, method);
}

/** RFC 1929. ULEN must be 1..255; an empty password is accepted here and fails authentication. */
export function parseSocks5Auth(buf: Buffer): ParseResult<Socks5Credentials> {
  const ulen = afterVersion(buf, AUTH_VERSION);
  if (typeof ulen !== 'number') return ulen;
  if (ulen === 0) return fail(ErrorCode.BadRequest, 'empty user name');
  if (buf.length < 2 + ulen + 1) return INCOMPLETE;
  const plen = buf[2 + ulen]!;
  const end = 3 + ulen + plen;
  if (buf.length < end) return INCOMPLETE;
  return ok({ user: buf.toString('utf8', 2, 2 + ulen), password: buf.toString('utf8', 3 + ulen, end) }, end);
}

export function encodeAuthStatus(status: number): Buffer {
  return Buffer.of(AUTH_VERSION, status);
}

/**
 * The command is checked before the address so that an unknown command is answered 0x07 even
 * when the rest is garbage. RSV is not checked: some clients send junk there, it carries nothing.
 */
export function parseSocks5Request(buf: Buffer): ParseResult<Socks5Request> {
  const command = afterVersion(buf, SOCKS5_VERSION);
  if (typeof command !== 'number') return command;
  if (command !== Socks5Command.Connect && command !== Socks5Command.Bind && command !== Socks5Command.UdpAssociate) {
    return fail(ErrorCode.CommandUnsupported, `SOCKS5 command 0x${command.toString(16)}`);
  }
  if (buf.length < 3) return INCOMPLETE;
  const addr = parseSocksAddress(buf, 3);
  if (addr.kind !== 'ok') return addr;
  return ok({ command, address: addr.value }, 3 + addr.consumed);
}

/** Failure replies carry 0.0.0.0:0: there is no bound address to report. */
export function encodeSocks5Reply(code: number, host = '0.0.0.0', port = 0): Buffer {
  return Buffer.concat([Buffer.of(SOCKS5_VERSION, code, 0), encodeSocksAddress(host, port)]);
}

/**
 * A whole UDP datagram (never split, so "incomplete" means truncated). FRAG is returned, not
 * judged: the relay drops fragments (§7 lets a server without reassembly do so).
 */
export function parseSocks5Datagram(buf: Buffer): ParseResult<Socks5Datagram> {
  if (buf.length < 3) return INCOMPLETE;
  if (buf[0] !== 0 || buf[1] !== 0) return fail(ErrorCode.BadRequest, 'UDP header reserved bytes not zero');
  const addr = parseSocksAddress(buf, 3);
  if (addr.kind !== 'ok') return addr;
  const headerLength = 3 + addr.consumed;
  return ok({ frag: buf[2]!, address: addr.value, data: buf.subarray(headerLength) }, buf.length);
}

export function encodeSocks5Datagram(host: string, port: number, data: Buffer, frag = 0): Buffer {
  return Buffer.concat([Buffer.of(0, 0, frag), encodeSocksAddress(host, port), data]);
}

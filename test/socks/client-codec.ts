/**
 * The client side of SOCKS 4/4a and 5, for tests: requests as a client encodes them and replies
 * as a client parses them, over the same wire helpers as the proxy's codec (src/proxy/socks/codec).
 */
import net from 'node:net';
import { ErrorCode } from '../../src/core/errors';
import { encodeSocksAddress, fail, INCOMPLETE, ipv4FromBytes, ipv4ToBytes, ok, parseSocksAddress, validName, type ParseResult, type SocksAddress } from '../../src/proxy/socks/codec/common';
import { MAX_USERID_BYTES, SOCKS4_VERSION, type Socks4Request } from '../../src/proxy/socks/codec/socks4';
import { AUTH_VERSION, SOCKS5_VERSION, versionError, type Socks5Credentials } from '../../src/proxy/socks/codec/socks5';

/** Encode a SOCKS4/4a request. Throws RangeError on fields that cannot be encoded (tests pass their own data). */
export function encodeSocks4Request(req: Omit<Socks4Request, 'socks4a'> & { socks4a?: boolean }): Buffer {
  const userId = Buffer.from(req.userId, 'utf8');
  if (userId.length > MAX_USERID_BYTES || userId.includes(0)) throw new RangeError('user id too long or contains NUL');
  const head = Buffer.alloc(8);
  head[0] = SOCKS4_VERSION;
  head[1] = req.command;
  head.writeUInt16BE(req.port, 2);
  const ip = net.isIPv4(req.host) && !req.socks4a ? ipv4ToBytes(req.host) : null;
  // 0.0.0.x (x≠0) means "4a name follows" on the wire, so such an address can only go as a name.
  if (ip && !(ip[0] === 0 && ip[1] === 0 && ip[2] === 0 && ip[3] !== 0)) {
    ip.copy(head, 4);
    return Buffer.concat([head, userId, Buffer.of(0)]);
  }
  const name = Buffer.from(req.host, 'latin1');
  if (!validName(name)) throw new RangeError(`host name "${req.host}" cannot be sent`);
  head[7] = 1;
  return Buffer.concat([head, userId, Buffer.of(0), name, Buffer.of(0)]);
}

export interface ParsedSocks4Reply {
  code: number;
  host: string;
  port: number;
}

/** Parse a SOCKS4 reply. */
export function parseSocks4Reply(buf: Buffer): ParseResult<ParsedSocks4Reply> {
  if (buf.length < 8) return INCOMPLETE;
  if (buf[0] !== 0) return fail(ErrorCode.VersionUnsupported, `reply version byte 0x${buf[0]!.toString(16)}`);
  return ok({ code: buf[1]!, port: buf.readUInt16BE(2), host: ipv4FromBytes(buf, 4) }, 8);
}

export function encodeSocks5Greeting(methods: readonly number[]): Buffer {
  if (methods.length < 1 || methods.length > 255) throw new RangeError(`${methods.length} methods`);
  return Buffer.from([SOCKS5_VERSION, methods.length, ...methods]);
}

export function encodeSocks5Auth(creds: Socks5Credentials): Buffer {
  const user = Buffer.from(creds.user, 'utf8');
  const password = Buffer.from(creds.password, 'utf8');
  if (user.length < 1 || user.length > 255 || password.length > 255) throw new RangeError('user name or password length out of range');
  return Buffer.concat([Buffer.of(AUTH_VERSION, user.length), user, Buffer.of(password.length), password]);
}

export function encodeSocks5Request(command: number, host: string, port: number): Buffer {
  return Buffer.concat([Buffer.of(SOCKS5_VERSION, command, 0), encodeSocksAddress(host, port)]);
}

export interface ParsedSocks5Reply {
  code: number;
  address: SocksAddress;
}

export function parseSocks5Reply(buf: Buffer): ParseResult<ParsedSocks5Reply> {
  if (buf.length < 1) return INCOMPLETE;
  if (buf[0] !== SOCKS5_VERSION) return versionError(buf[0]!, SOCKS5_VERSION);
  if (buf.length < 3) return INCOMPLETE;
  const addr = parseSocksAddress(buf, 3);
  if (addr.kind !== 'ok') return addr;
  return ok({ code: buf[1]!, address: addr.value }, 3 + addr.consumed);
}

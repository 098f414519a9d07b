/**
 * SOCKS 4 and 4a codec (the de-facto spec "SOCKS: A protocol for TCP proxy across firewalls" and
 * the 4a extension): request parsing and reply encoding, pure over Buffers.
 *
 *   request: VN=4 | CD | DSTPORT(2) | DSTIP(4) | USERID... 0x00 [| HOSTNAME... 0x00 when DSTIP=0.0.0.x, x≠0]
 *   reply:   VN=0 | CD | DSTPORT(2) | DSTIP(4)
 */
import net from 'node:net';
import { ErrorCode } from '../../../core/errors';
import { fail, INCOMPLETE, ipv4FromBytes, ipv4ToBytes, MAX_NAME_BYTES, ok, validName, type ParseResult } from './common';

export const SOCKS4_VERSION = 0x04;

export const Socks4Command = { Connect: 0x01, Bind: 0x02 } as const;
export type Socks4Command = (typeof Socks4Command)[keyof typeof Socks4Command];

export const Socks4Reply = { Granted: 0x5a, Rejected: 0x5b, NoIdentd: 0x5c, IdentMismatch: 0x5d } as const;

/** RFC-less but universal limit: user ids are short; 255 bytes keeps the buffer bounded. */
export const MAX_USERID_BYTES = 255;

export interface Socks4Request {
  command: Socks4Command;
  port: number;
  /** Dotted quad for SOCKS4, the host name for SOCKS4a. */
  host: string;
  /** True when the request used the 4a host name extension. */
  socks4a: boolean;
  /** The USERID field, decoded as UTF-8 ('' when empty). */
  userId: string;
}

/** Finds the NUL ending a string field that starts at `from`, bounded by `max` bytes. */
function terminated(buf: Buffer, from: number, max: number): number | 'incomplete' | 'too-long' {
  const end = buf.indexOf(0, from);
  if (end !== -1 && end - from <= max) return end;
  if (end === -1 && buf.length - from <= max) return 'incomplete';
  return 'too-long';
}

export function parseSocks4Request(buf: Buffer): ParseResult<Socks4Request> {
  if (buf.length < 1) return INCOMPLETE;
  if (buf[0] !== SOCKS4_VERSION) return fail(ErrorCode.VersionUnsupported, `version byte 0x${buf[0]!.toString(16)}`);
  if (buf.length < 2) return INCOMPLETE;
  const command = buf[1]!;
  if (command !== Socks4Command.Connect && command !== Socks4Command.Bind) {
    return fail(ErrorCode.CommandUnsupported, `SOCKS4 command 0x${command.toString(16)}`);
  }
  if (buf.length < 8) return INCOMPLETE;
  const port = buf.readUInt16BE(2);
  const ip = ipv4FromBytes(buf, 4);
  const userEnd = terminated(buf, 8, MAX_USERID_BYTES);
  if (userEnd === 'incomplete') return INCOMPLETE;
  if (userEnd === 'too-long') return fail(ErrorCode.BadRequest, `user id longer than ${MAX_USERID_BYTES} bytes`);
  const userId = buf.toString('utf8', 8, userEnd);
  // 4a: 0.0.0.x with x != 0 is an invalid address that says "a host name follows".
  const socks4a = buf[4] === 0 && buf[5] === 0 && buf[6] === 0 && buf[7] !== 0;
  if (!socks4a) return ok({ command, port, host: ip, socks4a, userId }, userEnd + 1);
  const hostEnd = terminated(buf, userEnd + 1, MAX_NAME_BYTES);
  if (hostEnd === 'incomplete') return INCOMPLETE;
  if (hostEnd === 'too-long') return fail(ErrorCode.BadRequest, `host name longer than ${MAX_NAME_BYTES} bytes`);
  const name = buf.subarray(userEnd + 1, hostEnd);
  if (!validName(name)) return fail(ErrorCode.BadRequest, name.length === 0 ? 'empty SOCKS4a host name' : 'host name contains control characters or spaces');
  return ok({ command, port, host: name.toString('latin1'), socks4a, userId }, hostEnd + 1);
}

/** VN=0, CD, DSTPORT, DSTIP. Non-IPv4 addresses are sent as 0.0.0.0 (SOCKS4 has no other). */
export function encodeSocks4Reply(code: number, host = '0.0.0.0', port = 0): Buffer {
  const out = Buffer.alloc(8);
  out[1] = code;
  out.writeUInt16BE(port & 0xffff, 2);
  if (net.isIPv4(host)) ipv4ToBytes(host).copy(out, 4);
  return out;
}

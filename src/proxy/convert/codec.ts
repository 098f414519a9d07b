/**
 * The 0-RTT TCP Convert Protocol (RFC 8803) codec: the fixed header (Version 1, Total Length in
 * 32-bit words, Magic Number 0x2263) and every TLV the RFC defines (Info, Connect, Extended TCP
 * Header, Supported TCP Extensions, Cookie, Error). Pure: Buffers in, values out; parsing never
 * throws on input bytes, encoding throws RangeError only for the caller's own oversized data.
 * TLV lengths count 32-bit words including the Type and Length bytes; values are zero-padded
 * to a word boundary.
 */
import { ipv6ToBytes } from '../../core/address';
import { ErrorCode } from '../../core/errors';
import { fail, INCOMPLETE, ipv4FromBytes, ipv6FromBytes, ok, type ParseResult } from '../socks/codec/common';

export const CONVERT_VERSION = 1;
export const CONVERT_MAGIC = 0x2263;
const WORD = 4;
export const HEADER_BYTES = WORD;
/** Total Length is one byte of words. */
export const MAX_MESSAGE_BYTES = 255 * WORD;

export const TlvType = { Info: 1, Connect: 10, ExtendedTcpHeader: 20, SupportedTcpExtensions: 21, Cookie: 22, Error: 30 } as const;

/** RFC 8803 §6.2.8 / the IANA "Convert Errors" registry. */
export const ConvertError = {
  UnsupportedVersion: 0,
  MalformedMessage: 1,
  UnsupportedMessage: 2,
  MissingCookie: 3,
  NotAuthorized: 32,
  UnsupportedTcpOption: 33,
  ResourceExceeded: 64,
  NetworkFailure: 65,
  ConnectionReset: 96,
  DestinationUnreachable: 97,
} as const;

export type ConvertTlv =
  | { type: 'info' }
  /** host: dotted quad for an IPv4-mapped address, canonical IPv6 text otherwise. */
  | { type: 'connect'; host: string; port: number; options: Buffer }
  | { type: 'extended-tcp-header'; header: Buffer }
  | { type: 'supported-tcp-extensions'; kinds: number[] }
  | { type: 'cookie'; cookie: Buffer }
  | { type: 'error'; code: number; value: Buffer };

/** Round up to a whole number of 32-bit words. */
const padTo = (n: number): number => Math.ceil(n / WORD) * WORD;

/**
 * A complete Convert message off the front of `buf`: the header checked, all Total Length
 * bytes present. The value is the whole message (header included), for decodeConvertTlvs.
 */
export function parseConvertFrame(buf: Buffer): ParseResult<Buffer> {
  if (buf.length < HEADER_BYTES) return INCOMPLETE;
  const version = buf[0]!;
  if (version !== CONVERT_VERSION) return fail(ErrorCode.VersionUnsupported, `Convert version ${version}`);
  const magic = buf.readUInt16BE(2);
  if (magic !== CONVERT_MAGIC) return fail(ErrorCode.BadRequest, `magic number 0x${magic.toString(16).padStart(4, '0')}`);
  const total = buf[1]! * WORD;
  if (total === 0) return fail(ErrorCode.BadRequest, 'Total Length 0');
  if (buf.length < total) return INCOMPLETE;
  return ok(buf.subarray(0, total), total);
}

/** The TLVs of a message returned by parseConvertFrame. */
export function decodeConvertTlvs(frame: Buffer): ParseResult<ConvertTlv[]> {
  const tlvs: ConvertTlv[] = [];
  let at = HEADER_BYTES;
  while (at < frame.length) {
    const type = frame[at]!;
    const len = frame[at + 1]! * WORD;
    if (len === 0) return fail(ErrorCode.BadRequest, `TLV ${type} with Length 0`);
    if (at + len > frame.length) return fail(ErrorCode.BadRequest, `TLV ${type} of ${len} bytes overruns the ${frame.length}-byte message`);
    const r = decodeTlv(type, frame.subarray(at, at + len));
    if (r.kind !== 'ok') return r as ParseResult<ConvertTlv[]>;
    tlvs.push(r.value);
    at += len;
  }
  return ok(tlvs, frame.length);
}

/** Header and TLVs in one step (clients, tests). */
export function parseConvertMessage(buf: Buffer): ParseResult<ConvertTlv[]> {
  const f = parseConvertFrame(buf);
  if (f.kind !== 'ok') return f as ParseResult<ConvertTlv[]>;
  const t = decodeConvertTlvs(f.value);
  return t.kind === 'ok' ? ok(t.value, f.consumed) : t;
}

function decodeTlv(type: number, t: Buffer): ParseResult<ConvertTlv> {
  switch (type) {
    case TlvType.Info:
      return ok({ type: 'info' }, t.length);
    case TlvType.Connect: {
      if (t.length < 20) return fail(ErrorCode.BadRequest, `Connect TLV of ${t.length} bytes (at least 20)`);
      const mapped = t.subarray(4, 14).every((b) => b === 0) && t.readUInt16BE(14) === 0xffff;
      const host = mapped ? ipv4FromBytes(t, 16) : ipv6FromBytes(t, 4);
      return ok({ type: 'connect', port: t.readUInt16BE(2), host, options: Buffer.from(t.subarray(20)) }, t.length);
    }
    case TlvType.ExtendedTcpHeader:
      return ok({ type: 'extended-tcp-header', header: Buffer.from(t.subarray(4)) }, t.length);
    case TlvType.SupportedTcpExtensions:
      // Kind 0 (End of Option List) is no extension: it is the padding.
      return ok({ type: 'supported-tcp-extensions', kinds: [...t.subarray(4)].filter((k) => k !== 0) }, t.length);
    case TlvType.Cookie:
      return ok({ type: 'cookie', cookie: Buffer.from(t.subarray(4)) }, t.length);
    case TlvType.Error:
      return ok({ type: 'error', code: t[2]!, value: Buffer.from(t.subarray(3)) }, t.length);
    default:
      return fail(ErrorCode.CommandUnsupported, `TLV type ${type}`);
  }
}

/** One TLV: Type, Length in words, `body` (whatever follows the Length byte), zero padding. */
function tlv(type: number, body: Buffer): Buffer {
  const len = padTo(2 + body.length);
  if (len > MAX_MESSAGE_BYTES - HEADER_BYTES) throw new RangeError(`TLV ${type} of ${len} bytes`);
  const b = Buffer.alloc(len);
  b[0] = type;
  b[1] = len / WORD;
  body.copy(b, 2);
  return b;
}

const ZERO16 = Buffer.alloc(2);

export function encodeTlv(t: ConvertTlv): Buffer {
  switch (t.type) {
    case 'info':
      return tlv(TlvType.Info, ZERO16);
    case 'connect': {
      const body = Buffer.alloc(18);
      body.writeUInt16BE(t.port, 0);
      connectAddressBytes(t.host).copy(body, 2);
      return tlv(TlvType.Connect, Buffer.concat([body, t.options]));
    }
    case 'extended-tcp-header':
      return tlv(TlvType.ExtendedTcpHeader, Buffer.concat([ZERO16, t.header]));
    case 'supported-tcp-extensions':
      return tlv(TlvType.SupportedTcpExtensions, Buffer.concat([ZERO16, Buffer.from(t.kinds)]));
    case 'cookie':
      return tlv(TlvType.Cookie, Buffer.concat([ZERO16, t.cookie]));
    case 'error':
      return tlv(TlvType.Error, Buffer.concat([Buffer.of(t.code), t.value]));
  }
}

/** 128 bits: IPv6 as is, IPv4 as IPv4-mapped IPv6 (RFC 8803 §6.2.5). */
function connectAddressBytes(host: string): Buffer {
  if (host.includes(':')) return ipv6ToBytes(host);
  const b = Buffer.alloc(16);
  b.writeUInt16BE(0xffff, 10);
  host.split('.').forEach((o, i) => (b[12 + i] = Number(o)));
  return b;
}

/** A whole message: the fixed header, then the TLVs. */
export function encodeConvertMessage(tlvs: readonly ConvertTlv[]): Buffer {
  const body = Buffer.concat(tlvs.map(encodeTlv));
  const total = HEADER_BYTES + body.length;
  if (total > MAX_MESSAGE_BYTES) throw new RangeError(`Convert message of ${total} bytes`);
  const head = Buffer.of(CONVERT_VERSION, total / WORD, CONVERT_MAGIC >> 8, CONVERT_MAGIC & 0xff);
  return Buffer.concat([head, body]);
}

/** Bytes an Error TLV's value may have so the message stays within Total Length's range. */
export const MAX_ERROR_VALUE_BYTES = MAX_MESSAGE_BYTES - HEADER_BYTES - 3;

/** A message carrying one Error TLV. */
export function encodeConvertError(code: number, value: Buffer = Buffer.alloc(0)): Buffer {
  return encodeConvertMessage([{ type: 'error', code, value: value.subarray(0, MAX_ERROR_VALUE_BYTES) }]);
}

export interface TcpOption {
  kind: number;
  /** The option's data after Kind and Length. */
  data: Buffer;
}

/**
 * The TCP options list of a Connect TLV (RFC 9293 §3.1 layout): End of Option List ends it
 * (the rest is padding), No-Operation is skipped, every other option has a Length byte.
 */
export function parseTcpOptions(b: Buffer): ParseResult<TcpOption[]> {
  const out: TcpOption[] = [];
  let at = 0;
  while (at < b.length) {
    const kind = b[at]!;
    if (kind === 0) break;
    if (kind === 1) {
      at++;
      continue;
    }
    const len = b[at + 1];
    if (len === undefined || len < 2 || at + len > b.length) return fail(ErrorCode.BadRequest, `TCP option ${kind} with a bad length`);
    out.push({ kind, data: Buffer.from(b.subarray(at + 2, at + len)) });
    at += len;
  }
  return ok(out, b.length);
}

export function encodeTcpOptions(opts: readonly TcpOption[]): Buffer {
  return Buffer.concat(opts.map((o) => Buffer.concat([Buffer.of(o.kind, o.data.length + 2), o.data])));
}

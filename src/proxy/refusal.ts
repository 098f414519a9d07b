/**
 * The one way a connection is refused or failed, whatever the protocol or the path that found the
 * problem: the connection records the error (its log line and /connections show the code), the
 * 'proxy-error' event counts it (mptcp_proxy_errors_total{code}), one log line in one shape says
 * why (limit hits are summed up by the limit log instead: an overload makes thousands), and the
 * caller's protocol answer goes out. The answers themselves are rendered by refusalBytes, from
 * the one error table in core/errors.ts, so any path that refuses answers byte for byte the same.
 */
import http from 'node:http';
import type { ClientConnection } from '../core/connection';
import type { ProxyError, ErrorCode } from '../core/errors';
import { ERROR_TABLE } from '../core/errors';
import type { ProxyEvents } from '../core/events';
import { isLimitCode } from '../log/limit-log';
import type { Logger } from '../log/logger';
import { CONVERT_VERSION, ConvertError, encodeConvertError } from './convert/codec';
import { encodeSocks4Reply } from './socks/codec/socks4';
import { encodeSocks5Reply } from './socks/codec/socks5';

export const PROXY_AUTH_REALM = 'Basic realm="mptcp-proxy", charset="UTF-8"';

/**
 * Fail `conn` with `err`, count it, log it, then run `answer` (write the protocol's refusal and
 * close, or reset). `conn` is null when the refusal comes before a connection exists (the
 * listener's global limit); `peer` then names the client.
 */
export function refuse(
  ctx: { events: ProxyEvents; log: Logger },
  conn: ClientConnection | null,
  err: ProxyError,
  answer?: () => void,
  peer?: string,
): void {
  conn?.fail(err);
  ctx.events.emit('proxy-error', err, conn, peer);
  if (!isLimitCode(err.code)) ctx.log.log(err.mapping.log, 'refused', refusalFields(conn, err, peer));
  answer?.();
}

function refusalFields(conn: ClientConnection | null, err: ProxyError, peer?: string): Record<string, unknown> {
  if (!conn) return { client: peer ?? 'unknown', code: err.code, detail: err.message };
  return {
    conn: conn.id,
    listener: conn.listener,
    protocol: conn.protocol,
    client: `${conn.clientAddress}:${conn.clientPort}`,
    ...(conn.user ? { user: conn.user } : {}),
    ...(conn.destination ? { destination: `${conn.destination.host}:${conn.destination.port}` } : {}),
    code: err.code,
    detail: err.message,
  };
}

/** What an HTTP refusal says: status, headers and body, for a ServerResponse or a raw socket. */
export function httpRefusal(code: ErrorCode, status = ERROR_TABLE[code].http, close = true): { status: number; headers: Record<string, string | number>; body: string } {
  const body = `${status} ${ERROR_TABLE[code].text}\n`;
  return {
    status,
    headers: {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'X-Mptcp-Proxy-Error': code,
      ...(status === 407 ? { 'Proxy-Authenticate': PROXY_AUTH_REALM } : {}),
      ...(close ? { Connection: 'close' } : {}),
    },
    body,
  };
}

/**
 * An RFC 8803 Error TLV's value (§6.2.8) for `code`: the version supported for Unsupported
 * Version; for Malformed and Unsupported Message the message received, echoed one byte on so it
 * keeps its word alignment; for Destination Unreachable the ICMP code, ICMPv6's for an IPv6
 * destination; none otherwise (the TLV's padding makes it zero, what the others carry).
 */
export function convertErrorValue(code: ErrorCode, o: { message?: Buffer; ipv6?: boolean } = {}): Buffer | undefined {
  const m = ERROR_TABLE[code];
  switch (m.convert) {
    case ConvertError.UnsupportedVersion:
      return Buffer.of(CONVERT_VERSION);
    case ConvertError.MalformedMessage:
    case ConvertError.UnsupportedMessage:
      return o.message && o.message.length > 0 ? Buffer.concat([Buffer.of(0), o.message]) : undefined;
    case ConvertError.DestinationUnreachable: {
      const icmp = o.ipv6 ? m.icmp6 : m.icmp;
      return icmp === undefined ? undefined : Buffer.of(icmp);
    }
    default:
      return undefined;
  }
}

export type RefusalProtocol = 'http' | 'socks5' | 'socks4' | 'convert';

/**
 * The bytes a refusal puts on the wire, for a front end that writes to the socket itself.
 * `convertValue` is a Convert Error TLV's value the front end alone knows (the message echoed
 * back, the refused TCP option kinds); by default the version supported, the ICMP code, or none.
 */
export function refusalBytes(protocol: RefusalProtocol, code: ErrorCode, httpStatus?: number, convertValue?: Buffer): Buffer {
  const m = ERROR_TABLE[code];
  if (protocol === 'socks5') return encodeSocks5Reply(m.socks5);
  if (protocol === 'socks4') return encodeSocks4Reply(m.socks4);
  if (protocol === 'convert') return encodeConvertError(m.convert, convertValue ?? convertErrorValue(code));
  const r = httpRefusal(code, httpStatus);
  const head = Object.entries(r.headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return Buffer.from(`HTTP/1.1 ${r.status} ${http.STATUS_CODES[r.status]}\r\n${head}\r\n${r.body}`);
}

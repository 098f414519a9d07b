/**
 * Typed proxy errors with stable codes, and the one table that maps each code to what every
 * protocol says about it. Protocol front ends never pick a status or reply code themselves.
 */

export const ErrorCode = {
  BadRequest: 'MPX_BAD_REQUEST',
  ClientDenied: 'MPX_CLIENT_DENIED',
  DestDenied: 'MPX_DEST_DENIED',
  PortDenied: 'MPX_PORT_DENIED',
  AuthRequired: 'MPX_AUTH_REQUIRED',
  AuthFailed: 'MPX_AUTH_FAILED',
  AuthBusy: 'MPX_AUTH_BUSY',
  DnsFailed: 'MPX_DNS_FAILED',
  ConnectRefused: 'MPX_CONNECT_REFUSED',
  NetUnreachable: 'MPX_NET_UNREACHABLE',
  HostUnreachable: 'MPX_HOST_UNREACHABLE',
  ConnectTimeout: 'MPX_CONNECT_TIMEOUT',
  UpstreamReset: 'MPX_UPSTREAM_RESET',
  CommandUnsupported: 'MPX_COMMAND_UNSUPPORTED',
  AddressTypeUnsupported: 'MPX_ADDRESS_TYPE_UNSUPPORTED',
  VersionUnsupported: 'MPX_VERSION_UNSUPPORTED',
  TcpOptionUnsupported: 'MPX_TCP_OPTION_UNSUPPORTED',
  HandshakeTimeout: 'MPX_HANDSHAKE_TIMEOUT',
  IdleTimeout: 'MPX_IDLE_TIMEOUT',
  LimitReached: 'MPX_LIMIT_REACHED',
  ParentsDown: 'MPX_PARENTS_DOWN',
  ParentRefused: 'MPX_PARENT_REFUSED',
  Internal: 'MPX_INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface ErrorMapping {
  /** HTTP status sent to an HTTP proxy client. */
  http: number;
  /** SOCKS5 reply field (RFC 1928 §6). */
  socks5: number;
  /** SOCKS4 reply code: 0x5B rejected or failed, the only failure SOCKS4 clients act on. */
  socks4: number;
  /** RFC 8803 Error TLV code sent to a Convert client (§6.2.8). */
  convert: number;
  /** ICMP Destination Unreachable code this failure stands for (RFC 792): the Convert error 97's value. */
  icmp?: number;
  /** The same for an IPv6 destination, in ICMPv6's numbering (RFC 4443 §3.1). */
  icmp6?: number;
  /** Log level of the one line written for it. Expected client mistakes stay below warn. */
  log: 'info' | 'warn' | 'error';
  /** Short, stable text for the HTTP body and logs. */
  text: string;
}

const SOCKS4_REJECTED = 0x5b;

/** The only place codes turn into protocol answers. */
export const ERROR_TABLE: Readonly<Record<ErrorCode, ErrorMapping>> = {
  MPX_BAD_REQUEST: { http: 400, socks5: 0x01, socks4: SOCKS4_REJECTED, convert: 1, log: 'info', text: 'malformed request' },
  MPX_CLIENT_DENIED: { http: 403, socks5: 0x02, socks4: SOCKS4_REJECTED, convert: 32, log: 'warn', text: 'client not allowed' },
  MPX_DEST_DENIED: { http: 403, socks5: 0x02, socks4: SOCKS4_REJECTED, convert: 32, log: 'warn', text: 'destination not allowed' },
  MPX_PORT_DENIED: { http: 403, socks5: 0x02, socks4: SOCKS4_REJECTED, convert: 32, log: 'warn', text: 'port not allowed' },
  MPX_AUTH_REQUIRED: { http: 407, socks5: 0x02, socks4: SOCKS4_REJECTED, convert: 3, log: 'info', text: 'proxy authentication required' },
  MPX_AUTH_FAILED: { http: 407, socks5: 0x02, socks4: SOCKS4_REJECTED, convert: 32, log: 'warn', text: 'proxy authentication failed' },
  MPX_AUTH_BUSY: { http: 503, socks5: 0x01, socks4: SOCKS4_REJECTED, convert: 64, log: 'warn', text: 'too many password checks, try again later' },
  MPX_DNS_FAILED: { http: 502, socks5: 0x04, socks4: SOCKS4_REJECTED, convert: 65, log: 'info', text: 'destination name not resolved' },
  MPX_CONNECT_REFUSED: { http: 502, socks5: 0x05, socks4: SOCKS4_REJECTED, convert: 96, log: 'info', text: 'connection refused by destination' },
  MPX_NET_UNREACHABLE: { http: 502, socks5: 0x03, socks4: SOCKS4_REJECTED, convert: 97, icmp: 0, icmp6: 0, log: 'info', text: 'network unreachable' },
  MPX_HOST_UNREACHABLE: { http: 502, socks5: 0x04, socks4: SOCKS4_REJECTED, convert: 97, icmp: 1, icmp6: 3, log: 'info', text: 'host unreachable' },
  MPX_CONNECT_TIMEOUT: { http: 504, socks5: 0x06, socks4: SOCKS4_REJECTED, convert: 65, log: 'info', text: 'connect to destination timed out' },
  MPX_UPSTREAM_RESET: { http: 502, socks5: 0x01, socks4: SOCKS4_REJECTED, convert: 96, log: 'info', text: 'destination reset the connection' },
  MPX_TCP_OPTION_UNSUPPORTED: { http: 400, socks5: 0x01, socks4: SOCKS4_REJECTED, convert: 33, log: 'info', text: 'TCP option not supported' },
  MPX_COMMAND_UNSUPPORTED: { http: 405, socks5: 0x07, socks4: SOCKS4_REJECTED, convert: 2, log: 'info', text: 'command not supported' },
  MPX_ADDRESS_TYPE_UNSUPPORTED: { http: 400, socks5: 0x08, socks4: SOCKS4_REJECTED, convert: 1, log: 'info', text: 'address type not supported' },
  MPX_VERSION_UNSUPPORTED: { http: 400, socks5: 0x01, socks4: SOCKS4_REJECTED, convert: 0, log: 'info', text: 'protocol version not supported' },
  MPX_HANDSHAKE_TIMEOUT: { http: 408, socks5: 0x01, socks4: SOCKS4_REJECTED, convert: 1, log: 'info', text: 'handshake timed out' },
  MPX_IDLE_TIMEOUT: { http: 504, socks5: 0x01, socks4: SOCKS4_REJECTED, convert: 65, log: 'info', text: 'idle timeout' },
  MPX_LIMIT_REACHED: { http: 503, socks5: 0x01, socks4: SOCKS4_REJECTED, convert: 64, log: 'warn', text: 'connection limit reached' },
  // Every parent proxy of the route is down or failed at connect: the proxy itself cannot route
  // (SOCKS5 general failure; RFC 8803 Network Failure).
  MPX_PARENTS_DOWN: { http: 502, socks5: 0x01, socks4: SOCKS4_REJECTED, convert: 65, log: 'warn', text: 'no parent proxy available' },
  // The parent answered, but refused or failed the request for a reason it did not name more precisely.
  MPX_PARENT_REFUSED: { http: 502, socks5: 0x01, socks4: SOCKS4_REJECTED, convert: 65, log: 'info', text: 'parent proxy refused the request' },
  MPX_INTERNAL: { http: 500, socks5: 0x01, socks4: SOCKS4_REJECTED, convert: 65, log: 'error', text: 'internal proxy error' },
};

export class ProxyError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ? `${ERROR_TABLE[code].text}: ${detail}` : ERROR_TABLE[code].text, options);
    this.name = 'ProxyError';
    this.code = code;
  }
  get mapping(): ErrorMapping {
    return ERROR_TABLE[this.code];
  }
}

/** Socket errnos from connect() and DNS lookups, mapped to proxy codes. */
export const ERRNO_TO_CODE: Readonly<Record<string, ErrorCode>> = {
  ECONNREFUSED: ErrorCode.ConnectRefused,
  ENETUNREACH: ErrorCode.NetUnreachable,
  EHOSTUNREACH: ErrorCode.HostUnreachable,
  EHOSTDOWN: ErrorCode.HostUnreachable,
  ETIMEDOUT: ErrorCode.ConnectTimeout,
  ENOTFOUND: ErrorCode.DnsFailed,
  EAI_AGAIN: ErrorCode.DnsFailed,
  EAI_NONAME: ErrorCode.DnsFailed,
  EAI_NODATA: ErrorCode.DnsFailed,
  ECONNRESET: ErrorCode.UpstreamReset,
  EPIPE: ErrorCode.UpstreamReset,
};

/** Turn anything thrown into a ProxyError; unknown failures become MPX_INTERNAL. */
export function toProxyError(err: unknown): ProxyError {
  if (err instanceof ProxyError) return err;
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const code = (errno && ERRNO_TO_CODE[errno]) || ErrorCode.Internal;
  return new ProxyError(code, message, { cause: err });
}

/**
 * An error of a subsystem that never reaches a client (kernel view, sniffer, MSS clamp, config):
 * a stable code for logs and tests, the subclass's name for the reader.
 */
export class CodedError<C extends string> extends Error {
  constructor(
    readonly code: C,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

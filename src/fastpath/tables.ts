/**
 * Compiles the config into the tables the native fast path looks up: the access ranges (the
 * same lists AccessControl is built from), ports, limits, timeouts, and every refusal's bytes
 * from the one error table, so a refusal reads the same on either path.
 */
import { accessRanges } from '../access/access';
import type { Config } from '../config/schema';
import { ipv6ToBytes, parseCidr } from '../core/address';
import { ERRNO_TO_CODE, ERROR_TABLE, ErrorCode } from '../core/errors';
import { refusalBytes } from '../proxy/refusal';
import { DEFAULT_PIPE_SIZE } from '../relay/splice-relay';

export interface NativeTables {
  /** 18 bytes per range: family (4|6), prefix length, 16 address bytes (IPv4 in the first 4). */
  clients: Buffer;
  denied: Buffer;
  opened: Buffer;
  ports: number[];
  /** Every connection to the TS path: it alone authenticates and dials through parents. */
  handOffAll: boolean;
  upstreamMptcp: boolean;
  maxConnections: number;
  maxPerClient: number;
  handshakeMs: number;
  connectTimeoutMs: number;
  idleMs: number;
  pipeSize: number;
  maxHeadBytes: number;
  maxHeaderLines: number;
  /** By code index (CODES order). */
  refusals: { http: Buffer; socks5: number; socks4: number }[];
  codes: Record<'handshakeTimeout' | 'destDenied' | 'portDenied' | 'connectTimeout' | 'limitReached' | 'internal', number>;
  errnos: Record<string, number>;
}

/** Error codes in the order native indexes them (records carry the index). */
export const CODES: readonly ErrorCode[] = Object.values(ErrorCode);
const index = (code: ErrorCode): number => CODES.indexOf(code);

function cidrTable(ranges: readonly string[]): Buffer {
  const out = Buffer.alloc(ranges.length * 18);
  ranges.forEach((r, i) => {
    const { address, prefix, family } = parseCidr(r);
    const at = i * 18;
    out[at] = family === 'ipv4' ? 4 : 6;
    out[at + 1] = prefix;
    if (family === 'ipv4') address.split('.').forEach((b, k) => (out[at + 2 + k] = Number(b)));
    else ipv6ToBytes(address).copy(out, at + 2);
  });
  return out;
}

export function compileTables(config: Config): NativeTables {
  const ranges = accessRanges(config.access);
  return {
    clients: cidrTable(ranges.clients),
    denied: cidrTable(ranges.denied),
    opened: cidrTable(ranges.opened),
    ports: [...config.access.connectPorts],
    // A reload can add either while native runs (at start, parents keep the fast path off).
    handOffAll: config.access.users.length > 0 || config.upstream.parents.length > 0,
    upstreamMptcp: config.upstream.mptcp,
    maxConnections: config.limits.maxConnections,
    maxPerClient: config.limits.maxConnectionsPerClient,
    handshakeMs: config.timeouts.handshakeMs,
    connectTimeoutMs: config.upstream.connectTimeoutMs,
    idleMs: config.timeouts.idleMs,
    pipeSize: DEFAULT_PIPE_SIZE,
    // Well inside Node's own head limit, so a head native passes is one Node would have taken.
    maxHeadBytes: Math.floor(config.limits.maxHeaderBytes / 2),
    maxHeaderLines: config.limits.maxHeaderLines,
    refusals: CODES.map((code) => ({ http: refusalBytes('http', code), socks5: ERROR_TABLE[code].socks5, socks4: ERROR_TABLE[code].socks4 })),
    codes: {
      handshakeTimeout: index(ErrorCode.HandshakeTimeout),
      destDenied: index(ErrorCode.DestDenied),
      portDenied: index(ErrorCode.PortDenied),
      connectTimeout: index(ErrorCode.ConnectTimeout),
      limitReached: index(ErrorCode.LimitReached),
      internal: index(ErrorCode.Internal),
    },
    errnos: Object.fromEntries(Object.entries(ERRNO_TO_CODE).map(([errno, code]) => [errno, index(code)])),
  };
}

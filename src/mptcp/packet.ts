/**
 * A walker over captured frames down to the TCP header: link layers as libpcap delivers them on
 * Linux (Ethernet with VLAN tags, cooked SLL and SLL2, raw IP, BSD loopback), IPv4 and IPv6 with
 * extension headers. It fills a caller-owned record instead of allocating, because it runs once
 * per captured packet; addresses stay as offsets into the frame until someone needs the text.
 */

/** libpcap LINKTYPE_* numbers. */
export const LinkType = {
  Null: 0,
  Ethernet: 1,
  Raw: 101,
  /** DLT_RAW as some Linux libpcap builds report it. */
  RawAlt: 12,
  LinuxSll: 113,
  LinuxSll2: 276,
} as const;

export interface Skipped {
  kind: 'skip';
  reason: string;
}
export interface MalformedFrame {
  kind: 'malformed';
  reason: string;
}

/** One TCP segment located inside a frame. Reused between packets: copy what you keep. */
export interface TcpPacket {
  kind: 'tcp';
  buf: Buffer;
  family: 4 | 6;
  srcOff: number;
  dstOff: number;
  /** 4 or 16. */
  addrLen: number;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  /** Option area, as offsets into buf (end may lie past a short capture: check buf.length). */
  optStart: number;
  optEnd: number;
  /** TCP payload length from the IP header, so it is right even when the capture was cut short. */
  payloadLength: number;
}

export type FrameResult = TcpPacket | Skipped | MalformedFrame;

export const TcpFlag = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20 } as const;

export function newTcpPacket(): TcpPacket {
  return { kind: 'tcp', buf: Buffer.alloc(0), family: 4, srcOff: 0, dstOff: 0, addrLen: 4, srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 0, optStart: 0, optEnd: 0, payloadLength: 0 };
}

// Shared constant results: the hot path allocates nothing to say "not for us".
const skip = (reason: string): Skipped => Object.freeze({ kind: 'skip', reason }) as Skipped;
const bad = (reason: string): MalformedFrame => Object.freeze({ kind: 'malformed', reason }) as MalformedFrame;
const SKIP_LINK = skip('unsupported link type');
const SKIP_ETHERTYPE = skip('not IPv4 or IPv6');
const SKIP_NOT_TCP = skip('not TCP');
const SKIP_FRAGMENT = skip('non-first IP fragment');
const BAD_LINK = bad('link header truncated');
const BAD_IP4 = bad('IPv4 header truncated or invalid');
const BAD_IP6 = bad('IPv6 header truncated');
const BAD_EXT = bad('IPv6 extension header truncated');
const BAD_TCP = bad('TCP header truncated');
const BAD_TCP_OFF = bad('TCP data offset below 5 or past the IP payload');

const ETH_IPV4 = 0x0800;
const ETH_IPV6 = 0x86dd;
const ETH_VLAN = 0x8100;
const ETH_QINQ = 0x88a8;
const ETH_QINQ_OLD = 0x9100;

/** Parse a captured frame; on success fills and returns `out`. */
export function parseFrame(buf: Buffer, linkType: number, out: TcpPacket): FrameResult {
  let p: number;
  let etherType: number;
  switch (linkType) {
    case LinkType.Ethernet: {
      if (buf.length < 14) return BAD_LINK;
      etherType = buf.readUInt16BE(12);
      p = 14;
      // Up to three stacked 802.1Q/802.1ad tags.
      for (let i = 0; i < 3 && (etherType === ETH_VLAN || etherType === ETH_QINQ || etherType === ETH_QINQ_OLD); i++) {
        if (buf.length < p + 4) return BAD_LINK;
        etherType = buf.readUInt16BE(p + 2);
        p += 4;
      }
      break;
    }
    case LinkType.LinuxSll:
      if (buf.length < 16) return BAD_LINK;
      etherType = buf.readUInt16BE(14);
      p = 16;
      break;
    case LinkType.LinuxSll2:
      if (buf.length < 20) return BAD_LINK;
      etherType = buf.readUInt16BE(0);
      p = 20;
      break;
    case LinkType.Raw:
    case LinkType.RawAlt:
      if (buf.length < 1) return BAD_LINK;
      etherType = buf[0]! >> 4 === 6 ? ETH_IPV6 : ETH_IPV4;
      p = 0;
      break;
    case LinkType.Null: {
      if (buf.length < 4) return BAD_LINK;
      // The address family is in host byte order; 2 is AF_INET everywhere, AF_INET6 varies by OS.
      const af = buf.readUInt32LE(0) === 2 || buf.readUInt32BE(0) === 2 ? 2 : 0;
      etherType = af === 2 ? ETH_IPV4 : ETH_IPV6;
      p = 4;
      break;
    }
    default:
      return SKIP_LINK;
  }
  if (etherType === ETH_IPV4) return parseIPv4(buf, p, out);
  if (etherType === ETH_IPV6) return parseIPv6(buf, p, out);
  return SKIP_ETHERTYPE;
}

function parseIPv4(buf: Buffer, p: number, out: TcpPacket): FrameResult {
  if (buf.length < p + 20) return BAD_IP4;
  const vihl = buf[p]!;
  const ihl = (vihl & 0x0f) * 4;
  if (vihl >> 4 !== 4 || ihl < 20 || buf.length < p + ihl) return BAD_IP4;
  let total = buf.readUInt16BE(p + 2);
  // GSO/GRO super-packets seen by a capture may carry total length 0 (BIG TCP): use what is there.
  if (total === 0) total = buf.length - p;
  if (total < ihl) return BAD_IP4;
  if ((buf.readUInt16BE(p + 6) & 0x1fff) !== 0) return SKIP_FRAGMENT;
  if (buf[p + 9] !== 6) return SKIP_NOT_TCP;
  out.family = 4;
  out.addrLen = 4;
  out.srcOff = p + 12;
  out.dstOff = p + 16;
  return parseTcp(buf, p + ihl, total - ihl, out);
}

/** The IPv6 extension headers walked on the way to TCP (RFC 8200 §4), by Next Header value. */
const IPV6_EXT = { hopByHop: 0, routing: 43, fragment: 44, authentication: 51, destinationOptions: 60 } as const;
const IPV6_EXT_VALUES: ReadonlySet<number> = new Set(Object.values(IPV6_EXT));

function parseIPv6(buf: Buffer, p: number, out: TcpPacket): FrameResult {
  if (buf.length < p + 40) return BAD_IP6;
  if (buf[p]! >> 4 !== 6) return BAD_IP6;
  let remaining = buf.readUInt16BE(p + 4);
  if (remaining === 0) remaining = buf.length - p - 40; // jumbogram / BIG TCP
  let next = buf[p + 6]!;
  out.family = 6;
  out.addrLen = 16;
  out.srcOff = p + 8;
  out.dstOff = p + 24;
  let q = p + 40;
  for (let i = 0; i < 8; i++) {
    if (next === 6) return parseTcp(buf, q, remaining, out);
    if (!IPV6_EXT_VALUES.has(next)) return SKIP_NOT_TCP;
    if (buf.length < q + 8) return BAD_EXT;
    let len: number;
    if (next === IPV6_EXT.fragment) {
      if ((buf.readUInt16BE(q + 2) & 0xfff8) !== 0) return SKIP_FRAGMENT;
      len = 8;
    } else if (next === IPV6_EXT.authentication) len = (buf[q + 1]! + 2) * 4;
    else len = (buf[q + 1]! + 1) * 8;
    if (len > remaining) return BAD_EXT;
    next = buf[q]!;
    q += len;
    remaining -= len;
  }
  return SKIP_NOT_TCP;
}

function parseTcp(buf: Buffer, p: number, ipPayload: number, out: TcpPacket): FrameResult {
  if (buf.length < p + 20 || ipPayload < 20) return BAD_TCP;
  const dataOff = (buf[p + 12]! >> 4) * 4;
  if (dataOff < 20 || dataOff > ipPayload) return BAD_TCP_OFF;
  out.buf = buf;
  out.srcPort = buf.readUInt16BE(p);
  out.dstPort = buf.readUInt16BE(p + 2);
  out.seq = buf.readUInt32BE(p + 4);
  out.ack = buf.readUInt32BE(p + 8);
  out.flags = buf[p + 13]!;
  out.window = buf.readUInt16BE(p + 14);
  out.optStart = p + 20;
  out.optEnd = p + dataOff;
  out.payloadLength = ipPayload - dataOff;
  return out;
}

/** Text form of an address held in a buffer: dotted quad, or RFC 5952 IPv6. */
export function formatIp(b: Buffer, off: number, len: number): string {
  if (len === 4) return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(off + 2 * i));
  // Longest run of two or more zero groups becomes "::" (first one wins a tie).
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) (bestAt = i), (bestLen = j - i);
    i = j;
  }
  const hex = (a: number, z: number): string => g.slice(a, z).map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(0, 8);
  // IPv4-mapped and IPv4-compatible addresses end in a dotted quad, as inet_ntop (and so Node) writes them.
  if (bestAt === 0 && (bestLen === 6 || (bestLen === 5 && g[5] === 0xffff))) {
    return `::${bestLen === 5 ? 'ffff:' : ''}${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  }
  return `${hex(0, bestAt)}::${hex(bestAt + bestLen, 8)}`;
}

/** "addr:port" for IPv4, "[addr]:port" for IPv6. */
export function formatAddrPort(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

export function srcAddress(pkt: TcpPacket): string {
  return formatIp(pkt.buf, pkt.srcOff, pkt.addrLen);
}
export function dstAddress(pkt: TcpPacket): string {
  return formatIp(pkt.buf, pkt.dstOff, pkt.addrLen);
}

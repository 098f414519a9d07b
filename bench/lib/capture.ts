/**
 * Conversion latency from packet timestamps. A pcap file (as tcpdump -w writes it, micro- or
 * nanosecond timestamps, either byte order) is read with the project's frame walker; then each
 * client connection (to the proxy port) is linked to its upstream connection (to the echo port)
 * through the "ID########\n" line the latency client sends and the echo server returns.
 * Pure functions over Buffers: a short or malformed file yields the packets before the damage.
 */
import { newTcpPacket, parseFrame, TcpFlag } from '../../src/mptcp/packet';
import { percentile } from './results';

export interface CapturedSegment {
  /** Nanoseconds since the first packet of the file. */
  ns: number;
  srcPort: number;
  dstPort: number;
  flags: number;
  /** The captured part of the TCP payload. */
  payload: Buffer;
}

export interface PcapRead {
  linkType: number;
  segments: CapturedSegment[];
  /** Why reading stopped early, if it did. */
  error?: string;
}

const MAGIC_US = 0xa1b2c3d4;
const MAGIC_NS = 0xa1b23c4d;

export function readPcap(file: Buffer): PcapRead {
  if (file.length < 24) return { linkType: -1, segments: [], error: 'file shorter than the pcap header' };
  const le = file.readUInt32LE(0);
  const be = file.readUInt32BE(0);
  const little = le === MAGIC_US || le === MAGIC_NS;
  if (!little && be !== MAGIC_US && be !== MAGIC_NS) return { linkType: -1, segments: [], error: 'not a pcap file' };
  const nano = (little ? le : be) === MAGIC_NS;
  const u32 = (off: number): number => (little ? file.readUInt32LE(off) : file.readUInt32BE(off));
  const linkType = u32(20) & 0xffff;
  const segments: CapturedSegment[] = [];
  const pkt = newTcpPacket();
  let sec0: number | null = null;
  let off = 24;
  while (off < file.length) {
    if (off + 16 > file.length) return { linkType, segments, error: 'truncated record header' };
    const sec = u32(off);
    const frac = u32(off + 4);
    const caplen = u32(off + 8);
    if (off + 16 + caplen > file.length) return { linkType, segments, error: 'truncated record' };
    const frame = file.subarray(off + 16, off + 16 + caplen);
    off += 16 + caplen;
    sec0 ??= sec;
    const r = parseFrame(frame, linkType, pkt);
    if (r.kind !== 'tcp') continue;
    const start = Math.min(r.optEnd, frame.length);
    segments.push({
      ns: (sec - sec0) * 1e9 + (nano ? frac : frac * 1000),
      srcPort: r.srcPort,
      dstPort: r.dstPort,
      flags: r.flags,
      payload: Buffer.from(frame.subarray(start, Math.min(frame.length, start + r.payloadLength))),
    });
  }
  return { linkType, segments };
}

interface Side {
  syn?: number;
  /** Client → proxy payload segments before the ID (the CONNECT / SOCKS requests). */
  lastRequest?: number;
  /** The client's first data segment toward the proxy (request or greeting). */
  firstData?: number;
  id?: string;
  /** ID toward the echo server / back from it. */
  idOut?: number;
  idBack?: number;
}

export interface LatencySamples {
  /** Client SYN → upstream SYN. */
  syn: number[];
  /** Last request byte from the client (CONNECT line, SOCKS request) → upstream SYN. */
  request: number[];
  /** First data byte from the client → the same byte toward the server. */
  data: number[];
  /** First byte from the server → the same byte toward the client. */
  back: number[];
  /**
   * SYN → SYN of each linked connection split at the client's first data segment: `client` is
   * the client's own part (its SYN → its first data: handshake and think time, which HAProxy in
   * TCP mode does not wait for), `proxy` the rest (first data → upstream SYN; SOCKS5 includes the
   * greeting round trip). Same order as `syn` where both are known.
   */
  split: { syn: number; client: number; proxy: number }[];
  /** Client connections whose ID never appeared upstream. */
  unmatched: number;
}

const ID_RE = /ID(\d{8})\n/;

/** Link client and upstream connections by ID; times in milliseconds. */
export function conversionLatency(segments: readonly CapturedSegment[], proxyPort: number, echoPort: number): LatencySamples {
  const clients = new Map<number, Side>();
  const ups = new Map<number, Side>();
  // Connections whose port a later one reused (10,000 tunnels draw ports from a range of ~28,000:
  // without these, a third of them went uncounted).
  const earlier = new Map<Map<number, Side>, Side[]>([
    [clients, []],
    [ups, []],
  ]);
  for (const s of segments) {
    const toward = s.dstPort === proxyPort || s.dstPort === echoPort;
    const server = toward ? s.dstPort : s.srcPort;
    const map = server === proxyPort ? clients : server === echoPort ? ups : null;
    if (!map) continue;
    const key = toward ? s.srcPort : s.dstPort;
    let side = map.get(key);
    if (!side) map.set(key, (side = {}));
    if (toward && s.flags & TcpFlag.SYN && !(s.flags & TcpFlag.ACK)) {
      // A new connection reusing the port after an earlier one closed starts over.
      if (side.idBack !== undefined) {
        earlier.get(map)!.push(side);
        map.set(key, (side = {}));
      }
      side.syn ??= s.ns;
    }
    // With TCP Fast Open (RFC 8803 Convert) the request and the first data ride in the SYN.
    if (s.payload.length === 0) continue;
    if (toward && server === proxyPort) side.firstData ??= s.ns;
    const m = ID_RE.exec(s.payload.toString('latin1'));
    // Request bytes: a segment before the ID, or in front of it in the same segment.
    if (toward && server === proxyPort && side.id === undefined && (!m || m.index > 0)) side.lastRequest = s.ns;
    if (!m) continue;
    side.id ??= m[1];
    // From the client's point of view "out" is toward the server: client→proxy, proxy→echo.
    if (toward) side.idOut ??= s.ns;
    else side.idBack ??= s.ns;
  }
  const byId = new Map<string, Side>();
  for (const u of [...earlier.get(ups)!, ...ups.values()]) if (u.id !== undefined) byId.set(u.id, u);
  const out: LatencySamples = { syn: [], request: [], data: [], back: [], split: [], unmatched: 0 };
  const ms = (a: number | undefined, b: number | undefined, into: number[]): void => {
    if (a !== undefined && b !== undefined) into.push((b - a) / 1e6);
  };
  for (const c of [...earlier.get(clients)!, ...clients.values()]) {
    if (c.id === undefined) continue;
    const u = byId.get(c.id);
    if (!u) {
      out.unmatched++;
      continue;
    }
    ms(c.syn, u.syn, out.syn);
    ms(c.lastRequest, u.syn, out.request);
    ms(c.idOut, u.idOut, out.data);
    ms(u.idBack, c.idBack, out.back);
    if (c.syn !== undefined && c.firstData !== undefined && u.syn !== undefined) out.split.push({ syn: (u.syn - c.syn) / 1e6, client: (c.firstData - c.syn) / 1e6, proxy: (u.syn - c.firstData) / 1e6 });
  }
  return out;
}

/**
 * Where the slowest SYN → SYN connections (the top `pct` percent) spent their time: the mean
 * client part and proxy part of conversionLatency's split, in ms; null without samples.
 */
export function tailSplit(split: LatencySamples['split'], pct = 1): { n: number; client: number; proxy: number } | null {
  if (split.length === 0) return null;
  const n = Math.max(1, Math.ceil((split.length * pct) / 100));
  const tail = [...split].sort((a, b) => b.syn - a.syn).slice(0, n);
  const mean = (f: (x: (typeof split)[number]) => number): number => tail.reduce((a, x) => a + f(x), 0) / n;
  return { n, client: mean((x) => x.client), proxy: mean((x) => x.proxy) };
}

export const p50p99 = (v: readonly number[]): { p50: number | null; p99: number | null } => ({ p50: percentile(v, 50), p99: percentile(v, 99) });

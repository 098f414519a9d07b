/**
 * Capture I/O for the subflow sniffer: libpcap sessions (the `pcap` package) on chosen
 * interfaces or a capture file, each packet walked in place (libpcap's buffer is reused, nothing
 * is copied) and fed to the tracker. The kernel filter keeps only what the tracker needs.
 */
import type * as Pcap from 'pcap';
import { CodedError } from '../core/errors';
import { LinkType, newTcpPacket, parseFrame } from '../mptcp/packet';
import type { SniffEvent } from './events';
import { MptcpTracker, type TrackerOptions } from './tracker';

export const SniffErrorCode = {
  PcapUnavailable: 'SNIFF_PCAP_UNAVAILABLE',
  OpenFailed: 'SNIFF_OPEN_FAILED',
  UnsupportedLink: 'SNIFF_UNSUPPORTED_LINK',
} as const;
export type SniffErrorCode = (typeof SniffErrorCode)[keyof typeof SniffErrorCode];

export class SniffError extends CodedError<SniffErrorCode> {}

/**
 * Enough for the link header (SLL2 20, or Ethernet with two VLAN tags 22), IPv6 (40) and a full
 * TCP header (60): the payload is never needed, its length comes from the IP header.
 */
export const SNAPLEN = 128;

/**
 * Offsets (from the TCP header) where Linux puts the first MPTCP option of a non-SYN segment: it
 * writes MPTCP last, after an optional timestamp (12 bytes) and optional SACK blocks (4 + 8n),
 * always 4-byte aligned (it pads with NOPs after an option, never before).
 */
const MPTCP_OPTION_POSITIONS = [20, 32, 40, 44, 48, 52, 56];

/**
 * The BPF filter: SYN, FIN and RST segments; any segment whose first MPTCP option is not a DSS
 * (handshakes, ADD_ADDR, MP_PRIO, ...); and MPTCP segments without payload (third and fourth ACKs
 * of joins, pure ACKs whose ack numbers keep the byte counts current; Linux sends ADD_ADDR,
 * REMOVE_ADDR and MP_PRIO on pure ACKs too, behind a DSS). Data segments that carry
 * only a DSS mapping, the bulk of the traffic, and every plain TCP segment stay in the kernel.
 * libpcap's tcp[] works for IPv4 only, so IPv6 (without extension headers) is spelled out.
 */
export function mptcpCaptureFilter(): string {
  const fam = (tcp: (off: number) => string, noPayload: string): string => {
    const terms = MPTCP_OPTION_POSITIONS.map((p) => {
      // The header must reach past the option: data offset (high nibble of byte 12) * 4 >= p + 4.
      const minOff = `0x${(((p + 4) / 4) << 4).toString(16)}`;
      return `(${tcp(12)} >= ${minOff} and ${tcp(p)} = 30 and ((${tcp(p + 2)} & 0xf0) != 0x20 or ${noPayload}))`;
    });
    return `(${tcp(13)} & 0x07 != 0 or ${terms.join(' or ')})`;
  };
  const v4 = fam((o) => `tcp[${o}]`, `(ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) = 0)`);
  const v6 = fam((o) => `ip6[${40 + o}]`, `(ip6[4:2] - ((ip6[52] & 0xf0) >> 2) = 0)`);
  return `(ip and tcp and ${v4}) or (ip6 and ip6[6] = 6 and ${v6})`;
}

/** Linux libpcap names some link types only by number ("Unknown linktype 276"). */
export function linkTypeNumber(name: string): number | null {
  switch (name) {
    case 'LINKTYPE_ETHERNET':
      return LinkType.Ethernet;
    case 'LINKTYPE_LINUX_SLL':
      return LinkType.LinuxSll;
    case 'LINKTYPE_RAW':
      return LinkType.Raw;
    case 'LINKTYPE_NULL':
      return LinkType.Null;
    default: {
      const m = /(\d+)$/.exec(name);
      return m ? Number(m[1]) : null;
    }
  }
}

const SUPPORTED_LINKS: ReadonlySet<number> = new Set(Object.values(LinkType));

function loadPcap(): typeof Pcap {
  try {
    // Optional dependency with a native part: loaded only when a capture starts.
    return require('pcap') as typeof Pcap;
  } catch (err) {
    throw new SniffError(SniffErrorCode.PcapUnavailable, `the pcap package is not installed or not built: ${(err as Error).message}`, { cause: err });
  }
}

export interface CaptureStats {
  packets: number;
  skipped: number;
  malformed: number;
  /** Per interface, from libpcap: dropped for lack of buffer space. */
  dropped: Record<string, number>;
}

export interface SnifferOptions extends TrackerOptions {
  /** Replace the default BPF filter (an empty string captures everything). */
  filter?: string;
  snaplen?: number;
  bufferSize?: number;
}

/** Runs captures, feeds one tracker, and hands events to `onEvent`. */
export class SubflowSniffer {
  readonly tracker: MptcpTracker;
  private readonly sessions: { name: string; session: Pcap.PcapSession }[] = [];
  private readonly pkt = newTcpPacket();
  private expiry: NodeJS.Timeout | null = null;
  private packets = 0;
  private skipped = 0;
  private malformedFrames = 0;

  constructor(
    onEvent: (e: SniffEvent) => void,
    private readonly opts: SnifferOptions = {},
  ) {
    this.tracker = new MptcpTracker(onEvent, opts);
  }

  /** Open a live capture on each interface. Throws SniffError; nothing stays open on failure. */
  start(interfaces: readonly string[]): void {
    const pcap = loadPcap();
    try {
      for (const name of interfaces) {
        const session = pcap.createSession(name, {
          filter: this.opts.filter ?? mptcpCaptureFilter(),
          snap_length: this.opts.snaplen ?? SNAPLEN,
          buffer_size: this.opts.bufferSize ?? 4 * 1024 * 1024,
          // Immediate delivery: handshakes are few, and events should not wait for a full buffer.
          buffer_timeout: 0,
          promiscuous: false,
        });
        this.attach(name, session);
      }
    } catch (err) {
      this.close();
      if (err instanceof SniffError) throw err;
      throw new SniffError(SniffErrorCode.OpenFailed, `cannot capture: ${(err as Error).message}`, { cause: err });
    }
    this.expiry = setInterval(() => this.tracker.expire(Date.now()), 5000);
    this.expiry.unref();
  }

  /** Read a capture file to its end (link types as for live captures); `name` labels the interface. */
  readFile(path: string, name = 'file'): Promise<void> {
    const pcap = loadPcap();
    let session: Pcap.PcapSession;
    try {
      session = pcap.createOfflineSession(path, { filter: this.opts.filter ?? '' });
    } catch (err) {
      throw new SniffError(SniffErrorCode.OpenFailed, `cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
    return new Promise((resolve, reject) => {
      try {
        this.attach(name, session);
      } catch (err) {
        session.close();
        reject(err);
        return;
      }
      session.once('complete', () => {
        this.detach(session);
        resolve();
      });
    });
  }

  stats(): CaptureStats {
    const dropped: Record<string, number> = {};
    for (const { name, session } of this.sessions) {
      try {
        dropped[name] = session.stats().ps_drop;
      } catch {
        dropped[name] = 0; // offline sessions have no statistics
      }
    }
    return { packets: this.packets, skipped: this.skipped, malformed: this.malformedFrames + this.tracker.malformed, dropped };
  }

  close(): void {
    if (this.expiry) clearInterval(this.expiry);
    this.expiry = null;
    for (const { session } of this.sessions.splice(0)) session.close();
  }

  private attach(name: string, session: Pcap.PcapSession): void {
    const linkType = linkTypeNumber(session.link_type);
    if (linkType === null || !SUPPORTED_LINKS.has(linkType)) {
      session.close();
      throw new SniffError(SniffErrorCode.UnsupportedLink, `${name}: link type ${session.link_type} is not supported`);
    }
    this.sessions.push({ name, session });
    const pkt = this.pkt;
    session.on('packet', (raw: Pcap.PacketWithHeader) => {
      this.packets++;
      const caplen = raw.header.readUInt32LE(8);
      // The session's buffer is snaplen long and reused: view only the captured part of it.
      const frame = caplen < raw.buf.length ? raw.buf.subarray(0, caplen) : raw.buf;
      const r = parseFrame(frame, linkType, pkt);
      if (r.kind === 'tcp') {
        const time = raw.header.readUInt32LE(0) * 1000 + Math.floor(raw.header.readUInt32LE(4) / 1000);
        this.tracker.process(r, name, time);
      } else if (r.kind === 'skip') this.skipped++;
      else this.malformedFrames++;
    });
  }

  private detach(session: Pcap.PcapSession): void {
    const i = this.sessions.findIndex((s) => s.session === session);
    if (i >= 0) this.sessions.splice(i, 1);
    session.close();
  }
}

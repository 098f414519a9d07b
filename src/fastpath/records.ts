/**
 * Connection records from the native fast path (struct Rec in native/src/fastpath.cc, 224
 * bytes each, little-endian) and the connection object observers see for them.
 */
import net from 'node:net';
import { ClientConnection } from '../core/connection';
import type { ErrorCode } from '../core/errors';
import { ipv4FromBytes, ipv6FromBytes } from '../proxy/socks/codec/common';
import { CODES } from './tables';
import { NATIVE_PROTO } from './addon';

export const RECORD_BYTES = 224;
export const RecordKind = { Open: 1, Close: 2, Drop: 3 } as const;
/** Relay ends as native numbers them (splice_native::EndReason + 1); 0 = never relayed. */
const RELAY_END = [null, 'done', 'idle', 'client-error', 'upstream-error'] as const;

export interface NativeRecord {
  kind: number;
  nid: number;
  listener: number;
  protocol: 'connect' | 'socks4' | 'socks5' | 'unknown';
  client: string;
  clientPort: number;
  mptcp: boolean | null;
  token: number;
  subflows: number;
  acceptedNs: bigint;
  connectedNs: bigint | null;
  closedNs: bigint | null;
  bytesUp: number;
  bytesDown: number;
  code: ErrorCode | null;
  relayEnd: (typeof RELAY_END)[number];
  errno: number;
  dest: string | null;
  destPort: number;
  upstream: string | null;
  /** The relayed client's fd, open until this record's batch is handled; -1: none. */
  fd: number;
}

function text(b: Buffer, at: number, max: number): string | null {
  const end = b.indexOf(0, at);
  const s = b.toString('latin1', at, end < 0 || end > at + max ? at + max : end);
  return s === '' ? null : s;
}

export function decodeRecords(b: Buffer): NativeRecord[] {
  const out: NativeRecord[] = [];
  for (let at = 0; at + RECORD_BYTES <= b.length; at += RECORD_BYTES) {
    const family = b[at + 2]!;
    const mptcp = b.readInt8(at + 3);
    const code = b.readInt16LE(at + 88);
    const connected = b.readBigUInt64LE(at + 48);
    const closed = b.readBigUInt64LE(at + 56);
    out.push({
      kind: b[at]!,
      protocol: NATIVE_PROTO[b[at + 1]!] ?? 'unknown',
      client: family === 4 ? ipv4FromBytes(b, at + 16) : ipv6FromBytes(b, at + 16),
      mptcp: mptcp < 0 ? null : mptcp === 1,
      clientPort: b.readUInt16LE(at + 4),
      destPort: b.readUInt16LE(at + 6),
      listener: b.readUInt32LE(at + 8),
      token: b.readUInt32LE(at + 12),
      nid: Number(b.readBigUInt64LE(at + 32)),
      acceptedNs: b.readBigUInt64LE(at + 40),
      connectedNs: connected === 0n ? null : connected,
      closedNs: closed === 0n ? null : closed,
      bytesUp: b.readDoubleLE(at + 72),
      bytesDown: b.readDoubleLE(at + 80),
      code: code < 0 ? null : (CODES[code] ?? null),
      subflows: b[at + 90]!,
      relayEnd: RELAY_END[b[at + 91]!] ?? null,
      errno: b.readInt32LE(at + 92),
      dest: text(b, at + 96, 64),
      upstream: text(b, at + 160, 56),
      fd: b.readInt32LE(at + 216),
    });
  }
  return out;
}

/**
 * Native connections have no JS socket; every ClientConnection getter that reads one is
 * overridden. Their fd is the one native relays on, open as long as the connection is (until
 * the batch with its close record is handled, see fastpath.cc's Deliver).
 */
const NO_SOCKET = new net.Socket();

/** A connection the fast path carries: the same view as any other, filled from its records. */
export class NativeConnection extends ClientConnection {
  bytesIn = 0;
  bytesOut = 0;
  closedAt: bigint | null = null;

  constructor(
    listener: string,
    r: NativeRecord,
  ) {
    super(NO_SOCKET, listener, r.fd, r.acceptedNs);
    this.client = r.client;
    this.port = r.clientPort;
    this.update(r);
  }
  private readonly client: string;
  private readonly port: number;

  /** Takes what a record knows; later records know more. */
  update(r: NativeRecord): void {
    this.protocol = r.protocol;
    this.mptcp = r.mptcp;
    if (r.mptcp) this.token = r.token;
    this.subflows = Math.max(this.subflows, r.subflows);
    if (r.protocol === 'connect') this.requests = 1;
    if (r.dest !== null) this.destination = { host: r.dest, port: r.destPort };
    this.upstreamAddress = r.upstream;
    this.upstreamConnectedAt = r.connectedNs;
    this.bytesIn = r.bytesUp;
    this.bytesOut = r.bytesDown;
    this.closedAt = r.closedNs;
  }

  override get clientAddress(): string {
    return this.client;
  }
  override get clientPort(): number {
    return this.port;
  }
  override get localAddress(): string {
    return '';
  }
  override get localPort(): number {
    return 0;
  }
  override get bytesFromClient(): number {
    return this.bytesIn;
  }
  override get bytesToClient(): number {
    return this.bytesOut;
  }
  override get durationMs(): number {
    return Number((this.closedAt ?? process.hrtime.bigint()) - this.acceptedAt) / 1e6;
  }
}

/** The client address in a hand-off's slot key (family byte 4 or 6, then 16 address bytes). */
export function clientOfKey(key: Buffer): string {
  return key[0] === 4 ? ipv4FromBytes(key, 1) : ipv6FromBytes(key, 1);
}

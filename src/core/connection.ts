/**
 * One accepted client connection as every subsystem sees it: who, over what (MPTCP or not, how
 * many subflows), which protocol, where to, how many bytes, and how it ended. The listener
 * creates it; protocol front ends fill it; observers (logs, metrics, registry) read it from the
 * events in ./events.
 */
import type net from 'node:net';
import { ErrorCode, type ProxyError } from './errors';

export type ProxyProtocol = 'http' | 'connect' | 'socks4' | 'socks5' | 'transparent' | 'convert' | 'unknown';

export interface Destination {
  host: string;
  port: number;
}

/**
 * What other modules may know of a client connection (registry, steering, status), also when
 * it lives in another worker process and only this view crossed over.
 */
export interface ClientView {
  readonly id: number;
  readonly listener: string;
  readonly protocol: ProxyProtocol;
  readonly clientAddress: string;
  readonly clientPort: number;
  readonly mptcp: boolean | null;
  readonly token: number | null;
  readonly user: string | null;
  readonly destination: Destination | null;
  readonly upstreamAddress: string | null;
  readonly startedAtMs: number;
  readonly bytesFromClient: number;
  readonly bytesToClient: number;
}

/** Worker processes number their connections in disjoint ranges (see src/cluster). */
let nextId = 1;
export function setConnectionIdBase(base: number): void {
  nextId = base + 1;
}

/** A plain, serialisable copy of a connection's view. */
export function viewOf(c: ClientView): ClientView {
  return {
    id: c.id,
    listener: c.listener,
    protocol: c.protocol,
    clientAddress: c.clientAddress,
    clientPort: c.clientPort,
    mptcp: c.mptcp,
    token: c.token,
    user: c.user,
    destination: c.destination,
    upstreamAddress: c.upstreamAddress,
    startedAtMs: c.startedAtMs,
    bytesFromClient: c.bytesFromClient,
    bytesToClient: c.bytesToClient,
  };
}

export class ClientConnection implements ClientView {
  readonly id = nextId++;
  readonly startedAtMs: number;
  protocol: ProxyProtocol = 'unknown';
  /** True/false once known from TCP_IS_MPTCP; null when the socket could not be asked. */
  mptcp: boolean | null = null;
  /** Most subflows seen at once (1 for plain TCP). */
  subflows = 1;
  /** MPTCP connection token (local side), when MPTCP; links kernel and sniffer views. */
  token: number | null = null;
  user: string | null = null;
  destination: Destination | null = null;
  /** The address actually connected to, after DNS and policy. */
  upstreamAddress: string | null = null;
  upstreamConnectedAt: bigint | null = null;
  /** The parent proxy the connection went through (src/upstream); null = direct. */
  parent: string | null = null;
  requests = 0;
  /** Bytes relayed by engines that bypass the client socket's own counters (splice). */
  relayBytesUp = 0;
  relayBytesDown = 0;
  /** The first error that decided the outcome; null = ok. */
  error: ProxyError | null = null;
  closed = false;

  constructor(
    readonly socket: net.Socket,
    readonly listener: string,
    /** OS fd of the accepted socket, -1 when not available. */
    readonly fd: number,
    /** process.hrtime.bigint() at accept; earlier than now when the native fast path accepted it. */
    readonly acceptedAt: bigint = process.hrtime.bigint(),
  ) {
    this.startedAtMs = Date.now() - Number(process.hrtime.bigint() - acceptedAt) / 1e6;
  }

  /**
   * The client's address as the accepting side saw it, for a socket adopted after its peer may
   * have gone (a native hand-off): getpeername then fails and the socket reports none.
   */
  acceptedFrom: string | null = null;

  get clientAddress(): string {
    return this.socket.remoteAddress ?? this.acceptedFrom ?? '';
  }
  get clientPort(): number {
    return this.socket.remotePort ?? 0;
  }
  get localAddress(): string {
    return this.socket.localAddress ?? '';
  }
  get localPort(): number {
    return this.socket.localPort ?? 0;
  }

  /** Bytes read from the client (toward upstream) and written to it. */
  get bytesFromClient(): number {
    return this.socket.bytesRead + this.relayBytesUp;
  }
  get bytesToClient(): number {
    return this.socket.bytesWritten + this.relayBytesDown;
  }

  /** Record the failure that explains this connection's end (first one wins). */
  fail(err: ProxyError): void {
    this.error ??= err;
  }

  get resultCode(): ErrorCode | 'ok' {
    return this.error?.code ?? 'ok';
  }

  get durationMs(): number {
    return Number(process.hrtime.bigint() - this.acceptedAt) / 1e6;
  }

  /** Seconds from accept to upstream connected (the conversion time), when connected. */
  get conversionSeconds(): number | null {
    return this.upstreamConnectedAt === null ? null : Number(this.upstreamConnectedAt - this.acceptedAt) / 1e9;
  }
}

export { ErrorCode };

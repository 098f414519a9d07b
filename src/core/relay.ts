/**
 * The relay contract: once a protocol front end has connected both sides, an engine moves bytes
 * both ways until both directions are closed, carrying half-close, enforcing the idle timeout
 * and counting bytes per direction. Engines (src/relay): stream (JS, always available) and splice
 * (native). The contract lives in core because the event bus reports relay results.
 */
import type net from 'node:net';

export interface RelayOptions {
  /** Close both sides after this long with no byte in either direction; 0 = never. */
  idleMs: number;
  /** Bytes the client already sent that the front end read past its handshake. */
  clientHead?: Buffer;
  /** Called once, while both fds are still open, right before the engine closes the sockets
   * (lets the caller read final MPTCP_INFO / subflow state). */
  beforeClose?: () => void;
}

export type RelayEnd = 'done' | 'idle' | 'client-error' | 'upstream-error';

export interface RelayResult {
  /** client → upstream bytes written upstream (clientHead included). */
  bytesUp: number;
  /** upstream → client bytes written to the client. */
  bytesDown: number;
  end: RelayEnd;
  /** errno-style code of the socket error that ended it, if any. */
  errorCode?: string;
}

export interface RelayEngine {
  readonly name: 'stream' | 'splice';
  /**
   * Relay until both directions are finished, then destroy both sockets and resolve.
   * Never rejects: failures are described in the result.
   */
  relay(client: net.Socket, upstream: net.Socket, opts: RelayOptions): Promise<RelayResult>;
}

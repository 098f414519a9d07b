/**
 * What a protocol front end (HTTP, SOCKS, mixed) is given to serve one client connection.
 * Front ends own the client socket from accept to close; everything else they reach through here.
 */
import type { Config } from '../config/schema';
import type { ClientConnection } from '../core/connection';
import type { ProxyEvents } from '../core/events';
import type { Logger } from '../log/logger';
import type { RelayEngine } from '../core/relay';
import type { AccessControl } from '../access/access';
import type { Upstream } from '../upstream/router';

export interface ProxyContext {
  config: Config;
  log: Logger;
  events: ProxyEvents;
  access: AccessControl;
  upstream: Upstream;
  relay: RelayEngine;
}

/** A protocol front end: takes over an accepted (paused) client socket. */
export type FrontEnd = (conn: ClientConnection, ctx: ProxyContext) => void;

/**
 * What is left of the handshake deadline, counted from accept: the mixed port's wait for the
 * first byte and the protocol's own negotiation share one timeouts.handshakeMs.
 */
export function handshakeTimeLeft(conn: ClientConnection, ctx: ProxyContext): number {
  const elapsedMs = Number(process.hrtime.bigint() - conn.acceptedAt) / 1e6;
  return Math.max(0, ctx.config.timeouts.handshakeMs - elapsedMs);
}

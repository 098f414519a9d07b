/**
 * The one structured log line per finished client connection.
 */
import type { ProxyEvents } from '../core/events';
import { formatEndpoint } from '../core/address';
import type { Logger } from './logger';

export function logFinishedConnections(events: ProxyEvents, log: Logger): void {
  events.on('connection-close', (conn) => {
    log.info('connection', {
      id: conn.id,
      listener: conn.listener,
      client: formatEndpoint({ host: conn.clientAddress, port: conn.clientPort }),
      mptcp: conn.mptcp,
      subflows: conn.subflows,
      protocol: conn.protocol,
      user: conn.user ?? undefined,
      destination: conn.destination ? formatEndpoint(conn.destination) : undefined,
      upstream: conn.upstreamAddress ?? undefined,
      requests: conn.requests,
      bytesIn: conn.bytesFromClient,
      bytesOut: conn.bytesToClient,
      durationMs: Math.round(conn.durationMs),
      conversionMs: conn.conversionSeconds === null ? undefined : Math.round(conn.conversionSeconds * 1e6) / 1e3,
      result: conn.resultCode,
    });
  });
}

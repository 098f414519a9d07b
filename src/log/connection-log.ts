/**
 * The one structured log line per finished client connection (connections a limit refused before
 * they asked for anything are left to the limit log, see ./limit-log).
 */
import type { ProxyEvents } from '../core/events';
import { formatHostPort } from '../core/address';
import { isLimitCode } from './limit-log';
import type { Logger } from './logger';

export function logFinishedConnections(events: ProxyEvents, log: Logger): void {
  events.on('connection-close', (conn) => {
    // Refused by a limit before it asked for anything: summed up by the limit log, not one line each.
    if (isLimitCode(conn.resultCode) && conn.requests === 0 && conn.destination === null) return;
    // The line's fields cost more than dropping it: build them only when the level keeps it.
    if (!log.isLevelEnabled('info')) return;
    log.info('connection', {
      id: conn.id,
      listener: conn.listener,
      client: formatHostPort({ host: conn.clientAddress, port: conn.clientPort }),
      mptcp: conn.mptcp,
      subflows: conn.subflows,
      protocol: conn.protocol,
      user: conn.user ?? undefined,
      destination: conn.destination ? formatHostPort(conn.destination) : undefined,
      upstream: conn.upstreamAddress ?? undefined,
      parent: conn.parent ?? undefined,
      requests: conn.requests,
      bytesIn: conn.bytesFromClient,
      bytesOut: conn.bytesToClient,
      durationMs: Math.round(conn.durationMs),
      conversionMs: conn.conversionSeconds === null ? undefined : Math.round(conn.conversionSeconds * 1e6) / 1e3,
      result: conn.resultCode,
    });
  });
}

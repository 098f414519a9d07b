/**
 * Limit hits (connection limits, header limits, handshake/idle/connect timeouts, password checks
 * refused by the auth guard) are what an attack or an overload produces by the thousand, so they
 * are not logged one line each: the
 * first hit of a (code, client) pair in an interval is logged at once, the rest of that interval
 * are counted and summed up in one line when it ends (or when the proxy stops). Counting every
 * hit is the metrics' job (mptcp_proxy_errors_total{code}), which sees them all.
 */
import type { ClientConnection } from '../core/connection';
import { ErrorCode, type ProxyError } from '../core/errors';
import type { ProxyEvents } from '../core/events';
import type { Logger } from './logger';

const LIMIT_CODES: ReadonlySet<string> = new Set([ErrorCode.LimitReached, ErrorCode.HandshakeTimeout, ErrorCode.IdleTimeout, ErrorCode.ConnectTimeout, ErrorCode.AuthBusy]);

export function isLimitCode(code: string): boolean {
  return LIMIT_CODES.has(code);
}

export const LIMIT_LOG_INTERVAL_MS = 10_000;
/** Distinct (code, client) pairs tracked per interval; beyond, hits are summed under client "*". */
const MAX_KEYS = 1_000;

interface Entry {
  code: string;
  client: string;
  level: string;
  suppressed: number;
}

export interface LimitLog {
  /** Write the pending summaries now (on stop). */
  flush(): void;
}

export function logLimitHits(events: ProxyEvents, log: Logger, intervalMs = LIMIT_LOG_INTERVAL_MS): LimitLog {
  const entries = new Map<string, Entry>();
  const flush = (): void => {
    for (const e of entries.values()) {
      if (e.suppressed > 0) log.log(e.level, 'limit hits not logged one by one', { code: e.code, client: e.client, count: e.suppressed, intervalMs });
    }
    entries.clear();
  };
  setInterval(flush, intervalMs).unref();
  events.on('proxy-error', (err: ProxyError, conn: ClientConnection | null, peer?: string) => {
    if (!isLimitCode(err.code)) return;
    let client = conn?.clientAddress ?? peer ?? 'unknown';
    let key = `${err.code} ${client}`;
    if (!entries.has(key) && entries.size >= MAX_KEYS) {
      client = '*';
      key = `${err.code} *`;
    }
    const seen = entries.get(key);
    if (seen) {
      seen.suppressed++;
      return;
    }
    entries.set(key, { code: err.code, client, level: err.mapping.log, suppressed: 0 });
    log.log(err.mapping.log, 'limit hit', { code: err.code, client, listener: conn?.listener, conn: conn?.id, detail: err.message, note: `further hits of this code from this client are summed up every ${intervalMs / 1000} s` });
  });
  return { flush };
}

/**
 * Proxy auto-config (PAC) for browsers and desktops: GET /proxy.pac on the admin address. The
 * file is a pure function of the configured listeners, so after a reload it follows the config.
 */
import type http from 'node:http';
import net from 'node:net';
import type { ListenerConfig } from '../config/schema';

export const PAC_CONTENT_TYPE = 'application/x-ns-proxy-autoconfig';

export interface PacOptions {
  /**
   * Host the client used to reach the admin server (its Host header). Listeners bound to a
   * wildcard (0.0.0.0, ::) are advertised under it, since "0.0.0.0" means nothing to a browser.
   */
  requestHost?: string;
}

const WILDCARDS = new Set(['0.0.0.0', '::', '']);
/** Only plain host names and IP literals reach the generated JavaScript. */
const SAFE_HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]+\])$/;

/** "host" or "[v6]" from a Host header value ("h:port", "[v6]:port"); null when unusable. */
export function hostFromHeader(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^(\[[^\]]+\]|[^:]+)(?::\d{1,5})?$/.exec(header.trim());
  if (!m || !SAFE_HOST.test(m[1]!)) return null;
  if (m[1]!.startsWith('[') && !net.isIPv6(m[1]!.slice(1, -1))) return null;
  return m[1]!;
}

function advertisedHost(l: ListenerConfig, opts: PacOptions): string {
  if (WILDCARDS.has(l.host)) {
    const fromRequest = hostFromHeader(opts.requestHost);
    if (fromRequest) return fromRequest;
    return l.host === '::' ? '[::1]' : '127.0.0.1';
  }
  return net.isIPv6(l.host) ? `[${l.host}]` : l.host;
}

/** PAC proxy directives, HTTP-capable listeners first (browsers resolve names on the proxy then). */
export function pacDirectives(listeners: readonly ListenerConfig[], opts: PacOptions = {}): string[] {
  const rank = { http: 0, mixed: 1, socks: 2 } as const;
  // Transparent listeners take only redirected traffic and browsers do not speak Convert:
  // neither is a proxy to advertise.
  return listeners
    .filter((l): l is ListenerConfig & { protocol: keyof typeof rank } => l.protocol in rank)
    .sort((a, b) => rank[a.protocol] - rank[b.protocol])
    .map((l) => `${l.protocol === 'socks' ? 'SOCKS5' : 'PROXY'} ${advertisedHost(l, opts)}:${l.port}`);
}

/**
 * The PAC text. Loopback and plain (dot-less) names go DIRECT: the proxy refuses loopback
 * destinations by policy, and intranet short names only resolve on the client's side.
 * No listeners → everything DIRECT, which is what a browser would do without a PAC.
 */
export function generatePac(listeners: readonly ListenerConfig[], opts: PacOptions = {}): string {
  const directives = pacDirectives(listeners, opts);
  const route = directives.length > 0 ? directives.join('; ') : 'DIRECT';
  return [
    '// mptcp-proxy: proxy auto-config generated from the configured listeners.',
    'function FindProxyForURL(url, host) {',
    '  if (isPlainHostName(host) || host === "localhost" || dnsDomainIs(host, ".localhost") ||',
    '      shExpMatch(host, "127.*") || host === "::1" || host === "[::1]")',
    '    return "DIRECT";',
    `  return ${JSON.stringify(route)};`,
    '}',
    '',
  ].join('\n');
}

/** Route handler for the admin server; `listeners` is read per request so reloads show. */
export function pacRoute(listeners: () => readonly ListenerConfig[]): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    const body = generatePac(listeners(), { requestHost: req.headers.host });
    res.writeHead(200, { 'Content-Type': PAC_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}

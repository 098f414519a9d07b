/**
 * Header rules of a forward proxy (RFC 9110 §7.6): hop-by-hop fields, including those the
 * Connection field names, are not forwarded; Via records this hop. Pure functions over Node's
 * raw header arrays, so duplicates and order survive.
 */

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export const VIA_TOKEN = '1.1 mptcp-proxy';

/** Lengths of the names forwardHeaders looks at by name: only those are lower-cased (most fields are not). */
const NOTED_LENGTHS = new Set([...HOP_BY_HOP, 'host', 'via'].map((n) => n.length));

/** Names listed in every Connection (and legacy Proxy-Connection) field, lower-cased; null when none. */
function connectionListed(raw: readonly string[]): Set<string> | null {
  let listed: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const length = raw[i]!.length;
    if (length !== 10 && length !== 16) continue;
    const name = raw[i]!.toLowerCase();
    if (name === 'connection' || name === 'proxy-connection') {
      for (const token of raw[i + 1]!.split(',')) {
        const t = token.trim().toLowerCase();
        if (t) (listed ??= new Set()).add(t);
      }
    }
  }
  return listed;
}

/**
 * Drop hop-by-hop fields and append this hop to Via. Returns a new raw array. `host`, for a
 * request: the target's authority, sent as the one Host field in place of the client's (RFC 9112
 * §3.2.2), first as user agents send it.
 */
export function forwardHeaders(raw: readonly string[], host?: string): string[] {
  const listed = connectionListed(raw);
  const out: string[] = host === undefined ? [] : ['Host', host];
  let via: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (listed !== null || NOTED_LENGTHS.has(name.length)) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower) || listed?.has(lower) || (host !== undefined && lower === 'host')) continue;
      if (lower === 'via') {
        via = via === null ? raw[i + 1]! : `${via}, ${raw[i + 1]!}`;
        continue;
      }
    }
    out.push(name, raw[i + 1]!);
  }
  out.push('Via', via === null ? VIA_TOKEN : `${via}, ${VIA_TOKEN}`);
  return out;
}

/** Parse "Basic base64(user:pass)"; null when absent or not Basic. */
export function parseBasicCredentials(header: string | undefined): { user: string; password: string } | null {
  if (!header) return null;
  const m = /^\s*basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return null;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** CONNECT's authority-form target: "host:port" or "[v6]:port". */
export function parseAuthority(target: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:/?#@[\]]+)):(\d{1,5})$/.exec(target);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1] ?? m[2]!, port };
}

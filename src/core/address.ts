/**
 * Address helpers shared by every subsystem: host:port pairs, IPv4 literal normalisation
 * (every spelling inet_aton accepts), CIDR sets, and the built-in dangerous destination ranges.
 */
import net from 'node:net';

/** A host (name or address literal) and port: listen addresses, destinations, subflow ends. */
export interface HostPort {
  host: string;
  port: number;
}

/** Parse "host:port", "[v6]:port" or ":port" (host defaults to `defaultHost`). */
export function parseHostPort(text: string, defaultHost = '127.0.0.1'): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new Error(`"${text}" is not HOST:PORT`);
  const host = m[1] ?? (m[2] || defaultHost);
  const port = Number(m[3]);
  if (port < 0 || port > 65535) throw new Error(`port ${port} out of range in "${text}"`);
  if (m[1] !== undefined && net.isIPv6(m[1]) === false) throw new Error(`"${m[1]}" is not an IPv6 address`);
  return { host, port };
}

export function formatHostPort(e: HostPort): string {
  return net.isIPv6(e.host) ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/**
 * inet_aton-style IPv4 parsing: 1 to 4 parts, each decimal, 0x-hex or 0-octal, the last part
 * filling the remaining bytes ("127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1").
 * Returns dotted-quad or null. Browsers and libc resolve these, so the ACL must too.
 */
export function normalizeIPv4Literal(text: string): string | null {
  const parts = text.split('.');
  if (parts.length < 1 || parts.length > 4 || parts.some((p) => p === '')) return null;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0x[0-9a-f]*$/i.test(p)) n = p.length === 2 ? 0 : parseInt(p.slice(2), 16);
    else if (/^0[0-7]*$/.test(p)) n = parseInt(p, 8);
    else if (/^[1-9][0-9]*$/.test(p)) n = parseInt(p, 10);
    else return null;
    if (!Number.isFinite(n)) return null;
    nums.push(n);
  }
  const last = nums.pop()!;
  if (nums.some((n) => n > 255)) return null;
  const lastBytes = 4 - nums.length;
  if (last >= 2 ** (8 * lastBytes)) return null;
  const bytes = [...nums];
  for (let i = lastBytes - 1; i >= 0; i--) bytes.push(Math.floor(last / 2 ** (8 * i)) % 256);
  return bytes.join('.');
}

/** An IP literal in any spelling, normalised; IPv4-mapped IPv6 becomes IPv4. Null for names. */
export function normalizeIpLiteral(host: string): string | null {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  // Every IPv6 spelling has a colon: IPv4 literals and names skip the (long) IPv6 pattern.
  if (bare.includes(':') && net.isIPv6(bare)) return unmapIPv6(bare);
  if (/^[0-9a-fx.]+$/i.test(bare) && /^[0-9]/.test(bare)) return normalizeIPv4Literal(bare);
  return null;
}

/** "::ffff:1.2.3.4" or "::ffff:102:304" → "1.2.3.4"; other addresses unchanged. */
export function unmapIPv6(addr: string): string {
  if (!addr.includes(':') || !net.isIPv6(addr)) return addr;
  const sa = new net.SocketAddress({ address: addr, family: 'ipv6' });
  const full = expandIPv6(sa.address);
  if (full.startsWith('0000:0000:0000:0000:0000:ffff:')) {
    const hex = full.slice(30).replace(':', '');
    const n = parseInt(hex, 16);
    return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
  }
  return addr;
}

export function expandIPv6(addr: string): string {
  let a = addr;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    a = a.slice(0, -v4[1]!.length) + ((b[0]! << 8) | b[1]!).toString(16) + ':' + ((b[2]! << 8) | b[3]!).toString(16);
  }
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const fill = tail !== undefined ? new Array(8 - h.length - t.length).fill('0') : [];
  return [...h, ...fill, ...t].map((g) => g.padStart(4, '0')).join(':');
}

/** The 16 bytes of an IPv6 address (any textual form, embedded IPv4 included). */
export function ipv6ToBytes(ip: string): Buffer {
  const out = Buffer.alloc(16);
  expandIPv6(new net.SocketAddress({ address: ip, family: 'ipv6' }).address)
    .split(':')
    .forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

const CIDR_ANSWER_CACHE = 4096;

/** A set of CIDR ranges over both families, backed by Node's BlockList. */
export class CidrSet {
  private readonly list = new net.BlockList();
  readonly ranges: readonly string[];
  constructor(cidrs: readonly string[]) {
    this.ranges = [...cidrs];
    for (const c of cidrs) {
      const { address, prefix, family } = parseCidr(c);
      this.list.addSubnet(address, prefix, family);
    }
  }
  /**
   * Answers for addresses asked recently: BlockList.check parses the text into a SocketAddress
   * on every call, and each new tunnel asks two or three sets about the same few addresses. The
   * ranges never change (a reload makes new sets), so an answer stays right; the map is emptied
   * when full to stay bounded.
   */
  private readonly answers = new Map<string, boolean>();
  has(ip: string): boolean {
    let yes = this.answers.get(ip);
    if (yes === undefined) {
      yes = this.check(ip);
      if (this.answers.size >= CIDR_ANSWER_CACHE) this.answers.clear();
      this.answers.set(ip, yes);
    }
    return yes;
  }
  private check(ip: string): boolean {
    // The common IPv4 case skips unmapping (it would test the family twice more).
    if (net.isIPv4(ip)) return this.list.check(ip, 'ipv4');
    const addr = unmapIPv6(ip);
    return this.list.check(addr, net.isIPv6(addr) ? 'ipv6' : 'ipv4');
  }
  get size(): number {
    return this.ranges.length;
  }
}

export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [addrPart, prefixPart] = text.split('/');
  const address = addrPart ? normalizeIpLiteral(addrPart) : null;
  if (!address) throw new Error(`"${text}" is not a CIDR range`);
  const family = net.isIPv6(address) ? 'ipv6' : 'ipv4';
  const max = family === 'ipv6' ? 128 : 32;
  const prefix = prefixPart === undefined ? max : Number(prefixPart);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (prefixPart !== undefined && !/^\d+$/.test(prefixPart))) {
    throw new Error(`"${text}" has a bad prefix length`);
  }
  return { address, prefix, family };
}

/** Destinations a proxy must not reach unless the operator opens them on purpose (SSRF). */
export const DANGEROUS_DEST_RANGES: readonly string[] = [
  '0.0.0.0/8', // unspecified / "this network"
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local, cloud metadata 169.254.169.254
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved + broadcast
  '::/128',
  '::1/128',
  'fe80::/10',
  'ff00::/8',
  'fd00:ec2::254/128', // AWS IPv6 metadata
];

/** RFC 1918, CGNAT, ULA: denied only when the operator asks (`access.denyPrivate`). */
export const PRIVATE_DEST_RANGES: readonly string[] = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7'];

export const LOOPBACK_RANGES: readonly string[] = ['127.0.0.0/8', '::1/128'];

/**
 * An interface name the proxy accepts (config and nft scripts use this one rule): what the kernel
 * accepts (dev_valid_name: 1..15 bytes, IFNAMSIZ with its NUL is 16; no '/', ':' or whitespace;
 * not "." or ".."), less the two characters an nft script cannot carry: '"' (a quoted string has
 * no escape for it) and the backslash (before a final '*' nft drops every backslash in the string).
 */
export function isInterfaceName(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && Buffer.byteLength(v) <= 15 && v !== '.' && v !== '..' && !/[/:\s"\\]/.test(v);
}

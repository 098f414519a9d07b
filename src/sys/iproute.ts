/**
 * iproute2 for the steering engine: policy routing (`ip rule fwmark` → one table per uplink) and
 * the MPTCP path manager (`ip mptcp endpoint`, `ip mptcp limits`). Everything the proxy installs
 * lives in an owned range (rule priorities and table ids from OWN_BASE, endpoint ids from
 * OWN_ENDPOINT_BASE), so cleanup can find it after a crash and never touches anything else.
 * Builders are pure text for `ip -batch -`.
 */
import { execTool, parseJsonOutput } from './exec';

/** 0x4d50, "MP": rule priorities and table ids OWN_BASE+1 .. OWN_BASE+OWN_SPAN are ours. */
export const OWN_BASE = 0x4d50;
export const OWN_SPAN = 64;
/** Routing marks: OWN_MARK_BASE | (slot+1). */
export const OWN_MARK_BASE = 0x4d500000;
/**
 * MPTCP endpoint ids OWN_ENDPOINT_BASE .. 255 are ours: backup-policy endpoints from the base,
 * cluster mode's announce endpoint at ANNOUNCE_ENDPOINT_ID, uplinks' signal endpoints above it.
 */
export const OWN_ENDPOINT_BASE = 192;
export const ANNOUNCE_ENDPOINT_ID = OWN_ENDPOINT_BASE + 31;

export const isOwnedPref = (p: number): boolean => p > OWN_BASE && p <= OWN_BASE + OWN_SPAN;
export const isOwnedTable = (t: number): boolean => isOwnedPref(t);
export const isOwnedEndpointId = (id: number): boolean => id >= OWN_ENDPOINT_BASE && id <= 255;

export interface UplinkRoute {
  /** 0-based slot in the owned range. */
  slot: number;
  dev: string;
  gateway?: string;
  source?: string;
  ipv6?: boolean;
}

export const slotMark = (slot: number): number => OWN_MARK_BASE + slot + 1;
export const slotTable = (slot: number): number => OWN_BASE + slot + 1;

/**
 * Transparent mode's slot: the last of the owned range (steering's uplinks use at most the first
 * 32), so its rule and table are found and removed by ownership like the rest.
 */
export const TPROXY_SLOT = OWN_SPAN - 1;
export const TPROXY_MARK = slotMark(TPROXY_SLOT);

/** Packets TPROXY marked are delivered locally (to the transparent socket), whatever their address. */
export function buildTproxyRouting(ipv6: boolean): string[] {
  const f = ipv6 ? '-6 ' : '';
  const t = slotTable(TPROXY_SLOT);
  // The route first, so the rule never points at an empty table.
  return [`${f}route replace local ${ipv6 ? '::/0' : '0.0.0.0/0'} dev lo table ${t}`, `${f}rule add fwmark 0x${TPROXY_MARK.toString(16)} table ${t} pref ${t}`];
}

export function buildUplinkRouting(u: UplinkRoute): string[] {
  const f = u.ipv6 ? '-6 ' : '';
  const via = u.gateway ? ` via ${u.gateway}` : '';
  const src = u.source ? ` src ${u.source}` : '';
  const t = slotTable(u.slot);
  return [
    `${f}route replace default${via} dev ${u.dev}${src} table ${t}`,
    `${f}rule add fwmark 0x${slotMark(u.slot).toString(16)} table ${t} pref ${t}`,
  ];
}

export type EndpointFlag = 'signal' | 'subflow' | 'backup' | 'fullmesh';

export function buildEndpointAdd(id: number, address: string, flags: readonly EndpointFlag[], dev?: string): string {
  return `mptcp endpoint add ${address} id ${id}${dev ? ` dev ${dev}` : ''}${flags.length ? ' ' + flags.join(' ') : ''}`;
}

/** Sends MP_PRIO on every subflow using the endpoint's address (measured on Linux 6.18: the option carries no address id). */
export function buildEndpointBackup(id: number, backup: boolean): string {
  return `mptcp endpoint change id ${id} ${backup ? 'backup' : 'nobackup'}`;
}

export function buildEndpointDelete(id: number): string {
  return `mptcp endpoint delete id ${id}`;
}

export interface MptcpLimits {
  subflows: number;
  addAddrAccepted: number;
}

export function buildLimits(l: MptcpLimits): string {
  return `mptcp limits set subflows ${l.subflows} add_addr_accepted ${l.addAddrAccepted}`;
}

/** `ip mptcp limits show` prints text even with -j on iproute2 6.1: "add_addr_accepted 0 subflows 2". */
export function parseLimits(text: string): MptcpLimits | null {
  const sub = /\bsubflows (\d+)/.exec(text);
  const acc = /\badd_addr_accepted (\d+)/.exec(text);
  return sub && acc ? { subflows: Number(sub[1]), addAddrAccepted: Number(acc[1]) } : null;
}

export interface Endpoint {
  id: number;
  address: string;
  dev?: string;
  flags: EndpointFlag[];
}

export function parseEndpoints(json: unknown): Endpoint[] {
  if (!Array.isArray(json)) return [];
  return json
    .filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null && typeof e.id === 'number' && typeof e.address === 'string')
    .map((e) => ({
      id: e.id as number,
      address: e.address as string,
      ...(typeof e.dev === 'string' ? { dev: e.dev } : {}),
      flags: (['signal', 'subflow', 'backup', 'fullmesh'] as const).filter((f) => e[f] === true),
    }));
}

export interface RuleEntry {
  priority: number;
  table: string;
  fwmark?: string;
}

export function parseRules(json: unknown): RuleEntry[] {
  if (!Array.isArray(json)) return [];
  return json
    .filter((r): r is Record<string, unknown> => typeof r === 'object' && r !== null && typeof r.priority === 'number')
    .map((r) => ({ priority: r.priority as number, table: String(r.table), ...(typeof r.fwmark === 'string' ? { fwmark: r.fwmark } : {}) }));
}

export function buildIfbAdd(name: string): string[] {
  return [`link add ${name} type ifb`, `link set ${name} up`];
}

export function buildLinkDelete(name: string): string {
  return `link del ${name}`;
}

/** Interface names from `ip -j link show` (pure). */
export function parseLinkNames(json: unknown): string[] {
  if (!Array.isArray(json)) return [];
  return json.map((l) => (l as { ifname?: unknown } | null)?.ifname).filter((n): n is string => typeof n === 'string');
}

export const listIfbLinks = async (): Promise<string[]> => parseLinkNames(await ipJson(['link', 'show', 'type', 'ifb']));

/**
 * Remove every rule of an owned slot's priority, then flush its table, when present (idempotent;
 * rules first, so none points at an empty table). True when something was removed.
 */
export async function removeSlotRouting(table: number, ipv6: boolean): Promise<boolean> {
  const f = ipv6 ? '-6 ' : '';
  const rules = (await listRules(ipv6)).filter((r) => r.priority === table);
  const tables = (await listOwnedTables(ipv6)).filter((x) => x === table);
  await ipBatch([...rules.map(() => `${f}rule del pref ${table}`), ...tables.map(() => `${f}route flush table ${table}`)]);
  return rules.length + tables.length > 0;
}

/** Remove transparent mode's rule and table if present (idempotent: also a crashed run's). */
export const removeTproxyRouting = (ipv6: boolean): Promise<boolean> => removeSlotRouting(slotTable(TPROXY_SLOT), ipv6);

/** Delete an MPTCP endpoint by id when it exists. */
export async function removeEndpoint(id: number): Promise<boolean> {
  if (!(await listEndpoints()).some((e) => e.id === id)) return false;
  await ipBatch([buildEndpointDelete(id)]);
  return true;
}

/** Delete a link by name when it exists. */
export async function removeLink(name: string): Promise<boolean> {
  if (!parseLinkNames(await ipJson(['link', 'show'])).includes(name)) return false;
  await ipBatch([buildLinkDelete(name)]);
  return true;
}

/** Idempotent and gap-free: an existing rule stays (removing it, even briefly, would let redirected packets be forwarded). */
export async function installTproxyRouting(ipv6: boolean): Promise<void> {
  const t = slotTable(TPROXY_SLOT);
  const hasRule = (await listRules(ipv6)).some((r) => r.priority === t);
  const [route, rule] = buildTproxyRouting(ipv6);
  await ipBatch(hasRule ? [route!] : [route!, rule!]);
}

/**
 * Run lines through `ip -batch -`, in order. Batch lines take no options of their own, so lines
 * the builders write as "-6 ..." go, run by run, through `ip -6 -batch -`.
 */
export async function ipBatch(lines: readonly string[]): Promise<void> {
  for (let i = 0; i < lines.length; ) {
    const v6 = lines[i]!.startsWith('-6 ');
    let j = i;
    while (j < lines.length && lines[j]!.startsWith('-6 ') === v6) j++;
    const run = lines.slice(i, j).map((l) => (v6 ? l.slice(3) : l));
    await execTool(['ip', ...(v6 ? ['-6'] : []), '-batch', '-'], { input: run.join('\n') + '\n' });
    i = j;
  }
}

async function ipJson(args: string[]): Promise<unknown> {
  const argv = ['ip', '-j', ...args];
  return parseJsonOutput(argv, (await execTool(argv)).stdout);
}

export const listEndpoints = async (): Promise<Endpoint[]> => parseEndpoints(await ipJson(['mptcp', 'endpoint', 'show']));
export const listRules = async (ipv6 = false): Promise<RuleEntry[]> => parseRules(await ipJson([ipv6 ? '-6' : '-4', 'rule', 'show']));

export async function getLimits(): Promise<MptcpLimits | null> {
  return parseLimits((await execTool(['ip', 'mptcp', 'limits', 'show'])).stdout);
}

/** The interface the kernel would send to `to` (from `from`) by (no marks). */
export async function routeDevice(to: string, from?: string): Promise<string | null> {
  const j = await ipJson(['route', 'get', to, ...(from ? ['from', from] : [])]);
  const dev = Array.isArray(j) ? (j[0] as { dev?: unknown } | undefined)?.dev : undefined;
  return typeof dev === 'string' ? dev : null;
}

export interface RouteHop {
  dev: string;
  gateway?: string;
  prefsrc?: string;
}

/** The first hop of `ip -j route get` output (pure); null when it names no device. */
export function parseRouteGet(json: unknown): RouteHop | null {
  const r = Array.isArray(json) ? (json[0] as Record<string, unknown> | undefined) : undefined;
  if (!r || typeof r.dev !== 'string') return null;
  return { dev: r.dev, ...(typeof r.gateway === 'string' ? { gateway: r.gateway } : {}), ...(typeof r.prefsrc === 'string' ? { prefsrc: r.prefsrc } : {}) };
}

/** How the kernel would send to `to` now (no marks): device, gateway, preferred source. */
export async function routeGet(to: string): Promise<RouteHop | null> {
  return parseRouteGet(await ipJson(['route', 'get', to]));
}

/** Destinations of the main table's routes inside `cidr` (`ip route show root`), the range's own route included. */
export async function routesWithin(cidr: string): Promise<string[]> {
  const j = await ipJson([cidr.includes(':') ? '-6' : '-4', 'route', 'show', 'root', cidr]);
  return Array.isArray(j) ? j.map((r) => (r as { dst?: unknown } | null)?.dst).filter((d): d is string => typeof d === 'string') : [];
}

/** Tables in the owned range that hold routes now (pure over `ip -j route show table all`). */
export function parseOwnedTables(json: unknown): number[] {
  if (!Array.isArray(json)) return [];
  const ids = json.map((r) => Number((r as { table?: unknown } | null)?.table)).filter((t) => Number.isInteger(t) && isOwnedTable(t));
  return [...new Set(ids)];
}

export async function listOwnedTables(ipv6 = false): Promise<number[]> {
  return parseOwnedTables(await ipJson([ipv6 ? '-6' : '-4', 'route', 'show', 'table', 'all']));
}

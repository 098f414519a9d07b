/**
 * nftables for the steering engine: one table, `inet mptcp_proxy`, owned by the proxy. Maps from
 * a subflow's 4-tuple (proxy address . port . peer address . port) to an HTB class (`meta
 * priority`, which HTB honours with no tc filter: the `fw` classifier is absent here) and to a
 * routing mark (`ip rule fwmark` → an uplink's table). Builders are pure (text for `nft -f -`);
 * nftApply() is the only call that changes the kernel.
 *
 * Scripts go through libnftables in-process (the library `nft` itself is built on) when it
 * loads: one transaction costs ~0.1 ms there against 5-13 ms for spawning `nft -f -`, and a
 * subflow's map element is on the critical path of steering's reaction time. Without the
 * library (another distribution's soname) the same script goes to `nft -f -`.
 */
import net from 'node:net';
import koffi from 'koffi';
import { isInterfaceName, parseCidr } from '../core/address';
import { ExecErrorCode, execTool, parseJsonOutput, ExecError } from './exec';

export const NFT_FAMILY = 'inet';
export const NFT_TABLE = 'mptcp_proxy';

/** A subflow's packets as the proxy sends them: from `local` to `remote`. */
export interface FourTuple {
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
}

export type NftMapKind = 'class' | 'mark';

export interface NftElementOp {
  op: 'add' | 'delete';
  map: NftMapKind;
  tuple: FourTuple;
  /** classid "4d50:1a" or a mark number; only for add. */
  value?: string | number;
}

const mapName = (kind: NftMapKind, family: 4 | 6): string => `sf${family}_${kind}`;

export function tupleFamily(t: FourTuple): 4 | 6 {
  return net.isIPv6(t.localAddr) ? 6 : 4;
}

function key(t: FourTuple): string {
  return `${t.localAddr} . ${t.localPort} . ${t.remoteAddr} . ${t.remotePort}`;
}

/**
 * An owned table as one transaction. "table X" + "delete table X" first makes it idempotent: a
 * table left by a crashed run is replaced in the same transaction. The comment names the owner.
 */
export function ownedTableScript(table: string, purpose: string, body: readonly string[]): string {
  const t = `${NFT_FAMILY} ${table}`;
  return [`table ${t}`, `delete table ${t}`, `table ${t} {`, `  comment "owned by mptcp-proxy: ${purpose}"`, ...body, '}'].join('\n');
}

/**
 * An interface name as an nft quoted string. A final '*' would make it a prefix wildcard ("eth*"
 * matches eth0): escaped, it matches that one name.
 */
function nftInterfaceName(name: string): string {
  if (!isInterfaceName(name)) throw new TypeError(`not an interface name: ${JSON.stringify(name)}`);
  return `"${name.replace(/\*$/, '\\*')}"`;
}

/** `iifname { "a", "b" } ` (with its trailing space), or '' for none = every interface; names are checked. */
export function interfaceMatch(keyword: 'iifname' | 'oifname', names: readonly string[]): string {
  return names.length > 0 ? `${keyword} { ${names.map(nftInterfaceName).join(', ')} } ` : '';
}

/** The steering table: subflow 4-tuple maps to a routing mark and an HTB class. */
export function buildTableScript(): string {
  const maps = ([4, 6] as const).flatMap((f) => {
    const a = f === 4 ? 'ipv4_addr' : 'ipv6_addr';
    return (['class', 'mark'] as const).map((k) => `  map ${mapName(k, f)} { type ${a} . inet_service . ${a} . inet_service : ${k === 'class' ? 'classid' : 'mark'}; }`);
  });
  const lookup = (f: 4 | 6, k: NftMapKind): string => `${f === 4 ? 'ip' : 'ip6'} saddr . tcp sport . ${f === 4 ? 'ip' : 'ip6'} daddr . tcp dport map @${mapName(k, f)}`;
  return ownedTableScript(NFT_TABLE, 'subflow steering', [
    ...maps,
    // type route: a changed mark re-routes locally generated packets (the proxy's own subflows).
    '  chain steer_route {',
    '    type route hook output priority mangle; policy accept;',
    `    meta nfproto ipv4 meta l4proto tcp meta mark set ${lookup(4, 'mark')}`,
    `    meta nfproto ipv6 meta l4proto tcp meta mark set ${lookup(6, 'mark')}`,
    '  }',
    // postrouting: also sees forwarded packets (router mode); the class decides the HTB leaf.
    '  chain steer_class {',
    '    type filter hook postrouting priority mangle; policy accept;',
    `    meta nfproto ipv4 meta l4proto tcp meta priority set ${lookup(4, 'class')}`,
    `    meta nfproto ipv6 meta l4proto tcp meta priority set ${lookup(6, 'class')}`,
    '  }',
  ]);
}

/** Element changes as one `nft -f -` transaction (all or nothing). */
export function buildElementScript(ops: readonly NftElementOp[]): string {
  return ops
    .map((o) => {
      const m = `${NFT_FAMILY} ${NFT_TABLE} ${mapName(o.map, tupleFamily(o.tuple))}`;
      if (o.op === 'delete') return `delete element ${m} { ${key(o.tuple)} }`;
      if (o.value === undefined) throw new TypeError('nft add element needs a value');
      const v = typeof o.value === 'number' ? `0x${o.value.toString(16)}` : o.value;
      return `add element ${m} { ${key(o.tuple)} : ${v} }`;
    })
    .join('\n');
}

/** Transparent mode's own table (a separate one: steering replaces `inet mptcp_proxy` whole). */
export const TPROXY_TABLE = 'mptcp_proxy_tproxy';

/** One TPROXY redirect: TCP to any of `dports` goes to the listener at address:port. */
export interface TproxyTarget {
  /** The listener's address; 0.0.0.0 or :: = whichever local address it is bound on. */
  address: string;
  port: number;
  dports: readonly number[];
}

/**
 * The transparent table as one transaction (a crashed run's table is replaced in it). Packets
 * for the host's own addresses are left alone, so its listeners and services stay reachable and
 * a transparent listener never sees a connection that was not redirected to it. `mark` routes
 * the diverted packets to the local table (see buildTproxyRouting).
 */
export function buildTproxyScript(targets: readonly TproxyTarget[], interfaces: readonly string[], mark: number, clients: readonly string[]): string {
  const iif = interfaceMatch('iifname', interfaces);
  // Only allowed clients are diverted: anyone else's traffic passes as if the proxy were not there
  // (diverting it would only get it reset). A family with no allowed range diverts nothing.
  const ranges = clients.map(parseCidr);
  const rules = targets.flatMap((x) => {
    const v6 = net.isIPv6(x.address);
    const sources = ranges.filter((r) => (r.family === 'ipv6') === v6).map((r) => `${r.address}/${r.prefix}`);
    if (sources.length === 0) return [];
    const any = x.address === '0.0.0.0' || x.address === '::';
    const to = any ? `:${x.port}` : v6 ? `[${x.address}]:${x.port}` : `${x.address}:${x.port}`;
    const ports = x.dports.length === 1 ? `${x.dports[0]}` : `{ ${x.dports.join(', ')} }`;
    const ip = v6 ? 'ip6' : 'ip';
    return [`    ${iif}${ip} saddr { ${sources.join(', ')} } tcp dport ${ports} tproxy ${ip} to ${to} meta mark set 0x${mark.toString(16)} accept`];
  });
  return ownedTableScript(TPROXY_TABLE, 'transparent mode (TPROXY)', [
    '  chain divert {',
    '    type filter hook prerouting priority mangle; policy accept;',
    '    fib daddr type local return',
    ...rules,
    '  }',
  ]);
}

export function buildDeleteTableScript(table = NFT_TABLE): string {
  return `delete table ${NFT_FAMILY} ${table}`;
}

/** The doctor's throwaway table (see buildTproxyProbeScript). */
export const TPROXY_PROBE_TABLE = 'mptcp_proxy_doctor';

/**
 * Can this kernel load TPROXY rules (nft_tproxy, nf_tproxy_ipv4/ipv6)? A table with one rule per
 * family, added and deleted in one transaction: the kernel still builds each expression (a
 * missing one is refused), nothing stays, and the chain has no hook, so nothing is diverted.
 */
export function buildTproxyProbeScript(families: readonly (4 | 6)[]): string {
  const rules = families.map((f) => (f === 4 ? '    meta nfproto ipv4 meta l4proto tcp tproxy ip to 127.0.0.1:9' : '    meta nfproto ipv6 meta l4proto tcp tproxy ip6 to [::1]:9'));
  const table = ownedTableScript(TPROXY_PROBE_TABLE, 'doctor probe, deleted in the same transaction', ['  chain probe {', ...rules, '  }']);
  return `${table}\n${buildDeleteTableScript(TPROXY_PROBE_TABLE)}`;
}

interface LibNft {
  run(script: string): { rc: number; error: string };
}

let lib: LibNft | null | undefined;

/** libnftables with buffered output and errors (nothing reaches the proxy's stdout); null if absent. */
function libnft(): LibNft | null {
  if (lib !== undefined) return lib;
  try {
    const so = koffi.load('libnftables.so.1');
    const ctxNew = so.func('void *nft_ctx_new(uint32_t flags)');
    const bufferOutput = so.func('int nft_ctx_buffer_output(void *ctx)');
    const bufferError = so.func('int nft_ctx_buffer_error(void *ctx)');
    const runBuffer = so.func('int nft_run_cmd_from_buffer(void *ctx, const char *buf)');
    const errorBuffer = so.func('const char *nft_ctx_get_error_buffer(void *ctx)');
    const outputBuffer = so.func('const char *nft_ctx_get_output_buffer(void *ctx)');
    const ctx: unknown = ctxNew(0);
    if (!ctx) throw new Error('nft_ctx_new failed');
    bufferOutput(ctx);
    bufferError(ctx);
    lib = {
      run(script) {
        const rc = runBuffer(ctx, script) as number;
        // Reading resets the buffers, so one command's messages never leak into the next.
        outputBuffer(ctx);
        return { rc, error: String((errorBuffer(ctx) as string | null) ?? '') };
      },
    };
  } catch {
    lib = null;
  }
  return lib;
}

/** Run an nft script as one transaction (all or nothing); an ExecError when nft refuses it. */
export async function nftApply(script: string): Promise<void> {
  if (script.trim() === '') return;
  const l = libnft();
  if (!l) {
    await execTool(['nft', '-f', '-'], { input: script + '\n' });
    return;
  }
  const r = l.run(script + '\n');
  if (r.rc !== 0) throw new ExecError(ExecErrorCode.Failed, ['libnftables', 'nft_run_cmd_from_buffer'], r.error, r.rc);
}

/** Names of the tables of our family (inet). */
export async function listTables(): Promise<string[]> {
  const argv = ['nft', '-j', 'list', 'tables', NFT_FAMILY];
  const j = parseJsonOutput<{ nftables?: { table?: { name: string } }[] }>(argv, (await execTool(argv)).stdout);
  return (j.nftables ?? []).flatMap((e) => (e.table ? [e.table.name] : []));
}

/** Does our table (or another owned one, e.g. the tuning module's) exist? (after a crash it may) */
export async function nftTableExists(table = NFT_TABLE): Promise<boolean> {
  return (await listTables()).includes(table);
}

/** Remove our table if present; true when one was removed. */
export async function nftDeleteTable(table = NFT_TABLE): Promise<boolean> {
  if (!(await nftTableExists(table))) return false;
  await nftApply(buildDeleteTableScript(table));
  return true;
}


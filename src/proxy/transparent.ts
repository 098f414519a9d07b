/**
 * Transparent mode: clients configure nothing; their TCP to chosen ports is redirected to a
 * `transparent` listener by an nftables TPROXY rule, so the accepted socket's local address IS
 * the destination the client asked for. The front end checks it like a CONNECT target (client
 * allow-list, destination policy, ports, through the same upstream connector), refuses its own
 * listeners (a loop), and tunnels. A refusal resets the client, as an unreachable server would.
 *
 * TransparentRules makes the kernel side: the nft table and the fwmark rule + local route that
 * deliver diverted packets to the listener, installed on start and replaced on reload through
 * the owner of kernel state (src/kstate), which removes them on stop, after a crash and for
 * `mptcp-proxy cleanup`.
 */
import net from 'node:net';
import os from 'node:os';
import type { Config, ListenerConfig } from '../config/schema';
import { normalizeIpLiteral, unmapIPv6, type HostPort } from '../core/address';
import type { ClientConnection } from '../core/connection';
import { CodedError, ErrorCode, ProxyError, toProxyError } from '../core/errors';
import type { KernelItem, KernelState } from '../kstate/kernel-state';
import type { Logger } from '../log/logger';
import { TPROXY_MARK, TPROXY_SLOT, installTproxyRouting, slotTable } from '../sys/iproute';
import { NFT_FAMILY, TPROXY_TABLE, buildTproxyScript, nftApply, type TproxyTarget } from '../sys/nft';
import type { FrontEnd, ProxyContext } from './context';
import { refuse as refuseConnection } from './refusal';
import { tunnel } from './tunnel';

const WILDCARD = new Set(['0.0.0.0', '::']);

/** The host's own addresses (every interface, loopback included), normalised. */
export function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) out.add(unmapIPv6(a.address));
  return out;
}

/**
 * Is `dest` one of the proxy's own listening endpoints? A wildcard listener owns its port on
 * every local address. Pure: the caller supplies the local addresses.
 */
export function isOwnEndpoint(dest: HostPort, own: readonly HostPort[], local: () => ReadonlySet<string>): boolean {
  const host = normalizeIpLiteral(dest.host) ?? dest.host;
  let addrs: ReadonlySet<string> | null = null;
  for (const e of own) {
    if (e.port !== dest.port) continue;
    if (WILDCARD.has(e.host)) {
      addrs ??= local();
      if (addrs.has(host) || WILDCARD.has(host)) return true;
    } else if ((normalizeIpLiteral(e.host) ?? e.host) === host) return true;
  }
  return false;
}

/**
 * FrontEnd for transparent listeners. `own` lists every endpoint the proxy listens on now (proxy
 * listeners with their bound ports, the admin endpoint).
 */
export function createTransparentFrontEnd(own: () => readonly HostPort[]): FrontEnd {
  return (conn: ClientConnection, ctx: ProxyContext) => {
    conn.protocol = 'transparent';
    const dest = { host: unmapIPv6(conn.localAddress), port: conn.localPort };
    conn.destination = dest;
    // A reset is what the client would have seen from a destination that refused it.
    const refuse = (err: ProxyError): void =>
      refuseConnection(ctx, conn, err, () => {
        if (!conn.socket.destroyed) conn.socket.resetAndDestroy();
      });
    if (!ctx.access.clientAllowed(conn.clientAddress)) return refuse(new ProxyError(ErrorCode.ClientDenied, conn.clientAddress));
    // Not redirected (a client dialled the listener itself) or redirected back at us: a loop.
    if (isOwnEndpoint(dest, own(), localAddresses)) return refuse(new ProxyError(ErrorCode.DestDenied, `${dest.host}:${dest.port} is the proxy itself`));
    ctx.upstream
      .connect(dest, conn)
      .then((upstream) => (conn.socket.destroyed ? void upstream.destroy() : tunnel(conn, upstream, ctx)))
      .catch((e: unknown) => refuse(toProxyError(e)));
  };
}

/** The TPROXY redirects the config asks for, one per transparent listener. */
export function tproxyTargets(listeners: readonly ListenerConfig[]): TproxyTarget[] {
  return listeners.filter((l) => l.protocol === 'transparent').map((l) => ({ address: l.host, port: l.port, dports: l.ports ?? [l.port] }));
}

export class TransparentRulesError extends CodedError<'MPX_TPROXY_RULES'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MPX_TPROXY_RULES', message, options);
  }
}

const TABLE_ITEM: KernelItem = { kind: 'nft-table', table: TPROXY_TABLE };
const slotItem = (f: 4 | 6): KernelItem => ({ kind: 'route-slot', table: slotTable(TPROXY_SLOT), v6: f === 6 });
const ALL_ITEMS = [TABLE_ITEM, slotItem(4), slotItem(6)];

/** Kernel state for transparent mode. One per network namespace (the subflow plane's owner). */
export class TransparentRules {
  constructor(
    private config: Pick<Config, 'listeners' | 'transparent' | 'access'>,
    private readonly log: Logger,
    private readonly kstate: KernelState,
  ) {}

  /**
   * Install (or replace) the table and routes. A failure at start is fatal (the listeners would
   * get nothing) and leaves nothing behind; on reload the running rules stay (nft is atomic).
   */
  async start(): Promise<void> {
    const targets = tproxyTargets(this.config.listeners);
    if (targets.length === 0 || !this.config.transparent.rules) return void (await this.kstate.removeInstalled(ALL_ITEMS));
    const families = new Set(targets.map((t) => (net.isIPv6(t.address) ? 6 : 4) as 4 | 6));
    const replacing = this.kstate.has(TABLE_ITEM);
    try {
      await this.kstate.install(TABLE_ITEM, () => nftApply(buildTproxyScript(targets, this.config.transparent.interfaces, TPROXY_MARK, this.config.access.allowClients)));
      for (const f of [4, 6] as const) {
        if (families.has(f)) await this.kstate.install(slotItem(f), () => installTproxyRouting(f === 6));
        else await this.kstate.removeInstalled([slotItem(f)]);
      }
    } catch (e) {
      if (!replacing) await this.kstate.removeInstalled(ALL_ITEMS);
      throw new TransparentRulesError(`transparent mode: cannot install the TPROXY rules: ${(e as Error).message}`, { cause: e });
    }
    this.log.info('transparent mode: TPROXY rules installed', {
      table: `${NFT_FAMILY} ${TPROXY_TABLE}`,
      interfaces: this.config.transparent.interfaces.length ? this.config.transparent.interfaces : 'all',
      redirects: targets.map((t) => `${t.dports.join(',')} → ${net.isIPv6(t.address) ? `[${t.address}]` : t.address}:${t.port}`),
    });
  }

  /** Follow a reloaded config. */
  async reload(next: Pick<Config, 'listeners' | 'transparent' | 'access'>): Promise<void> {
    this.config = next;
    await this.start();
  }
}

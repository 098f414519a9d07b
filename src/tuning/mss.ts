/**
 * MSS clamping to each path's MTU (a smaller MTU on one path hurts MPTCP more than TCP, and a
 * segment too big for one path is lost on it). One owned nftables table, `inet mptcp_proxy_mss`,
 * whose single rule rewrites the MSS option of every SYN and SYN/ACK leaving on a client-facing
 * interface to the MTU of the route it takes (`rt mtu`, minus IP and TCP headers). nft only ever
 * lowers an MSS with this rule, never raises one.
 *
 * The proxy's own sockets already advertise an MSS from their route's MTU; the rule makes the
 * same hold for traffic the host forwards (the proxy as the clients' gateway, router mode) and
 * for any program on the host, so one lowered link MTU cannot blackhole full-size segments.
 * The table is replaced atomically on start and reload, and, like all kernel state, installed
 * and removed through its one owner (src/kstate): on stop, after a crash, by `mptcp-proxy cleanup`.
 */
import { CodedError } from '../core/errors';
import type { KernelItem, KernelState } from '../kstate/kernel-state';
import type { Logger } from '../log/logger';
import { ExecError, ExecErrorCode } from '../sys/exec';
import { NFT_FAMILY, NFT_TABLE, interfaceMatch, nftApply, ownedTableScript } from '../sys/nft';

/** Owned by name (the steering table's name is its prefix). */
export const MSS_TABLE = `${NFT_TABLE}_mss`;
const TABLE_ITEM: KernelItem = { kind: 'nft-table', table: MSS_TABLE };

/** auto: install when nft works here (root with nftables), else carry on without. */
export type MssClampMode = 'auto' | boolean;

export interface MssClampConfig {
  mssClamp: MssClampMode;
  /** Client-facing interfaces; empty = every interface. */
  mssInterfaces: string[];
}

/** The whole table as one `nft -f -` transaction (interface names are checked). */
export function buildMssClampScript(interfaces: readonly string[]): string {
  const oif = interfaceMatch('oifname', interfaces);
  return ownedTableScript(MSS_TABLE, 'MSS clamp to route MTU', [
    // postrouting sees the proxy's own SYN/ACKs and forwarded SYNs alike, with their route chosen.
    '  chain clamp {',
    '    type filter hook postrouting priority mangle; policy accept;',
    `    ${oif}tcp flags & (syn | rst) == syn counter tcp option maxseg size set rt mtu`,
    '  }',
  ]);
}

export class MssClampError extends CodedError<'MPX_MSS_CLAMP'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MPX_MSS_CLAMP', message, options);
  }
}

export class MssClamp {
  constructor(
    private config: MssClampConfig,
    private readonly log: Logger,
    private readonly kstate: KernelState,
  ) {}

  /** Install (or replace) the table. `true` makes a failure fatal; `auto` logs it and goes on. */
  async start(): Promise<void> {
    if (this.config.mssClamp === false) return;
    try {
      await this.kstate.install(TABLE_ITEM, () => nftApply(buildMssClampScript(this.config.mssInterfaces)));
      this.log.info('MSS clamp installed', { table: `${NFT_FAMILY} ${MSS_TABLE}`, interfaces: this.config.mssInterfaces.length ? this.config.mssInterfaces : 'all' });
    } catch (e) {
      const why = e instanceof ExecError && e.code === ExecErrorCode.NotFound ? 'nft is not installed' : (e as Error).message;
      if (this.config.mssClamp === true) throw new MssClampError(`MSS clamp (tuning.mssClamp: true): ${why}`, { cause: e });
      this.log.info('MSS clamp not installed (tuning.mssClamp: auto)', { reason: why });
    }
  }

  /** Replace the table, or remove it when switched off. */
  async reload(next: MssClampConfig): Promise<void> {
    this.config = next;
    if (next.mssClamp === false) await this.kstate.removeInstalled([TABLE_ITEM]);
    else await this.start();
  }
}

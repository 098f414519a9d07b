/**
 * Why a connection uses one path: derived from its registry record (subflows up and closed, with
 * the kernel's close reason), whether it is MPTCP at all, and the proxy namespace's path-manager
 * state (subflow limit, announced addresses). Each cause comes with the fix an operator applies.
 * Only the proxy's side is visible: a client that never tried to join is told apart from one that
 * was refused by the limit, but not from one that has no endpoint for its other path.
 */
import os from 'node:os';
import { getLimits, listEndpoints, type MptcpLimits } from '../sys/iproute';
import { PM_TYPE_SYSCTL, readSysctl } from '../sys/sysctl';
import type { MptcpConnectionRecord } from './registry';

export type SinglePathCause = 'fallback' | 'path-down' | 'join-limit' | 'no-endpoint' | 'client-never-joined';

export interface PathDiagnosis {
  cause: SinglePathCause;
  detail: string;
  fix: string;
}

/** The path manager of the proxy's namespace, as far as it was readable. */
export interface PathManagerView {
  limits: MptcpLimits | null;
  /** Addresses the proxy announces (endpoints with the signal flag); null when unreadable. */
  signals: string[] | null;
  /** Why a part could not be read. */
  errors: string[];
  /** The proxy is the path manager (paths.pathManager: userspace): limits do not apply, lost paths are healed. */
  userspace?: boolean;
}

export async function readPathManagerView(): Promise<PathManagerView> {
  const errors: string[] = [];
  const limits = await getLimits().catch((e: unknown) => (errors.push(`limits: ${(e as Error).message}`), null));
  const endpoints = await listEndpoints().catch((e: unknown) => (errors.push(`endpoints: ${(e as Error).message}`), null));
  return { limits, signals: endpoints ? endpoints.filter((e) => e.flags.includes('signal')).map((e) => e.address) : null, errors, userspace: readSysctl(PM_TYPE_SYSCTL) === '1' };
}

const errnoName = (n: number): string => Object.entries(os.constants.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;

/** MP_TCPRST reason codes (RFC 8684 3.6). */
const RESET_REASONS = ['unspecified', 'MPTCP-specific error', 'lack of resources', 'administratively prohibited', 'too much outstanding data', 'unacceptable performance', 'middlebox interference'];

/**
 * Null when the connection is not on one path, or nothing can be said (MPTCP unknown, no record
 * yet). `mptcp` is TCP_IS_MPTCP of the accepted socket.
 */
export function diagnoseSinglePath(mptcp: boolean | null, rec: MptcpConnectionRecord | undefined, pm: PathManagerView): PathDiagnosis | null {
  if (mptcp === false) {
    return {
      cause: 'fallback',
      detail: 'plain TCP: the client did not offer MPTCP, or its MP_CAPABLE was lost on the way (see mptcp_proxy_kernel_fallbacks_total)',
      fix: 'run the client over MPTCP (net.mptcp.enabled=1 on it, an MPTCP-capable app or `mptcpize run`); check that no middlebox strips TCP options',
    };
  }
  if (mptcp === null || rec === undefined) return null;
  const subflows = [...rec.subflows.values()];
  const up = subflows.filter((s) => s.state === 'established');
  if (up.length !== 1) return null;
  const lost = subflows.find((s) => s.state === 'closed' && !up.some((u) => u.remote.host === s.remote.host));
  if (lost) {
    const why = [lost.closeError !== null ? errnoName(lost.closeError) : null, lost.resetReason !== null ? `reset by the client: ${RESET_REASONS[lost.resetReason] ?? `reason ${lost.resetReason}`}` : null].filter(Boolean).join(', ');
    return {
      cause: 'path-down',
      detail: `the subflow from ${lost.remote.host} via ${lost.interface ?? 'an unknown interface'} closed${why ? ` (${why})` : ''} and no other path replaced it`,
      fix: pm.userspace
        ? 'the proxy re-announces its addresses while the path is lost: the client joins again once the path works, given a fullmesh endpoint for it and room in its limits (ip mptcp limits set subflows 8 add_addr_accepted 8)'
        : 'the in-kernel path manager does not re-create a closed subflow: once the path works again, the client must join again (its address or endpoint re-added) or the connection be reopened; paths.pathManager: userspace heals it',
    };
  }
  // The userspace path manager accepts joins whatever the in-kernel limits say.
  if (!pm.userspace && pm.limits !== null && pm.limits.subflows < 1) {
    return {
      cause: 'join-limit',
      detail: `the proxy's MPTCP limit allows ${pm.limits.subflows} additional subflows per connection: joins are refused (mptcp_proxy_kernel_join_rejections_total{cause="limit"})`,
      fix: 'in the proxy\'s namespace: ip mptcp limits set subflows N (N ≥ the client\'s paths − 1; at most 8)',
    };
  }
  if (pm.signals !== null && pm.signals.length === 0) {
    return {
      cause: 'no-endpoint',
      detail: 'no join came from the client, and the proxy announces no address it could join (no signal endpoint)',
      fix: 'on the client: an MPTCP subflow endpoint per extra path (ip mptcp endpoint add ADDR dev IF subflow) and ip mptcp limits set subflows ≥ 1; or on the proxy: announce a second address (ip mptcp endpoint add ADDR dev IF signal)',
    };
  }
  return {
    cause: 'client-never-joined',
    detail: `the proxy announces ${pm.signals?.join(', ') ?? 'its addresses'} but the client has not joined`,
    fix: 'on the client: accept announcements (ip mptcp limits set add_addr_accepted ≥ 1 subflows ≥ 1), or add an MPTCP subflow endpoint per extra path',
  };
}

/**
 * Who may use the proxy and where it may connect. Destination checks run on the address actually
 * connected to (after DNS), so names that resolve into denied ranges are refused too.
 */
import { CidrSet, DANGEROUS_DEST_RANGES, LOOPBACK_RANGES, PRIVATE_DEST_RANGES } from '../core/address';
import { ErrorCode, ProxyError, toProxyError } from '../core/errors';
import type { Config } from '../config/schema';
import { AuthGuard } from './auth-guard';
import { decoyHash } from './passwords';

/** The ranges the access policy is made of (also compiled into the native fast path's tables). */
export function accessRanges(access: Config['access']): { clients: readonly string[]; denied: readonly string[]; opened: readonly string[] } {
  return {
    clients: access.allowClients.length > 0 ? access.allowClients : LOOPBACK_RANGES,
    denied: [...DANGEROUS_DEST_RANGES, ...(access.denyPrivate ? PRIVATE_DEST_RANGES : []), ...access.denyDest],
    opened: access.allowDest,
  };
}

export class AccessControl {
  private readonly clients: CidrSet;
  private readonly denied: CidrSet;
  private readonly opened: CidrSet;
  private readonly ports: ReadonlySet<number>;
  private readonly users: ReadonlyMap<string, string>;
  private readonly decoy: string;
  private readonly credentialsTtlMs: number;

  /** `guard` carries the credential cache and failure scores over a reload. */
  constructor(
    access: Config['access'],
    readonly guard = new AuthGuard(),
  ) {
    const ranges = accessRanges(access);
    this.clients = new CidrSet(ranges.clients);
    this.denied = new CidrSet(ranges.denied);
    this.opened = new CidrSet(ranges.opened);
    this.ports = new Set(access.connectPorts);
    this.users = new Map(access.users.map((u) => [u.name, u.password]));
    this.decoy = decoyHash(this.users.values());
    this.credentialsTtlMs = access.credentialsTtlMs;
  }

  clientAllowed(ip: string): boolean {
    return this.clients.has(ip);
  }

  get authRequired(): boolean {
    return this.users.size > 0;
  }

  /**
   * Null when the credentials are right, else the refusal to answer with. Off the event loop,
   * constant-time, unknown users cost what wrong passwords cost (see AuthGuard).
   */
  authenticate(user: string, password: string, client: string): Promise<ProxyError | null> {
    const request = { user, password, stored: this.users.get(user), decoy: this.decoy, ttlMs: this.credentialsTtlMs, client };
    return this.guard.check(request).then((outcome) => {
      if (outcome === 'cached' || outcome === 'verified') return null;
      if (outcome === 'busy' || outcome === 'throttled') return new ProxyError(ErrorCode.AuthBusy, `${outcome}, user ${JSON.stringify(user)}`);
      return new ProxyError(ErrorCode.AuthFailed, `user ${JSON.stringify(user)}`);
    }, toProxyError);
  }

  /** Throws before any connect when the port is not allowed. */
  checkPort(port: number): void {
    if (port < 1 || port > 65535) throw new ProxyError(ErrorCode.BadRequest, `port ${port}`);
    if (this.ports.size > 0 && !this.ports.has(port)) throw new ProxyError(ErrorCode.PortDenied, `port ${port}`);
  }

  /** True when the (numeric, normalised) address may be connected to. */
  destinationAllowed(ip: string): boolean {
    return this.opened.has(ip) || !this.denied.has(ip);
  }
}

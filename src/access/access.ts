/**
 * Who may use the proxy and where it may connect. Destination checks run on the address actually
 * connected to (after DNS), so names that resolve into denied ranges are refused too.
 */
import { CidrSet, DANGEROUS_DEST_RANGES, LOOPBACK_RANGES, PRIVATE_DEST_RANGES } from '../core/address';
import { ErrorCode, ProxyError } from '../core/errors';
import type { Config } from '../config/schema';
import { verifyPassword } from './passwords';

export class AccessControl {
  private readonly clients: CidrSet;
  private readonly denied: CidrSet;
  private readonly opened: CidrSet;
  private readonly ports: ReadonlySet<number>;
  private readonly users: ReadonlyMap<string, string>;

  constructor(access: Config['access']) {
    this.clients = new CidrSet(access.allowClients.length > 0 ? access.allowClients : LOOPBACK_RANGES);
    this.denied = new CidrSet([...DANGEROUS_DEST_RANGES, ...(access.denyPrivate ? PRIVATE_DEST_RANGES : []), ...access.denyDest]);
    this.opened = new CidrSet(access.allowDest);
    this.ports = new Set(access.connectPorts);
    this.users = new Map(access.users.map((u) => [u.name, u.password]));
  }

  clientAllowed(ip: string): boolean {
    return this.clients.has(ip);
  }

  get authRequired(): boolean {
    return this.users.size > 0;
  }

  /** Constant-time password check; unknown users cost the same as wrong passwords. */
  authenticate(user: string, password: string): boolean {
    const stored = this.users.get(user);
    const ok = verifyPassword(stored ?? 'plain$\u0000unknown-user', password);
    return stored !== undefined && ok;
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

/**
 * Where a connection goes: the first upstream route that matches what the client asked for
 * (client, proxy address, destination as requested, user, listener) names `direct` or parents;
 * with no route matching, every parent when there are any, else direct. Direct connections are
 * the connector's (./connector.ts); through parents, the healthy ones are tried fastest first
 * (./parent-pool.ts) until one gives a tunnel, HTTP parents by CONNECT (./http-parent.ts),
 * SOCKS5 ones by the socks client (./socks-parent.ts).
 *
 * The destination policy applies before a parent is chosen, on what the client asked for: its
 * port, and its address when it is a literal. Names go to the parent unresolved: the parent
 * resolves them in its own network (which may see names this host cannot), and the addresses
 * connected to are in the parent's network, which its own policy guards.
 */
import type net from 'node:net';
import type { AccessControl } from '../access/access';
import type { ParentConfig, UpstreamConfig } from '../config/upstream';
import { normalizeIpLiteral } from '../core/address';
import type { ClientConnection, Destination } from '../core/connection';
import { ErrorCode, ProxyError, toProxyError } from '../core/errors';
import type { ProxyEvents } from '../core/events';
import { compileMatch, type MatchSubject } from '../core/match';
import type { Logger } from '../log/logger';
import { DefaultUpstreamConnector, writeAll, type Resolver, type UpstreamConnector } from './connector';
import { dialParent, ParentFailure, type ParentHandshake } from './dial';
import { httpConnect, proxyAuthorization } from './http-parent';
import { ParentPool } from './parent-pool';
import { socks5Connect } from './socks-parent';

/** How an absolute-form HTTP request leaves through a parent (null from forwardHop = direct). */
export interface ForwardHop {
  /** Connected to an HTTP parent (absoluteForm) or tunnelled through a SOCKS parent to the origin; paused. */
  socket: net.Socket;
  /** Send the request target as is (HTTP parent) instead of origin-form. */
  absoluteForm: boolean;
  proxyAuthorization: string | null;
}

export interface Upstream extends UpstreamConnector {
  /**
   * Absolute-form HTTP: a hop through a parent, or null at once when the route is direct (the
   * forwarder's pooled agent then connects, as without parents).
   */
  forwardHop(dest: Destination, conn: ClientConnection): Promise<ForwardHop> | null;
  /** Stop the parents' probes (reload, shutdown). */
  close(): void;
}

const HANDSHAKES: Record<ParentConfig['protocol'], ParentHandshake> = { http: httpConnect, socks5: socks5Connect };

interface Route {
  name: string;
  matches(s: MatchSubject): boolean;
  via: 'direct' | readonly string[];
}

export class UpstreamRouter implements Upstream {
  private readonly direct: DefaultUpstreamConnector;
  private readonly pool: ParentPool;
  private readonly routes: Route[];
  private readonly fallback: 'direct' | readonly string[];

  constructor(
    private readonly upstream: UpstreamConfig,
    private readonly access: AccessControl,
    private readonly events: ProxyEvents,
    log: Logger,
    resolve?: Resolver,
  ) {
    this.direct = new DefaultUpstreamConnector(upstream, access, events, resolve);
    this.pool = new ParentPool(upstream, events, log);
    this.routes = upstream.routes.map((r) => ({ name: r.name, matches: compileMatch(r.match), via: r.via }));
    this.fallback = upstream.parents.length > 0 ? upstream.parents.map((p) => p.name) : 'direct';
  }

  /** The route's way for this connection: 'direct' or the parents it may use. */
  viaFor(dest: Destination, conn: ClientConnection): 'direct' | readonly string[] {
    if (this.routes.length === 0) return this.fallback;
    const subject: MatchSubject = {
      client: conn.clientAddress,
      local: conn.localAddress,
      interface: null,
      kind: 'initial',
      destinationHost: dest.host,
      destinationAddress: null,
      user: conn.user,
      listener: conn.listener,
    };
    return this.routes.find((r) => r.matches(subject))?.via ?? this.fallback;
  }

  connect(dest: Destination, conn: ClientConnection, synData?: Buffer): Promise<net.Socket> {
    const via = this.viaFor(dest, conn);
    // Direct: the connector's own promise, no extra step on the path every connection took before parents.
    if (via === 'direct') return this.direct.connect(dest, conn, synData);
    return this.tunnelThroughParents(via, dest, conn, synData);
  }

  private async tunnelThroughParents(via: readonly string[], dest: Destination, conn: ClientConnection, synData?: Buffer): Promise<net.Socket> {
    const socket = await this.throughParents(via, dest, conn, (p, s, left) => HANDSHAKES[p.protocol](s, p, dest, left));
    // Through a parent the client's early bytes follow the tunnel's set-up (no SYN to carry them).
    if (synData && synData.length > 0) await writeAll(socket, synData);
    return socket;
  }

  forwardHop(dest: Destination, conn: ClientConnection): Promise<ForwardHop> | null {
    const via = this.viaFor(dest, conn);
    if (via === 'direct') return null;
    let auth: string | null = null;
    let absoluteForm = false;
    const tunnel = this.throughParents(via, dest, conn, async (p, s, left) => {
      // An HTTP parent takes the request itself; through a SOCKS parent the origin does.
      absoluteForm = p.protocol === 'http';
      auth = absoluteForm ? proxyAuthorization(p) : null;
      return absoluteForm ? s : socks5Connect(s, p, dest, left);
    });
    return tunnel.then((socket) => ({ socket, absoluteForm, proxyAuthorization: auth }));
  }

  close(): void {
    this.pool.close();
  }

  /** The policy on what the client asked for, then each healthy parent in turn until one carries. */
  private async throughParents(via: readonly string[], dest: Destination, conn: ClientConnection, handshake: (p: ParentConfig, s: net.Socket, leftMs: number) => Promise<net.Socket>): Promise<net.Socket> {
    conn.destination = dest;
    this.access.checkPort(dest.port);
    const literal = normalizeIpLiteral(dest.host);
    if (literal !== null && !this.access.destinationAllowed(literal)) throw new ProxyError(ErrorCode.DestDenied, dest.host);
    const deadline = Date.now() + this.upstream.connectTimeoutMs;
    const failures: string[] = [];
    for (const p of this.pool.order(via)) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const started = process.hrtime.bigint();
      let socket: net.Socket;
      try {
        // A parent that does not take the connection soon is down: the next one gets the rest of the time.
        socket = await dialParent(p, Math.min(left, this.upstream.probe.timeoutMs));
      } catch (e) {
        failures.push(this.parentFailed(p, e));
        continue;
      }
      const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
      try {
        const tunnel = await handshake(p, socket, Math.max(1, deadline - Date.now()));
        this.pool.connected(p.name, latencyMs);
        conn.parent = p.name;
        conn.upstreamConnectedAt = process.hrtime.bigint();
        this.events.emit('upstream-connected', conn);
        return tunnel;
      } catch (e) {
        socket.destroy();
        if (!(e instanceof ParentFailure)) {
          // The parent works; it is the destination it could not reach.
          this.pool.connected(p.name, latencyMs);
          conn.parent = p.name;
          throw toProxyError(e);
        }
        failures.push(this.parentFailed(p, e));
      }
    }
    throw new ProxyError(ErrorCode.ParentsDown, failures.length > 0 ? failures.join('; ') : `all down: ${via.join(', ')}`);
  }

  private parentFailed(p: ParentConfig, e: unknown): string {
    this.pool.connected(p.name, null);
    return `${p.name}: ${e instanceof ParentFailure ? e.error.message : toProxyError(e).message}`;
  }
}

/**
 * Connects to the destination a client asked for: resolves the name, drops every address the
 * access policy denies (the check is on the address actually connected to, so DNS cannot smuggle
 * a denied range in), then races the rest with happy eyeballs (RFC 8305) under one connect
 * timeout. Plain TCP by default (that is the conversion); MPTCP first when configured.
 */
import dns from 'node:dns';
import net from 'node:net';
import type { AccessControl } from '../access/access';
import type { Config } from '../config/schema';
import { normalizeIpLiteral } from '../core/address';
import type { ClientConnection, Destination } from '../core/connection';
import { ErrorCode, ProxyError, toProxyError } from '../core/errors';
import type { ProxyEvents } from '../core/events';
import { connectSocket, closeFd } from '../sys/socket';

export interface UpstreamConnector {
  /**
   * Resolve, check and connect. Resolves with a connected socket (allowHalfOpen, paused) and
   * records the address and time on `conn`; rejects with a ProxyError. `synData`: bytes for the
   * destination already in hand (RFC 8803: the client's data behind its Connect). They ride in
   * the upstream SYN where the kernel allows (TCP Fast Open, see connectSocket), the rest right
   * after connect; the socket resolves once all are handed to the kernel.
   */
  connect(dest: Destination, conn: ClientConnection, synData?: Buffer): Promise<net.Socket>;
}

export type Resolver = (host: string) => Promise<{ address: string; family: number }[]>;

const systemResolver: Resolver = (host) => dns.promises.lookup(host, { all: true, verbatim: true });

/** RFC 8305 §4: alternate families, starting with the first one the resolver preferred. */
export function interleaveFamilies<T extends { family: number }>(addrs: T[]): T[] {
  if (addrs.length === 0) return addrs;
  const first = addrs[0]!.family;
  const a = addrs.filter((x) => x.family === first);
  const b = addrs.filter((x) => x.family !== first);
  const out: T[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i]) out.push(a[i]!);
    if (b[i]) out.push(b[i]!);
  }
  return out;
}

export class DefaultUpstreamConnector implements UpstreamConnector {
  constructor(
    private readonly upstream: Config['upstream'],
    private readonly access: AccessControl,
    private readonly events: ProxyEvents,
    private readonly resolve: Resolver = systemResolver,
  ) {}

  async connect(dest: Destination, conn: ClientConnection, synData?: Buffer): Promise<net.Socket> {
    conn.destination = dest;
    this.access.checkPort(dest.port);
    const candidates = await this.allowedAddresses(dest.host);
    const deadline = Date.now() + this.upstream.connectTimeoutMs;
    const data = synData && synData.length > 0 ? synData : undefined;
    // Data in the SYN with one address only: every attempt of a race would deliver it.
    const inSyn = data && candidates.length === 1 ? data : undefined;
    const { socket, address } = await this.race(candidates, dest.port, deadline, inSyn);
    if (data && !inSyn) await writeAll(socket, data);
    // The IPv4 address the winning attempt dialled is already in canonical form: asking the
    // socket would cost a getpeername(). IPv6 spellings vary, so the socket's own is kept.
    conn.upstreamAddress = address.includes(':') ? (socket.remoteAddress ?? address) : address;
    conn.upstreamConnectedAt = process.hrtime.bigint();
    this.events.emit('upstream-connected', conn);
    return socket;
  }

  private async allowedAddresses(host: string): Promise<{ address: string; family: number }[]> {
    const literal = normalizeIpLiteral(host);
    let addrs: { address: string; family: number }[];
    // normalizeIpLiteral spells IPv4 without a colon and IPv6 always with one.
    if (literal) addrs = [{ address: literal, family: literal.includes(':') ? 6 : 4 }];
    else {
      try {
        addrs = await this.resolve(host);
      } catch (e) {
        throw new ProxyError(ErrorCode.DnsFailed, host, { cause: e });
      }
      addrs = addrs.map((a) => ({ address: normalizeIpLiteral(a.address) ?? a.address, family: a.family }));
      addrs = addrs.map((a) => ({ ...a, family: net.isIPv6(a.address) ? 6 : 4 }));
    }
    if (addrs.length === 0) throw new ProxyError(ErrorCode.DnsFailed, host);
    const allowed = addrs.filter((a) => this.access.destinationAllowed(a.address));
    if (allowed.length === 0) throw new ProxyError(ErrorCode.DestDenied, `${host} (${addrs.map((a) => a.address).join(', ')})`);
    return interleaveFamilies(allowed);
  }

  /** Start an attempt every happyEyeballsDelayMs (or as soon as one fails); first success wins. */
  private race(addrs: { address: string; family: number }[], port: number, deadline: number, synData?: Buffer): Promise<{ socket: net.Socket; address: string }> {
    return new Promise((resolve, reject) => {
      const pending = new Set<{ cancel(): void }>();
      let next = 0;
      let lastError: unknown = null;
      let settled = false;
      let stagger: NodeJS.Timeout | undefined;
      const overall = setTimeout(() => finish(new ProxyError(ErrorCode.ConnectTimeout, `${addrs[0]!.address}:${port}`)), Math.max(0, deadline - Date.now()));

      const finish = (err: unknown, socket?: net.Socket, address?: string): void => {
        if (settled) {
          socket?.destroy();
          return;
        }
        settled = true;
        clearTimeout(overall);
        clearTimeout(stagger);
        for (const p of pending) p.cancel();
        pending.clear();
        if (socket) resolve({ socket, address: address! });
        else reject(toProxyError(err));
      };

      const startNext = (): void => {
        clearTimeout(stagger);
        if (settled || next >= addrs.length) return;
        const addr = addrs[next++]!;
        const attempt = this.attempt(addr.address, port, deadline, synData);
        pending.add(attempt);
        attempt.promise.then(
          (s) => {
            pending.delete(attempt);
            finish(null, s, addr.address);
          },
          (e) => {
            pending.delete(attempt);
            lastError = e;
            if (next < addrs.length) startNext();
            else if (pending.size === 0) finish(lastError);
          },
        );
        if (next < addrs.length) stagger = setTimeout(startNext, this.upstream.happyEyeballsDelayMs);
      };
      startNext();
    });
  }

  private attempt(address: string, port: number, deadline: number, synData?: Buffer): { promise: Promise<net.Socket>; cancel(): void } {
    // Node's net.connect cannot put data in a SYN: those sockets come from src/sys.
    if (this.upstream.mptcp || synData) return this.attemptRaw(address, port, deadline, synData);
    const socket = net.connect({ host: address, port, allowHalfOpen: true, noDelay: true });
    const promise = new Promise<net.Socket>((resolve, reject) => {
      socket.once('connect', () => {
        socket.removeListener('error', reject);
        socket.pause();
        resolve(socket);
      });
      socket.once('error', reject);
    });
    return { promise, cancel: () => socket.destroy() };
  }

  private attemptRaw(address: string, port: number, deadline: number, synData?: Buffer): { promise: Promise<net.Socket>; cancel(): void } {
    let cancelled = false;
    const timeoutMs = Math.max(1, deadline - Date.now());
    const promise = connectSocket(address, port, timeoutMs, { mptcp: this.upstream.mptcp, options: { noDelay: true }, ...(synData ? { synData } : {}) }).then(async ({ fd, sentInSyn }) => {
      if (cancelled) {
        closeFd(fd);
        throw new ProxyError(ErrorCode.ConnectTimeout, 'cancelled');
      }
      const socket = new net.Socket({ fd, allowHalfOpen: true, readable: true, writable: true });
      socket.pause();
      if (synData && sentInSyn < synData.length) await writeAll(socket, synData.subarray(sentInSyn));
      return socket;
    });
    return { promise, cancel: () => (cancelled = true) };
  }
}

/**
 * Write and wait until the bytes are in the kernel, so a relay taking the fd next keeps their
 * order; a failed write destroys the socket and rejects with a ProxyError.
 */
export function writeAll(socket: net.Socket, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (e: Error): void => {
      socket.destroy();
      reject(toProxyError(e));
    };
    socket.once('error', fail);
    socket.write(data, (e) => {
      socket.off('error', fail);
      if (e) fail(e);
      else resolve();
    });
  });
}

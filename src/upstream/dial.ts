/**
 * One TCP (or MPTCP) connection to a parent proxy: its name resolved, one address dialled under a
 * timeout. The probes and every tunnel through a parent use it, so a probe tests the path the
 * tunnels take. Parents are the operator's own choice: no destination policy applies to them.
 */
import dns from 'node:dns';
import net from 'node:net';
import type { ParentConfig } from '../config/upstream';
import type { Destination } from '../core/connection';
import { ErrorCode, ProxyError, toProxyError } from '../core/errors';
import { closeFd, connectMptcp } from '../sys/socket';

/**
 * The parent itself failed (no connection, or a broken or refused handshake): the next parent
 * may do better. A refusal that is about the destination is a plain ProxyError instead.
 */
export class ParentFailure extends Error {
  constructor(readonly error: ProxyError) {
    super(error.message, { cause: error });
    this.name = 'ParentFailure';
  }
}

/** Turns a connected parent socket into a tunnel to `dest` (CONNECT, SOCKS5): paused, any early bytes kept. */
export type ParentHandshake = (socket: net.Socket, p: ParentConfig, dest: Destination, timeoutMs: number) => Promise<net.Socket>;

/** A connected, paused socket to the parent; rejects with a ParentFailure. */
export async function dialParent(p: ParentConfig, timeoutMs: number): Promise<net.Socket> {
  try {
    return await dial(p, timeoutMs);
  } catch (e) {
    throw new ParentFailure(toProxyError(e));
  }
}

async function dial(p: ParentConfig, timeoutMs: number): Promise<net.Socket> {
  const started = Date.now();
  let address = p.host;
  if (!net.isIP(address)) {
    try {
      address = (await dns.promises.lookup(address)).address;
    } catch (e) {
      throw new ProxyError(ErrorCode.DnsFailed, `parent ${p.name}: ${p.host}`, { cause: e });
    }
  }
  const left = Math.max(1, timeoutMs - (Date.now() - started));
  return p.mptcp ? dialMptcp(p, address, left) : dialTcp(p, address, left);
}

function dialTcp(p: ParentConfig, address: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address, port: p.port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ProxyError(ErrorCode.ConnectTimeout, `parent ${p.name}`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.pause();
      resolve(socket);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(toProxyError(e));
    });
  });
}

async function dialMptcp(p: ParentConfig, address: string, timeoutMs: number): Promise<net.Socket> {
  // A timeout is ETIMEDOUT (ConnectTimeoutError), a refusal ECONNREFUSED: toProxyError maps both.
  const { fd } = await connectMptcp(address, p.port, timeoutMs, { noDelay: true }).catch((e: unknown) => {
    throw toProxyError(e);
  });
  try {
    const socket = new net.Socket({ fd, allowHalfOpen: true, readable: true, writable: true });
    socket.pause();
    return socket;
  } catch (e) {
    closeFd(fd);
    throw toProxyError(e);
  }
}

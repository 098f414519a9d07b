/**
 * Through a SOCKS5 parent, with the `socks` client on the socket we dialled (TCP or MPTCP):
 * RFC 1929 user/password when the parent has credentials; names go to the parent unresolved.
 */
import type net from 'node:net';
import { SocksClient, type SocksClientOptions } from 'socks';
import type { ParentConfig } from '../config/upstream';
import { ErrorCode, ProxyError } from '../core/errors';
import { ParentFailure, type ParentHandshake } from './dial';

/** The parent's SOCKS5 reply (as the socks client names it in its error) → what it means here. */
const REPLY_CODES: Readonly<Record<string, ErrorCode>> = {
  NotAllowed: ErrorCode.DestDenied,
  NetworkUnreachable: ErrorCode.NetUnreachable,
  HostUnreachable: ErrorCode.HostUnreachable,
  ConnectionRefused: ErrorCode.ConnectRefused,
  TTLExpired: ErrorCode.ConnectTimeout,
};

function meaning(p: ParentConfig, message: string): ProxyError | ParentFailure {
  const detail = `parent ${p.name}: ${message}`;
  const reply = /rejected connection - (\w+)/.exec(message)?.[1];
  if (reply !== undefined) return new ProxyError(REPLY_CODES[reply] ?? ErrorCode.ParentRefused, detail);
  if (/timed out/i.test(message)) return new ProxyError(ErrorCode.ConnectTimeout, detail);
  // Authentication refused, a broken or closed handshake: this parent cannot serve anyone.
  return new ParentFailure(new ProxyError(ErrorCode.ParentRefused, detail));
}

export const socks5Connect: ParentHandshake = (socket, p, dest, timeoutMs) => {
  const options: SocksClientOptions = {
    proxy: { host: p.host, port: p.port, type: 5, ...(p.user !== undefined ? { userId: p.user, password: p.password ?? '' } : {}) },
    destination: { host: dest.host, port: dest.port },
    command: 'connect',
    timeout: timeoutMs,
  };
  return new Promise<net.Socket>((resolve, reject) => {
    const client = new SocksClient(options);
    // The client waits for 'close', which a half-open capable socket does not emit on the
    // parent's FIN alone: end it here, so the client fails now instead of at its timeout.
    const ended = (): void => void socket.destroy();
    socket.once('end', ended);
    client.once('error', (e: Error) => {
      socket.removeListener('end', ended);
      socket.destroy();
      reject(meaning(p, e.message));
    });
    client.once('established', () => {
      socket.removeListener('end', ended);
      // The client hands over any bytes that came behind its reply as a 'data' event, then resumes
      // the socket, both in one setImmediate queued before this listener ran: keep those bytes and
      // pause again before the relay takes the socket.
      const early: Buffer[] = [];
      const keep = (b: Buffer): number => early.push(b);
      socket.on('data', keep);
      setImmediate(() => {
        socket.removeListener('data', keep);
        socket.pause();
        if (early.length > 0) socket.unshift(Buffer.concat(early));
        resolve(socket);
      });
    });
    client.connect(socket);
    // Dialled sockets come paused; the client reads its replies from 'data' events.
    socket.resume();
  });
};

/**
 * Mixed port: one listener serving SOCKS and HTTP, told apart by the first byte (SOCKS versions
 * 4 and 5 are never the first byte of an HTTP method). One handshake deadline from accept covers
 * the wait for that byte and the protocol's own negotiation (both front ends count from accept).
 */
import type { ClientConnection } from '../core/connection';
import { ErrorCode, ProxyError } from '../core/errors';
import { handshakeTimeLeft, type FrontEnd, type ProxyContext } from './context';
import { refuse } from './refusal';
import { isSocksFirstByte } from './socks/server';

export function createMixedFrontEnd(http: FrontEnd, socks: FrontEnd): FrontEnd {
  return (conn: ClientConnection, ctx: ProxyContext) => {
    const socket = conn.socket;
    const timer = setTimeout(() => {
      // Counted and logged like any other handshake timeout (src/log/limit-log.ts).
      refuse(ctx, conn, new ProxyError(ErrorCode.HandshakeTimeout, 'no first byte on the mixed port'), () => socket.destroy());
    }, handshakeTimeLeft(conn, ctx));
    socket.once('close', () => clearTimeout(timer));
    socket.once('readable', () => {
      clearTimeout(timer);
      const chunk = socket.read() as Buffer | null;
      if (!chunk) return void socket.destroy();
      socket.pause();
      socket.unshift(chunk);
      (isSocksFirstByte(chunk[0]!) ? socks : http)(conn, ctx);
    });
  };
}

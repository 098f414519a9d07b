/**
 * Through an HTTP parent: CONNECT for tunnels (RFC 9110 §9.3.6), Basic Proxy-Authorization when
 * the parent has credentials. Absolute-form requests need no handshake: the forwarder sends them
 * to the parent as they are, with proxyAuthorization() added (src/proxy/http/forward.ts).
 */
import type net from 'node:net';
import type { ParentConfig } from '../config/upstream';
import { formatHostPort } from '../core/address';
import { ErrorCode, ProxyError } from '../core/errors';
import { ParentFailure, type ParentHandshake } from './dial';

/** A CONNECT answer's head longer than this is not a proxy's answer. */
const MAX_HEAD_BYTES = 16 * 1024;

/** The Proxy-Authorization value for this parent, or null without credentials. */
export function proxyAuthorization(p: ParentConfig): string | null {
  return p.user === undefined ? null : `Basic ${Buffer.from(`${p.user}:${p.password ?? ''}`).toString('base64')}`;
}

/** The parent's status, as what it means for this connection. */
function refusal(p: ParentConfig, status: number): ProxyError | ParentFailure {
  const detail = `parent ${p.name} answered ${status}`;
  // Our credentials for the parent are wrong: that parent is unusable, another may not be.
  if (status === 407) return new ParentFailure(new ProxyError(ErrorCode.ParentRefused, `${detail} (check its user and password)`));
  if (status === 403) return new ProxyError(ErrorCode.DestDenied, detail);
  if (status === 504) return new ProxyError(ErrorCode.ConnectTimeout, detail);
  return new ProxyError(ErrorCode.ParentRefused, detail);
}

export const httpConnect: ParentHandshake = (socket, p, dest, timeoutMs) => {
  const authority = formatHostPort(dest);
  const auth = proxyAuthorization(p);
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}\r\n`);
  return new Promise<net.Socket>((resolve, reject) => {
    let head = Buffer.alloc(0);
    const done = (err: ProxyError | ParentFailure | null, rest?: Buffer): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onClose);
      socket.removeListener('close', onClose);
      socket.removeListener('error', onClose);
      socket.pause();
      if (err) {
        socket.destroy();
        return reject(err);
      }
      // Bytes the destination sent right behind the answer belong to the tunnel.
      if (rest && rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_HEAD_BYTES) done(new ParentFailure(new ProxyError(ErrorCode.ParentRefused, `parent ${p.name}: answer head over ${MAX_HEAD_BYTES} bytes`)));
        return;
      }
      const m = /^HTTP\/1\.[01] (\d{3})[ \r]/.exec(head.subarray(0, end + 2).toString('latin1'));
      if (!m) return done(new ParentFailure(new ProxyError(ErrorCode.ParentRefused, `parent ${p.name}: not an HTTP answer`)));
      const status = Number(m[1]);
      if (status >= 200 && status < 300) done(null, head.subarray(end + 4));
      else done(refusal(p, status));
    };
    const onClose = (): void => done(new ParentFailure(new ProxyError(ErrorCode.UpstreamReset, `parent ${p.name} closed before answering CONNECT`)));
    // The parent took the connection; a slow answer is the destination being slow, not the parent failing.
    const timer = setTimeout(() => done(new ProxyError(ErrorCode.ConnectTimeout, `parent ${p.name}: no answer to CONNECT in ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    // Dialled sockets are half-open capable: a parent's FIN alone is an 'end', no 'close'.
    socket.once('end', onClose);
    socket.once('close', onClose);
    socket.once('error', onClose);
    socket.resume();
  });
};

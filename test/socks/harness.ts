/**
 * Loopback harness for the SOCKS front end: a ProxyContext built from real parts (AccessControl,
 * UpstreamRouter, StreamRelay, validateConfig), a net.Server on 127.0.0.1:0 handing
 * each socket to handleSocks (or the HTTP front end), echo servers (TCP and UDP) as destinations, and a raw client.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { SocksClient } from 'socks';
import type { SocksClientEstablishedEvent } from 'socks/typings/common/constants';
import { AccessControl } from '../../src/access/access';
import { validateConfig } from '../../src/config/schema';
import { ClientConnection } from '../../src/core/connection';
import type { ProxyError } from '../../src/core/errors';
import { ProxyEvents } from '../../src/core/events';
import { silentLogger } from '../../src/log/logger';
import type { FrontEnd, ProxyContext } from '../../src/proxy/context';
import { createHttpFrontEnd } from '../../src/proxy/http/server';
import { createMixedFrontEnd } from '../../src/proxy/mixed';
import { handleSocks } from '../../src/proxy/socks/server';
import type { RelayResult } from '../../src/core/relay';
import { StreamRelay } from '../../src/relay/stream-relay';
import type { Resolver } from '../../src/upstream/connector';
import { UpstreamRouter } from '../../src/upstream/router';

export interface SocksProxy {
  ctx: ProxyContext;
  server: net.Server;
  port: number;
  /** Every connection handed to the front end, in accept order. */
  conns: ClientConnection[];
  errors: { err: ProxyError; conn: ClientConnection | null }[];
  relayed: { conn: ClientConnection; result: RelayResult }[];
  /** Resolves when the server holds no connection any more (or rejects after `ms`). */
  drained(ms?: number): Promise<void>;
  close(): Promise<void>;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

/** `mixed`: serve through the mixed-port dispatcher (HTTP front end on the other branch); `http`: the HTTP front end alone. */
/** `resolver` replaces DNS (tests must not send lookups off the machine for made-up names). */
export async function startSocksProxy(rawConfig: unknown, opts: { mixed?: boolean; http?: boolean; resolver?: Resolver } = {}): Promise<SocksProxy> {
  const config = validateConfig(rawConfig);
  const events = new ProxyEvents();
  const access = new AccessControl(config.access);
  const ctx: ProxyContext = {
    config,
    log: silentLogger(),
    events,
    access,
    upstream: new UpstreamRouter(config.upstream, access, events, silentLogger(), opts.resolver),
    relay: new StreamRelay(),
  };
  const frontEnd: FrontEnd = opts.http ? createHttpFrontEnd(ctx) : opts.mixed ? createMixedFrontEnd(createHttpFrontEnd(ctx), handleSocks) : handleSocks;
  const conns: ClientConnection[] = [];
  const errors: SocksProxy['errors'] = [];
  const relayed: SocksProxy['relayed'] = [];
  events.on('proxy-error', (err, conn) => errors.push({ err, conn }));
  events.on('relay-done', (conn, result) => relayed.push({ conn, result }));
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => {
    const conn = new ClientConnection(socket, 'socks-test', -1);
    conns.push(conn);
    frontEnd(conn, ctx);
  });
  const port = await listen(server);
  const connections = (): Promise<number> => new Promise((res, rej) => server.getConnections((e, n) => (e ? rej(e) : res(n))));
  return {
    ctx,
    server,
    port,
    conns,
    errors,
    relayed,
    async drained(ms = 3000) {
      const deadline = Date.now() + ms;
      while ((await connections()) > 0) {
        if (Date.now() > deadline) throw new Error(`${await connections()} connections still open after ${ms} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () => {
      ctx.upstream.close();
      return new Promise<void>((res) => server.close(() => res()));
    },
  };
}

export interface EchoServer {
  port: number;
  /** Remote ports of accepted connections: the proxy's bound ports, as seen from the destination. */
  peers: number[];
  close(): Promise<void>;
}

export async function startTcpEcho(): Promise<EchoServer> {
  const peers: number[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    peers.push(s.remotePort ?? 0);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  const port = await listen(server);
  return {
    port,
    peers,
    close: () =>
      new Promise<void>((res) => {
        for (const s of sockets) s.destroy();
        server.close(() => res());
      }),
  };
}

export async function startUdpEcho(): Promise<{ port: number; socket: dgram.Socket; close(): Promise<void> }> {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address));
  await new Promise<void>((res) => socket.bind(0, '127.0.0.1', () => res()));
  return { port: socket.address().port, socket, close: () => new Promise<void>((res) => socket.close(() => res())) };
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise<void>((res) => s.close(() => res()));
  return port;
}

/**
 * Connect, write `data` at once, collect everything until the proxy closes (or `ms` passes).
 * `closed` says whether the proxy closed within the time.
 */
export function rawExchange(port: number, data: Buffer, ms = 3000): Promise<{ received: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ received: Buffer.concat(chunks), closed: false });
    }, ms);
    socket.on('connect', () => socket.write(data));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => socket.end());
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks), closed: true });
    });
  });
}

/** Collect from a socket until at least n bytes arrived (rejects on close before that). */
export function readAtLeast(socket: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= n) {
        cleanup();
        resolve(buf);
      }
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error(`closed after ${buf.length} of ${n} bytes`));
    };
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
  });
}

/** UDP ASSOCIATE with the socks client (only its event API supports the command). */
export function socksAssociate(proxyPort: number, clientPort: number): Promise<SocksClientEstablishedEvent> {
  return new Promise((resolve, reject) => {
    const client = new SocksClient({ proxy: { host: '127.0.0.1', port: proxyPort, type: 5 }, command: 'associate', destination: { host: clientPort === 0 ? '0.0.0.0' : '127.0.0.1', port: clientPort } });
    client.once('established', resolve);
    client.once('error', reject);
    client.connect();
  });
}

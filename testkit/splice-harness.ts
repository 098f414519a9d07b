/**
 * Real-socket harness for relay engines on loopback: TCP or MPTCP listeners and clients, a tiny
 * proxy that hands each accepted client and its upstream to an engine, and byte helpers.
 * Shared by the splice tests and bench/splice-vs-pipe.ts.
 */
import crypto from 'node:crypto';
import net from 'node:net';
import { connectMptcp, createListenSocket, socketName } from '../src/sys/socket';
import assert from 'node:assert/strict';
import type { RelayOptions, RelayResult } from '../src/core/relay';
import { loadSpliceRelay, spliceUnavailableReason, type SpliceRelay } from '../src/relay/splice-relay';

export type Kind = 'tcp' | 'mptcp';
export const HOST = '127.0.0.1';

export interface Listener {
  server: net.Server;
  port: number;
  close(): Promise<void>;
}

/** A loopback server; MPTCP listeners come from createListenSocket and are adopted by Node. */
export async function listen(kind: Kind, onConnection: (s: net.Socket) => void): Promise<Listener> {
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, onConnection);
  server.on('error', () => {});
  let port: number;
  if (kind === 'mptcp') {
    const ls = createListenSocket(HOST, 0, { mptcp: true, backlog: 1024, options: {} });
    if (!ls.mptcp) throw new Error(`MPTCP listener refused: ${ls.fallbackReason}`);
    port = socketName(ls.fd).port;
    await new Promise<void>((resolve) => server.listen({ fd: ls.fd }, resolve));
  } else {
    await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
    port = (server.address() as net.AddressInfo).port;
  }
  return {
    server,
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A connected client socket (flowing, allowHalfOpen). */
export async function connect(kind: Kind, port: number): Promise<net.Socket> {
  if (kind === 'mptcp') {
    const { fd, mptcp } = await connectMptcp(HOST, port, 5000);
    if (!mptcp) throw new Error('kernel refused an MPTCP socket');
    return new net.Socket({ fd, allowHalfOpen: true, readable: true, writable: true });
  }
  const s = net.connect({ host: HOST, port, allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return s;
}

export interface RelayRun {
  result: RelayResult;
  /** The accepted client socket as the proxy saw it (destroyed by now). */
  proxyClientFd: number;
}

export interface Proxy {
  port: number;
  /** Resolves with the relay result of the n-th accepted connection, in accept order. */
  results: Promise<RelayRun>[];
  nextResult(): Promise<RelayRun>;
  close(): Promise<void>;
}

export interface ProxyOptions {
  clientKind: Kind;
  upstreamKind: Kind;
  upstreamPort: number;
  relay: (client: net.Socket, upstream: net.Socket, opts: RelayOptions) => Promise<RelayResult>;
  relayOptions?: RelayOptions;
  /** Runs on the accepted client before relaying (e.g. to read a handshake like a front end). */
  beforeRelay?: (client: net.Socket, upstream: net.Socket) => Promise<RelayOptions | void>;
  /** Called with each accepted client socket before anything else. */
  onAccept?: (client: net.Socket) => void;
}

/** A minimal proxy: accept, connect upstream (paused, like the connector), relay. */
export async function startProxy(o: ProxyOptions): Promise<Proxy> {
  const results: Promise<RelayRun>[] = [];
  const waiters: ((p: Promise<RelayRun>) => void)[] = [];
  let taken = 0;
  const listener = await listen(o.clientKind, (client) => {
    o.onAccept?.(client);
    const run = (async (): Promise<RelayRun> => {
      const proxyClientFd = (client as unknown as { _handle: { fd: number } })._handle.fd;
      const upstream = await connect(o.upstreamKind, o.upstreamPort);
      upstream.pause();
      const extra = (await o.beforeRelay?.(client, upstream)) ?? undefined;
      const result = await o.relay(client, upstream, { idleMs: 0, ...o.relayOptions, ...extra });
      return { result, proxyClientFd };
    })();
    results.push(run);
    const w = waiters.shift();
    if (w) w(run);
  });
  return {
    port: listener.port,
    results,
    nextResult(): Promise<RelayRun> {
      const i = taken++;
      if (i < results.length) return results[i]!;
      return new Promise<Promise<RelayRun>>((resolve) => waiters.push(resolve)).then((p) => p);
    },
    close: () => listener.close(),
  };
}

/** Write `data` (or `repeat` copies of it) honouring backpressure; end afterwards if asked. */
export async function sendAll(socket: net.Socket, data: Buffer, opts: { repeat?: number; end?: boolean; chunk?: number } = {}): Promise<void> {
  const chunk = opts.chunk ?? 256 * 1024;
  for (let r = 0; r < (opts.repeat ?? 1); r++) {
    for (let off = 0; off < data.length; off += chunk) {
      if (!socket.write(data.subarray(off, off + chunk))) {
        await new Promise<void>((resolve, reject) => {
          const onErr = (e: Error): void => reject(e);
          socket.once('error', onErr);
          socket.once('drain', () => {
            socket.off('error', onErr);
            resolve();
          });
        });
      }
    }
  }
  if (opts.end) await new Promise<void>((resolve) => socket.end(resolve));
}

export interface Received {
  bytes: number;
  sha256: string;
  /** First bytes, for order checks. */
  head: Buffer;
}

/** Read until EOF; hashes everything. Rejects on a socket error. */
export function receiveAll(socket: net.Socket, keepHead = 64): Promise<Received> {
  return new Promise((resolve, reject) => {
    const h = crypto.createHash('sha256');
    let bytes = 0;
    const heads: Buffer[] = [];
    let headLen = 0;
    socket.on('data', (c: Buffer) => {
      h.update(c);
      bytes += c.length;
      if (headLen < keepHead) {
        heads.push(c.subarray(0, keepHead - headLen));
        headLen += Math.min(c.length, keepHead - headLen);
      }
    });
    socket.once('end', () => resolve({ bytes, sha256: h.digest('hex'), head: Buffer.concat(heads) }));
    socket.once('error', reject);
    socket.resume();
  });
}

export function sha256(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

/**
 * Resolves with the error code a socket dies with, or 'closed' when the peer ends it cleanly
 * (answered with our own FIN, as allowHalfOpen sockets otherwise stay half open).
 */
export function closeOutcome(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let code: string | null = null;
    socket.once('error', (e: NodeJS.ErrnoException) => (code = e.code ?? 'error'));
    socket.once('end', () => socket.end());
    socket.once('close', () => resolve(code ?? 'closed'));
    socket.resume();
  });
}

/**
 * The built splice engine for a test file (its absence fails the file, not skips it), checked
 * after the file's tests to have handed every relay back from the native thread.
 */
export function useSpliceEngine(hooks: { before: (fn: () => void) => void; after: (fn: () => void) => void }): () => SpliceRelay {
  let engine: SpliceRelay | null = null;
  hooks.before(() => {
    engine = loadSpliceRelay();
    assert.ok(engine, `splice addon must be built for these tests: ${spliceUnavailableReason()}`);
  });
  hooks.after(() => {
    assert.equal(engine?.active(), 0, 'every relay handed back by the native thread');
  });
  return () => {
    if (!engine) throw new Error('splice engine not loaded (before hook failed?)');
    return engine;
  };
}

/**
 * The splice relay engine: the native addon moves bytes kernel to kernel (splice through pooled
 * pipes) on one shared epoll thread. This side hands the sockets over safely: libuv stops
 * reading, whatever Node already buffered or was told to write is flushed first (so byte order
 * holds), the fds stay open (a destroy() waits) until native reports, and afterwards the sockets
 * are destroyed here, which closes the fds.
 */
import type net from 'node:net';
import { socketFd } from '../sys/socket';
import { loadSpliceAddon, type SpliceAddon } from './native';
import type { RelayEnd, RelayEngine, RelayOptions, RelayResult } from '../core/relay';

/**
 * Bytes a direction's pipe may hold while it has data in flight; the kernel may grant less
 * (pipe-max-size). Measured on one 1 GiB download (2026-11-23, 2 cores, shared): 256 KiB and
 * 1 MiB were even on throughput within the machine's noise (256 KiB ahead in 3 of 5 rounds), 1 MiB
 * about 10 % cheaper in CPU; 256 KiB pins a quarter of the memory per busy direction.
 */
export const DEFAULT_PIPE_SIZE = 1 << 18;

export interface SpliceRelayOptions {
  pipeSize?: number;
  /** Addon file to load instead of the default (or $MPTCP_PROXY_SPLICE_ADDON). */
  addonPath?: string;
}

interface UvStreamHandle {
  reading?: boolean;
  readStop(): number;
}

const noop = (): void => {};

/**
 * Stop libuv reading the socket and return what Node had already read into its buffer.
 * Native carries half-close, so Node must not answer a buffered EOF with its own FIN.
 */
function takeOver(socket: net.Socket): Buffer[] {
  socket.setTimeout(0);
  socket.allowHalfOpen = true;
  socket.pause();
  const handle = (socket as unknown as { _handle?: UvStreamHandle | null })._handle;
  if (handle) {
    handle.reading = false;
    handle.readStop();
  }
  // Node's _read would call readStart again; from here on only native reads this fd.
  socket._read = noop;
  socket.on('error', noop);
  if (socket.readableLength === 0) return [];
  const chunk: unknown = socket.read();
  if (Buffer.isBuffer(chunk)) return [chunk];
  return typeof chunk === 'string' ? [Buffer.from(chunk, socket.readableEncoding ?? 'utf8')] : [];
}

/** Resolve once `data` and every earlier write reached the kernel; with the error if one failed. */
function flush(socket: net.Socket, data: Buffer): Promise<Error | null> {
  if (socket.destroyed) return Promise.resolve(socket.errored ?? Object.assign(new Error('socket destroyed'), { code: 'EPIPE' }));
  if (data.length === 0 && socket.writableLength === 0) return Promise.resolve(null);
  return new Promise((resolve) => socket.write(data, (err) => resolve(err ?? null)));
}

/**
 * While native writes to the fd, a stray JS write or end() would interleave with it; make them
 * fail (which destroys the socket and so ends the relay) instead of corrupting the stream.
 */
type WriteCb = (err?: Error | null) => void;
const owned = (cb: WriteCb): void => cb(Object.assign(new Error('socket is owned by the splice relay'), { code: 'ERR_SPLICE_OWNED' }));
// Shared, not per socket: thousands of idle relays each keep these.
const refusedWrite = (_chunk: unknown, _enc: BufferEncoding, cb: WriteCb): void => owned(cb);
const refusedWritev = (_chunks: unknown, cb: WriteCb): void => owned(cb);
function refuseWrites(socket: net.Socket): void {
  socket._write = refusedWrite;
  socket._writev = refusedWritev;
  socket._final = owned;
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'EIO';
}

/** A reset is passed on as a reset, so the other peer cannot take a cut stream for a whole one. */
function close(socket: net.Socket, reset: boolean): void {
  if (reset && !socket.destroyed) {
    try {
      socket.resetAndDestroy();
      return;
    } catch {
      // not a TCP handle: a plain close below
    }
  }
  socket.destroy();
}

type DestroyFn = (err: Error | null, cb: (err?: Error | null) => void) => void;
const kRun = Symbol('splice-run');
type Owned = net.Socket & { [kRun]?: NativeRun };

/**
 * Native works on the socket's own fd, so it must not be closed under it: a destroy() while
 * native owns the fd asks native to stop, and the handle closes once native has let go. Shared
 * by every owned socket (idle relays keep no closures of their own).
 */
function deferredDestroy(this: Owned, err: Error | null, cb: (err?: Error | null) => void): void {
  this[kRun]?.destroyedDuring(this, err, cb);
}

/** One relay while the native thread owns its two fds: one object, no per-relay closures. */
class NativeRun {
  id = 0;
  /** Who was destroyed first from outside, if anyone: that side is blamed for the cancel. */
  private destroyedFirst: RelayEnd | null = null;
  private readonly deferred: (() => void)[] = [];
  private readonly realDestroy: [DestroyFn, DestroyFn];

  constructor(
    private readonly addon: SpliceAddon,
    private readonly client: Owned,
    private readonly upstream: Owned,
    private readonly upBefore: number,
    private readonly downBefore: number,
    private readonly resolve: (r: RelayResult) => void,
  ) {
    this.realDestroy = [client._destroy as DestroyFn, upstream._destroy as DestroyFn];
    for (const s of [client, upstream]) {
      refuseWrites(s);
      s[kRun] = this;
      s._destroy = deferredDestroy;
    }
  }

  destroyedDuring(socket: Owned, err: Error | null, cb: (err?: Error | null) => void): void {
    const side = socket === this.client ? 0 : 1;
    this.destroyedFirst ??= side === 0 ? 'client-error' : 'upstream-error';
    this.deferred.push(() => this.realDestroy[side].call(socket, err, cb));
    this.addon.abort(this.id);
  }

  /** Native let go (or never took them): sockets back to JS, deferred closes run, result out. */
  finish(bytesUp: number, bytesDown: number, end: string, errorCode: string | undefined): void {
    this.client._destroy = this.realDestroy[0];
    this.upstream._destroy = this.realDestroy[1];
    delete this.client[kRun];
    delete this.upstream[kRun];
    for (const d of this.deferred.splice(0)) d();
    const e = errorCode === 'ECANCELED' && this.destroyedFirst ? this.destroyedFirst : (end as RelayEnd);
    this.resolve({ bytesUp: this.upBefore + bytesUp, bytesDown: this.downBefore + bytesDown, end: e, ...(errorCode ? { errorCode } : {}) });
  }
}

/** Routes the addon's single result callback to each relay; one per loaded addon. */
class Dispatcher {
  private readonly running = new Map<number, NativeRun>();
  constructor(readonly addon: SpliceAddon) {
    addon.init((id, up, down, end, code) => {
      const run = this.running.get(id);
      this.running.delete(id);
      run?.finish(up, down, end, code);
    });
  }
  /** Throws (errno `code`) when the relay cannot start. */
  start(run: NativeRun, clientFd: number, upstreamFd: number, idleMs: number, pipeSize: number): void {
    run.id = this.addon.start(clientFd, upstreamFd, idleMs, pipeSize);
    this.running.set(run.id, run);
  }
}

const dispatchers = new WeakMap<SpliceAddon, Dispatcher>();
function dispatcherFor(addon: SpliceAddon): Dispatcher {
  let d = dispatchers.get(addon);
  if (!d) {
    d = new Dispatcher(addon);
    dispatchers.set(addon, d);
  }
  return d;
}

export class SpliceRelay implements RelayEngine {
  readonly name = 'splice' as const;
  private readonly native: Dispatcher;

  constructor(
    private readonly addon: SpliceAddon,
    readonly pipeSize: number = DEFAULT_PIPE_SIZE,
  ) {
    this.native = dispatcherFor(addon);
  }

  /** Relays currently owned by the native thread (all SpliceRelay instances share it). */
  active(): number {
    return this.addon.stats().active;
  }

  /** The native thread's counters: relays, and pipes open (pooled or in use) and in use. */
  stats(): { active: number; pipesOpen: number; pipesInUse: number } {
    return this.addon.stats();
  }

  async relay(client: net.Socket, upstream: net.Socket, opts: RelayOptions): Promise<RelayResult> {
    const head = Buffer.concat([...(opts.clientHead ? [opts.clientHead] : []), ...takeOver(client)]);
    const early = Buffer.concat(takeOver(upstream));
    // Nothing to flush (the usual case): no promise round, straight to native.
    const [upErr, downErr] = head.length === 0 && early.length === 0 && client.writableLength === 0 && upstream.writableLength === 0 ? [null, null] : await Promise.all([flush(upstream, head), flush(client, early)]);
    let result: RelayResult;
    if (upErr) result = { bytesUp: 0, bytesDown: downErr ? 0 : early.length, end: 'upstream-error', errorCode: codeOf(upErr) };
    else if (downErr) result = { bytesUp: head.length, bytesDown: 0, end: 'client-error', errorCode: codeOf(downErr) };
    else result = await this.runNative(client, upstream, opts.idleMs, head.length, early.length);
    try {
      opts.beforeClose?.();
    } catch {
      // the caller's sampling hook must not turn a finished relay into a rejection
    }
    const cancelled = result.errorCode === 'ECANCELED';
    close(client, result.end === 'upstream-error' && !cancelled);
    close(upstream, result.end === 'client-error' && !cancelled);
    return result;
  }

  private runNative(client: net.Socket, upstream: net.Socket, idleMs: number, upBefore: number, downBefore: number): Promise<RelayResult> {
    return new Promise((resolve) => {
      const clientFd = socketFd(client);
      const upstreamFd = socketFd(upstream);
      if (clientFd < 0 || upstreamFd < 0 || client.destroyed || upstream.destroyed) {
        resolve({ bytesUp: upBefore, bytesDown: downBefore, end: clientFd < 0 || client.destroyed ? 'client-error' : 'upstream-error', errorCode: 'EBADF' });
        return;
      }
      const run = new NativeRun(this.addon, client, upstream, upBefore, downBefore, resolve);
      try {
        this.native.start(run, clientFd, upstreamFd, idleMs, this.pipeSize);
      } catch (err) {
        // Out of memory or not initialised: a local failure, reported on the client side.
        run.finish(0, 0, 'client-error', codeOf(err));
      }
    });
  }
}

let unavailableReason: string | null = null;

/**
 * The splice engine, or null when the addon is not built or does not load: the caller then uses
 * the stream engine and can log spliceUnavailableReason().
 */
export function loadSpliceRelay(opts: SpliceRelayOptions = {}): SpliceRelay | null {
  const loaded = loadSpliceAddon(opts.addonPath);
  if (!loaded.ok) {
    unavailableReason = loaded.reason;
    return null;
  }
  unavailableReason = null;
  return new SpliceRelay(loaded.addon, opts.pipeSize ?? DEFAULT_PIPE_SIZE);
}

/** Why the last loadSpliceRelay() returned null; null after a successful load. */
export function spliceUnavailableReason(): string | null {
  return unavailableReason;
}

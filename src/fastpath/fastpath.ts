/**
 * The control plane of the native fast path (native/src/fastpath.cc): starts its epoll threads,
 * compiles and swaps the policy tables, attaches listening sockets, and turns the batches native
 * delivers into what the rest of the proxy already consumes: ClientConnection events (logs,
 * metrics, registry, /connections) and, for connections native hands off, sockets for the TS
 * front ends. JavaScript runs once per batch, not once per connection.
 */
import os from 'node:os';
import type { Config } from '../config/schema';
import { ErrorCode, ProxyError } from '../core/errors';
import type { ProxyEvents } from '../core/events';
import { formatHostPort } from '../core/address';
import { refuse } from '../proxy/refusal';
import type { Logger } from '../log/logger';
import { ConfigError } from '../config/config-error';
import { closeFd } from '../sys/socket';
import { setTimeout as sleep } from 'node:timers/promises';
import { LISTENER_KIND, loadFastPathAddon, type FastPathAddon, type FastPathListenerKind, type NativeHandoff } from './addon';
import { compileTables } from './tables';
import { decodeRecords, NativeConnection, RecordKind, type NativeRecord } from './records';

/** A listener whose socket the fast path accepts on. */
export interface FastPathTarget {
  readonly name: string;
  /** Serve a connection native handed off, on the TS front end, with the bytes native read. */
  adoptHandoff(h: NativeHandoff, release: () => void): void;
}

/** A counter by the path that served a connection (ProxyMetrics.fastPathServed). */
interface Counted {
  add(n: number): void;
}
export type ServedCounter = (path: 'native' | 'handoff') => Counted;

/** Native threads and its delivery callback are process-wide: batches go to the listener's owner. */
let nativeReady = false;
const owners = new Map<number, FastPath>();
let nextListener = 1;

function deliver(records: Buffer, handoffs: NativeHandoff[]): void {
  for (const h of handoffs) {
    const owner = owners.get(h.listener);
    if (owner) owner.handoff(h);
    else {
      // Targets are never forgotten, so this is a bug: the client is closed, not leaked.
      closeFd(h.fd);
      process.emitWarning(`fast path handed off a connection of unknown listener ${h.listener}`);
    }
  }
  for (const r of decodeRecords(records)) owners.get(r.listener)?.record(r);
}

export class FastPath {
  private readonly targets = new Map<number, FastPathTarget>();
  /** Connections native relays now (open record seen, close not yet), by native id. */
  readonly open = new Map<number, NativeConnection>();
  /** Connections by the path that served them: native, or handed off to the TS front ends. */
  private readonly served: { native: Counted; handoff: Counted };

  private constructor(
    private readonly addon: FastPathAddon,
    private readonly events: ProxyEvents,
    private readonly log: Logger,
    served: ServedCounter,
  ) {
    this.served = { native: served('native'), handoff: served('handoff') };
  }

  /** The fast path the config asks for, or null (off, addon missing with `auto`, stream engine). */
  /** `served` counts into mptcp_proxy_fast_path_total (src/metrics). */
  static create(config: Config, events: ProxyEvents, log: Logger, served: ServedCounter): FastPath | null {
    const wanted = config.relay.fastPath;
    if (wanted === 'off') return null;
    // Native connects direct only; parents need the TS connector.
    const why = config.relay.engine === 'stream' ? 'relay.engine is stream' : config.upstream.parents.length > 0 ? 'upstream.parents are set' : null;
    const load = why ? ({ ok: false, reason: why } as const) : loadFastPathAddon();
    if (!load.ok) {
      if (wanted === 'on') throw new ConfigError(`relay.fastPath is on, but the fast path is not available: ${load.reason}`);
      log.info('native fast path not available, every connection takes the TS path', { reason: load.reason });
      return null;
    }
    const threads = config.relay.fastPathThreads || Math.max(1, Math.floor(os.availableParallelism() / config.workers));
    if (!nativeReady) load.addon.fastPathInit(deliver, threads);
    nativeReady = true;
    const fp = new FastPath(load.addon, events, log, served);
    fp.configure(config);
    log.info('native fast path on', { threads, addon: load.path });
    return fp;
  }

  /** New tables for new connections (start, SIGHUP); connections under way keep theirs. */
  configure(config: Config): void {
    this.addon.fastPathConfigure(compileTables(config));
  }

  /** Native accepts on `fd` from now on; returns the id to detach with. */
  attach(target: FastPathTarget, fd: number, kind: FastPathListenerKind): number {
    const id = nextListener++;
    this.targets.set(id, target);
    owners.set(id, this);
    this.addon.fastPathAttach(id, fd, LISTENER_KIND[kind]);
    return id;
  }

  /** Native stops accepting on the listener's fd (the caller closes it); its connections go on. */
  detach(id: number): void {
    this.addon.fastPathDetach(id);
    // Records of its connections still come; handoffs cannot any more.
  }

  /** Connections native holds: handshakes, connects, relays, refusals closing. */
  get active(): number {
    return this.addon.fastPathStats().active;
  }

  /**
   * Live byte counts of the tunnels native relays (one native call, not one per connection), for
   * status reads and scrapes: /connections and the relay byte metrics see them before they close.
   */
  refreshLive(): void {
    const b = this.addon.fastPathLive();
    for (let at = 0; at + 24 <= b.length; at += 24) {
      const conn = this.open.get(Number(b.readBigUInt64LE(at)));
      if (!conn) continue; // another listener owner's, or its open record is still on its way
      conn.bytesIn = b.readDoubleLE(at + 8);
      conn.bytesOut = b.readDoubleLE(at + 16);
      this.events.emit('relay-progress', conn, conn.bytesIn, conn.bytesOut);
    }
  }

  /**
   * End every connection native holds (after a drain), and wait (up to waitMs) until their
   * records are in: records otherwise wait for a batch the stopping process may never run.
   */
  async closeAll(waitMs = 1_000): Promise<void> {
    this.addon.fastPathCloseAll();
    const deadline = Date.now() + waitMs;
    while (this.active > 0 && Date.now() < deadline) await sleep(10);
    this.addon.fastPathFlush();
  }

  handoff(h: NativeHandoff): void {
    this.served.handoff.add(1);
    this.targets.get(h.listener)!.adoptHandoff(h, () => this.addon.fastPathRelease(h.listener, h.key));
  }

  record(r: NativeRecord): void {
    const listener = this.targets.get(r.listener)?.name ?? 'unknown';
    if (r.kind === RecordKind.Drop) {
      // As net.Server's 'drop': no connection, the limit log is told the peer.
      this.events.emit('proxy-error', new ProxyError(ErrorCode.LimitReached, `maxConnections, client ${r.client}`), null, r.client);
      return;
    }
    let conn = this.open.get(r.nid);
    if (!conn) {
      this.served.native.add(1);
      conn = new NativeConnection(listener, r);
      this.events.emit('connection-open', conn);
    } else conn.update(r);
    if (r.kind === RecordKind.Open) {
      this.open.set(r.nid, conn);
      this.events.emit('upstream-connected', conn);
      return;
    }
    this.open.delete(r.nid);
    if (r.relayEnd) this.relayDone(conn, r);
    else if (r.code) this.refused(conn, new ProxyError(r.code, this.detail(r)));
    conn.closed = true;
    this.events.emit('connection-close', conn);
  }

  private relayDone(conn: NativeConnection, r: NativeRecord): void {
    const errorCode = r.errno ? errnoName(r.errno) : undefined;
    if (r.relayEnd === 'idle') {
      const err = new ProxyError(ErrorCode.IdleTimeout, 'native relay');
      conn.fail(err);
      this.events.emit('proxy-error', err, conn);
    } else if (r.relayEnd === 'upstream-error' && errorCode && errorCode !== 'ECONNRESET') {
      conn.fail(new ProxyError(ErrorCode.UpstreamReset, errorCode));
    }
    this.events.emit('relay-done', conn, { bytesUp: r.bytesUp, bytesDown: r.bytesDown, end: r.relayEnd!, ...(errorCode ? { errorCode } : {}) });
  }

  /** The error event and log line every refusal gets (src/proxy/refusal.ts). */
  private refused(conn: NativeConnection, err: ProxyError): void {
    refuse({ events: this.events, log: this.log }, conn, err);
  }

  private detail(r: NativeRecord): string | undefined {
    if (r.errno) return errnoName(r.errno);
    return r.dest ? formatHostPort({ host: r.dest, port: r.destPort }) : undefined;
  }
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));
function errnoName(n: number): string {
  return ERRNO_NAMES.get(n) ?? `E${n}`;
}

/**
 * A generic netlink socket (AF_NETLINK / NETLINK_GENERIC) through koffi: request/reply for the
 * controller, multicast membership, and a reader that hands every datagram to the main thread.
 *
 * How reading meets the event loop: net.Socket refuses a netlink fd (uv_guess_handle says
 * UNKNOWN), and a koffi `.async` poll would hold one of libuv's four threadpool threads for the
 * whole run, starving dns.lookup and fs. With the native addon, a NetlinkWatcher (a uv_poll on
 * the main loop, drained in C) reads it on the main thread itself. Without it, a dedicated
 * worker_thread blocks in poll() on the socket plus an eventfd, drains it with non-blocking
 * recv(), stamps each datagram with process.hrtime (one monotonic clock for all threads) and
 * posts it; stop() writes the eventfd, which ends the worker at once. No timers, no polling.
 */
import fs from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { SOCK_CLOEXEC, SOCK_NONBLOCK, SOL_SOCKET, SO_ATTACH_FILTER, SO_RCVBUF, SO_RCVBUFFORCE, SysError, check, errno, libc } from './libc';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const NETLINK_GENERIC = 16;
const SOL_NETLINK = 270;
const NETLINK_ADD_MEMBERSHIP = 1;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const EFD_CLOEXEC = 0o2000000;
const POLLIN = 1;
const MSG_DONTWAIT = 0x40;
const EINTR = 4;
const EAGAIN = 11;
const ENOBUFS = 105;
const EPROTO = 71;
const IF_NAMESIZE = 16;
/** struct sock_fprog: u16 len, padding, pointer. */
const SOCK_FPROG_SIZE = 16;
/** Netlink datagrams from the kernel fit in a page; mptcp_pm events are under 200 bytes. */
const RECV_SIZE = 32768;

/** struct pollfd[] for the given fds, all waiting for POLLIN. */
function pollIn(fds: readonly number[]): Buffer {
  const b = Buffer.alloc(8 * fds.length);
  fds.forEach((fd, i) => {
    b.writeInt32LE(fd, 8 * i);
    b.writeInt16LE(POLLIN, 8 * i + 4);
  });
  return b;
}

function setIntOpt(fd: number, level: number, name: number, value: number): boolean {
  const b = Buffer.alloc(4);
  b.writeInt32LE(value);
  return libc.setsockopt(fd, level, name, b, 4) === 0;
}

/** One datagram off the socket, and when the reader took it (process.hrtime.bigint()). */
export interface NetlinkDatagram {
  data: Buffer;
  receivedAt: bigint;
}

export interface NetlinkReadHandlers {
  datagram(d: NetlinkDatagram): void;
  /** The socket buffer overflowed (ENOBUFS): the kernel dropped multicasts. */
  lost(at: bigint): void;
  /** The reader stopped on an unexpected errno; no more datagrams will come. */
  failed(err: Error): void;
}

/**
 * Reads a netlink fd on the main thread's event loop (the native addon's uv_poll): every
 * datagram of one drain in one call, encoded as decodeWatchBatch reads it. It must not keep the
 * loop alive; after netlinkUnwatch no call comes and the fd may be closed.
 */
export interface NetlinkWatcher {
  netlinkWatch(fd: number, onBatch: (batch: Buffer) => void): void;
  netlinkUnwatch(fd: number): void;
}

export type WatchEntry = { kind: 'data'; data: Buffer; at: bigint } | { kind: 'lost'; at: bigint } | { kind: 'error'; errno: number; at: bigint };

const WATCH_HEADER = 16;

/**
 * One NetlinkWatcher call's entries: a 16-byte header (u32 data length, i32 errno, u64
 * uv_hrtime at receipt) and the datagram. errno 0 is a datagram, ENOBUFS a loss, any other the
 * error that ended the watch. Data are views into `batch`. A truncated tail is an error entry
 * (EPROTO): the batch comes from the addon, so it means a mismatched build.
 */
export function decodeWatchBatch(batch: Buffer): WatchEntry[] {
  const out: WatchEntry[] = [];
  for (let off = 0; off < batch.length; ) {
    if (batch.length - off < WATCH_HEADER) return [...out, { kind: 'error', errno: EPROTO, at: 0n }];
    const len = batch.readUInt32LE(off);
    const err = batch.readInt32LE(off + 4);
    const at = batch.readBigUInt64LE(off + 8);
    const end = off + WATCH_HEADER + len;
    if (end > batch.length) return [...out, { kind: 'error', errno: EPROTO, at }];
    out.push(err === 0 ? { kind: 'data', data: batch.subarray(off + WATCH_HEADER, end), at } : err === ENOBUFS ? { kind: 'lost', at } : { kind: 'error', errno: err, at });
    off = end;
  }
  return out;
}

type ReaderMessage =
  | { kind: 'ready' }
  // Every datagram one drain of the socket found, in kernel order: one message per wake-up, not
  // per datagram (posting is the main thread's cost at thousands of connections a second).
  | { kind: 'data'; datagrams: { data: ArrayBuffer; at: bigint }[] }
  | { kind: 'lost'; at: bigint }
  | { kind: 'error'; call: string; errno: number };

const READER_MARK = 'mptcp-proxy:netlink-reader';
const MAX_BATCH = 64;
interface ReaderData {
  mark: typeof READER_MARK;
  fd: number;
  wakeFd: number;
}

export class GenlSocket {
  private worker: Worker | null = null;
  private watcher: NetlinkWatcher | null = null;
  private workerExited: Promise<void> | null = null;
  private wakeFd = -1;
  private closed: Promise<void> | null = null;
  private seq = Math.floor(Math.random() * 0x7fffffff);

  private constructor(readonly fd: number) {}

  /** Opens and binds a NETLINK_GENERIC socket in the caller's network namespace. */
  static open(rcvBufBytes = 1 << 20): GenlSocket {
    const fd = check('socket(AF_NETLINK)', libc.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_GENERIC));
    try {
      // Event bursts (many connections closing at once) must not overflow the default ~200 KiB.
      if (!setIntOpt(fd, SOL_SOCKET, SO_RCVBUFFORCE, rcvBufBytes)) setIntOpt(fd, SOL_SOCKET, SO_RCVBUF, rcvBufBytes);
      const sa = Buffer.alloc(12); // sockaddr_nl: family, pad, pid 0 (kernel picks), groups 0
      sa.writeUInt16LE(AF_NETLINK, 0);
      check('bind(AF_NETLINK)', libc.bind(fd, sa, sa.length));
      return new GenlSocket(fd);
    } catch (e) {
      libc.close(fd);
      throw e;
    }
  }

  nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    return this.seq;
  }

  /**
   * Send one request and return the next datagram. Generic netlink answers inside sendmsg(),
   * so the reply is normally queued already; the short poll only covers a slow kernel.
   * Call before join(), or multicasts may come first.
   */
  request(msg: Buffer, timeoutMs = 1000): Buffer {
    if (Number(libc.send(this.fd, msg, msg.length, 0)) < 0) throw new SysError('send(netlink)', errno());
    const buf = Buffer.alloc(RECV_SIZE);
    for (;;) {
      const n = Number(libc.recv(this.fd, buf, buf.length, MSG_DONTWAIT));
      if (n >= 0) return Buffer.from(buf.subarray(0, n));
      const e = errno();
      if (e === EINTR) continue;
      if (e !== EAGAIN) throw new SysError('recv(netlink)', e);
      if (check('poll(netlink)', libc.poll(pollIn([this.fd]), 1, timeoutMs)) === 0) throw new SysError('recv(netlink)', EAGAIN);
    }
  }

  /**
   * For a command socket: errors come with the kernel's text (extended ACK), and without a copy
   * of the request (capped ACK). Best effort: a kernel without either still answers with the errno.
   */
  extendedAcks(): void {
    setIntOpt(this.fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
    setIntOpt(this.fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
  }

  /**
   * Attach (or replace) a classic BPF filter: `program` is struct sock_filter[] (8 bytes each).
   * The kernel runs it on every datagram before queueing it; a 0 verdict drops the datagram.
   */
  attachFilter(program: Buffer): void {
    check('setsockopt(SO_ATTACH_FILTER)', libc.setsockoptFprog(this.fd, SOL_SOCKET, SO_ATTACH_FILTER, { len: program.length / 8, filter: program }, SOCK_FPROG_SIZE));
  }

  /** NETLINK_ADD_MEMBERSHIP for a multicast group id. */
  join(group: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(group);
    check('setsockopt(NETLINK_ADD_MEMBERSHIP)', libc.setsockopt(this.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, b, 4));
  }

  /**
   * Start the reader thread. Datagrams arrive on the main thread in kernel order; the promise
   * resolves once the reader is polling (receive times from then on are not inflated by the
   * thread's start-up, ~50 ms), and rejects if the thread dies before that.
   */
  startReading(h: NetlinkReadHandlers, watcher: NetlinkWatcher | null = null): Promise<void> {
    if (this.worker || this.watcher || this.closed) return Promise.reject(new Error('netlink reader already started or closed'));
    if (watcher) {
      watcher.netlinkWatch(this.fd, (batch) => {
        for (const e of decodeWatchBatch(batch)) {
          if (e.kind === 'data') h.datagram({ data: e.data, receivedAt: e.at });
          else if (e.kind === 'lost') h.lost(e.at);
          else h.failed(new SysError('recv(netlink)', e.errno));
        }
      });
      this.watcher = watcher;
      return Promise.resolve();
    }
    this.wakeFd = check('eventfd', libc.eventfd(0, EFD_CLOEXEC));
    const data: ReaderData = { mark: READER_MARK, fd: this.fd, wakeFd: this.wakeFd };
    const w = new Worker(__filename, { workerData: data });
    this.worker = w;
    this.workerExited = new Promise((resolve) => w.once('exit', () => resolve()));
    const started = new Promise<void>((resolve, reject) => {
      let ready = false;
      w.on('message', (m: ReaderMessage) => {
        if (m.kind === 'data') for (const d of m.datagrams) h.datagram({ data: Buffer.from(d.data), receivedAt: d.at });
        else if (m.kind === 'lost') h.lost(m.at);
        else if (m.kind === 'ready') {
          ready = true;
          // Referenced until here, so that awaiting the start keeps the process alive.
          w.unref();
          resolve();
        } else h.failed(new SysError(m.call, m.errno));
      });
      w.on('error', (e) => (ready ? h.failed(e) : reject(e)));
      w.once('exit', (code) => ready || reject(new Error(`netlink reader exited (${code}) before it started`)));
    });
    // Once started, an event source must not keep the process alive on its own (see 'ready').
    // But at exit Node joins its workers and cannot interrupt one blocked in poll(): wake it
    // from the 'exit' event.
    process.once('exit', this.wake);
    return started;
  }

  /** Stop the reader (if any) and close the socket. Idempotent. */
  close(): Promise<void> {
    if (this.closed) return this.closed;
    const finish = (): void => {
      libc.close(this.fd);
      if (this.wakeFd >= 0) libc.close(this.wakeFd);
    };
    // The watcher calls nothing after unwatch: the fd can go at once.
    this.watcher?.netlinkUnwatch(this.fd);
    const w = this.worker;
    if (!w || !this.workerExited) {
      finish();
      this.closed = Promise.resolve();
      return this.closed;
    }
    // The fds stay open until the reader has left poll(); it may have exited already (failed).
    this.closed = this.workerExited.then(finish);
    // Keep the process alive until the reader is gone and the fds are closed.
    w.ref();
    process.off('exit', this.wake);
    this.wake();
    return this.closed;
  }

  /** Makes the reader's poll() return and the reader end. */
  private readonly wake = (): void => {
    const one = Buffer.alloc(8);
    one.writeBigUInt64LE(1n);
    libc.write(this.wakeFd, one, 8);
  };
}

/** if_indextoname(3): asks the kernel of the caller's network namespace (sysfs may be another's). */
export function interfaceName(index: number): string | null {
  if (!Number.isInteger(index) || index <= 0 || index > 0xffffffff) return null;
  const b = Buffer.alloc(IF_NAMESIZE);
  if (libc.ifIndexToName(index, b) === null) return null;
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('latin1');
}

/**
 * Under a stream of events (thousands of new connections a second, a few events each) every
 * post wakes the main thread once, and those wake-ups were most of the kernel view's cost. So a
 * batch is posted at once when the last post is older than this, and otherwise held until this
 * long after it: at most one post per millisecond, and no delay at all for sparse events.
 */
const COALESCE_NS = 1_000_000n;

const THREAD_COMM = '/proc/thread-self/comm';

/** The reader thread's loop: block in poll(), drain with non-blocking recv(), post. */
function runReader(d: ReaderData): void {
  const port = parentPort!;
  // Named like the addon's threads, so /proc/PID/task and top -H tell its CPU apart from Node's.
  if (fs.existsSync(THREAD_COMM)) fs.writeFileSync(THREAD_COMM, 'mpx-netlink');
  const pfds = pollIn([d.fd, d.wakeFd]);
  const wakeOnly = pollIn([d.wakeFd]);
  const buf = Buffer.alloc(RECV_SIZE);
  port.postMessage({ kind: 'ready' } satisfies ReaderMessage);
  let batch: { data: ArrayBuffer; at: bigint }[] = [];
  let lastPost = 0n;
  const flush = (): void => {
    if (batch.length === 0) return;
    port.postMessage({ kind: 'data', datagrams: batch } satisfies ReaderMessage, batch.map((x) => x.data));
    batch = [];
    lastPost = process.hrtime.bigint();
  };
  /** Every datagram queued now into the batch; false when the reader must end (error posted). */
  const drain = (): boolean => {
    for (;;) {
      const n = Number(libc.recv(d.fd, buf, buf.length, MSG_DONTWAIT));
      const at = process.hrtime.bigint();
      if (n >= 0) {
        const copy = new Uint8Array(n);
        copy.set(buf.subarray(0, n));
        batch.push({ data: copy.buffer, at });
        if (batch.length >= MAX_BATCH) flush(); // a storm still reaches the main thread steadily
        continue;
      }
      const e = errno();
      if (e === EAGAIN) return true;
      if (e === EINTR) continue;
      flush();
      if (e === ENOBUFS) {
        port.postMessage({ kind: 'lost', at } satisfies ReaderMessage);
        continue;
      }
      port.postMessage({ kind: 'error', call: 'recv(netlink)', errno: e } satisfies ReaderMessage);
      return false;
    }
  };
  for (;;) {
    pfds.writeInt16LE(0, 6);
    pfds.writeInt16LE(0, 14);
    if (libc.poll(pfds, 2, -1) < 0) {
      const e = errno();
      if (e === EINTR) continue;
      port.postMessage({ kind: 'error', call: 'poll(netlink)', errno: e } satisfies ReaderMessage);
      return;
    }
    if (pfds.readInt16LE(14) !== 0) return; // stop() wrote the eventfd
    if (!drain()) return;
    const wait = lastPost + COALESCE_NS - process.hrtime.bigint();
    if (batch.length > 0 && wait > 0n) {
      // Sleep out the rest of the millisecond (stop() still ends it at once), then take what came.
      wakeOnly.writeInt16LE(0, 6);
      if (libc.poll(wakeOnly, 1, Math.ceil(Number(wait) / 1e6)) > 0 && wakeOnly.readInt16LE(6) !== 0) return;
      if (!drain()) return;
    }
    flush();
  }
}

if (!isMainThread && (workerData as Partial<ReaderData> | null)?.mark === READER_MARK) runReader(workerData as ReaderData);

/**
 * scrypt at the lowest CPU priority, for clients whose recent checks failed: a password guesser's
 * hashes run on one worker thread at nice 19, so on a busy machine they take only the CPU that
 * serving everyone else leaves idle. Honest clients keep the normal-priority threadpool.
 * The thread starts on the first job, keeps the process alive only while it has jobs, and is
 * started again if it dies (its jobs in flight are rejected, so their checks refuse rather than hang).
 */
import crypto from 'node:crypto';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { setCurrentThreadNice } from '../sys/sched';
import type { ScryptFn } from './passwords';

const MARK = 'mptcp-proxy:idle-hasher';
const NICE = 19;

interface Job {
  id: number;
  password: string;
  salt: Uint8Array;
  keylen: number;
  options: crypto.ScryptOptions;
}
type Reply = { id: number; key: Uint8Array } | { id: number; error: string } | { tid: number };

interface Waiter {
  resolve: (key: Buffer) => void;
  reject: (e: Error) => void;
}

export class IdleHasher {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiter>();
  /** The worker thread's kernel id once it has lowered its priority (for status and tests). */
  threadId: number | null = null;

  readonly scrypt: ScryptFn = (password, salt, keylen, options) =>
    new Promise<Buffer>((resolve, reject) => {
      const id = this.nextId++;
      const w = this.thread();
      if (this.waiting.size === 0) w.ref();
      this.waiting.set(id, { resolve, reject });
      const job: Job = { id, password, salt, keylen, options };
      w.postMessage(job);
    });

  private thread(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(__filename, { workerData: { mark: MARK } });
    w.on('message', (m: Reply) => {
      if ('tid' in m) {
        this.threadId = m.tid;
        return;
      }
      const waiter = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (this.waiting.size === 0) w.unref();
      if ('key' in m) waiter?.resolve(Buffer.from(m.key));
      else waiter?.reject(new Error(`scrypt: ${m.error}`));
    });
    const lost = (why: string): void => {
      if (this.worker !== w) return;
      this.worker = null;
      this.threadId = null;
      for (const waiter of this.waiting.values()) waiter.reject(new Error(`idle hasher thread ${why}`));
      this.waiting.clear();
    };
    w.on('error', (e) => lost(`failed: ${e.message}`));
    w.on('exit', (code) => lost(`exited (${code})`));
    // After the listeners: adding a 'message' listener refs the worker's port again.
    w.unref();
    this.worker = w;
    return w;
  }
}

function runHasher(): void {
  const port = parentPort!;
  port.postMessage({ tid: setCurrentThreadNice(NICE) } satisfies Reply);
  port.on('message', (job: Job) => {
    let reply: Reply;
    try {
      reply = { id: job.id, key: crypto.scryptSync(job.password, job.salt, job.keylen, job.options) };
    } catch (e) {
      reply = { id: job.id, error: (e as Error).message };
    }
    port.postMessage(reply);
  });
}

if (!isMainThread && (workerData as { mark?: string } | null)?.mark === MARK) runHasher();

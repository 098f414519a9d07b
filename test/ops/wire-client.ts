/**
 * A raw client for hostile-input tests: writes exactly the given chunks (with delays between
 * them) to a stream socket (TCP or a unix bridge into a namespace) and records what comes back
 * and whether and when the other side closed.
 */
import net from 'node:net';
import { sleep } from '../../testkit/sleep';

export interface Exchange {
  /** Everything received. */
  data: Buffer;
  /** The peer closed (FIN or reset) before the wait ran out. */
  closed: boolean;
  /** ms from the last chunk written to the close (or to the timeout). */
  closeAfterMs: number;
  /** Connect or write errors (EPIPE after the proxy gave up is normal). */
  errors: string[];
}

export interface ExchangeOptions {
  /** Delay before each chunk after the first. */
  delayMs?: number;
  /** Half-close our side after the last chunk. */
  end?: boolean;
  /** Give up waiting for the peer's close after this long. */
  waitMs?: number;
  /** Stop waiting as soon as this many bytes arrived (for replies before a close). */
  minBytes?: number;
}

export type Target = { path: string } | { host: string; port: number };

export function exchange(target: Target, chunks: readonly Buffer[], opts: ExchangeOptions = {}): Promise<Exchange> {
  const waitMs = opts.waitMs ?? 5000;
  return new Promise((resolve) => {
    const sock = net.connect({ ...target, allowHalfOpen: true } as net.NetConnectOpts);
    const got: Buffer[] = [];
    let size = 0;
    const errors: string[] = [];
    let sentAt = Date.now();
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      sock.destroy();
      resolve({ data: Buffer.concat(got), closed, closeAfterMs: Date.now() - sentAt, errors });
    };
    sock.on('data', (d: Buffer) => {
      got.push(d);
      size += d.length;
      if (opts.minBytes !== undefined && size >= opts.minBytes && timer) finish(false);
    });
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', (e) => errors.push((e as NodeJS.ErrnoException).code ?? e.message));
    sock.once('connect', async () => {
      for (let i = 0; i < chunks.length && !sock.destroyed && !done; i++) {
        if (i > 0 && opts.delayMs) await sleep(opts.delayMs);
        if (sock.writable) sock.write(chunks[i]!);
      }
      if (opts.end && sock.writable) sock.end();
      sentAt = Date.now();
      if (opts.minBytes !== undefined && size >= opts.minBytes) return finish(false);
      timer = setTimeout(() => finish(false), waitMs);
    });
  });
}

/** Split buf at the given cut points (sorted, deduplicated, inside the buffer). */
export function splitAt(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.filter((c) => c > 0 && c < buf.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, buf.length]) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  return out.filter((c) => c.length > 0);
}

/** "HTTP/1.1 403 Forbidden" → 403; null when the bytes do not start with a status line. */
export function httpStatus(data: Buffer): number | null {
  const m = /^HTTP\/1\.[01] (\d{3}) /.exec(data.subarray(0, 64).toString('latin1'));
  return m ? Number(m[1]) : null;
}

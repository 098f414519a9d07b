/**
 * The JavaScript relay engine: Node streams with explicit backpressure (pause the reader while
 * the writer's buffer is full), half-close carried both ways, idle timeout. Always available;
 * used for plain HTTP forwarding and wherever the native splice engine is not.
 */
import type net from 'node:net';
import type { RelayEngine, RelayEnd, RelayOptions, RelayResult } from '../core/relay';

export class StreamRelay implements RelayEngine {
  readonly name = 'stream' as const;

  relay(client: net.Socket, upstream: net.Socket, opts: RelayOptions): Promise<RelayResult> {
    return new Promise((resolve) => {
      let bytesUp = 0;
      let bytesDown = 0;
      let finished = false;
      let endsSeen = 0;

      const done = (end: RelayEnd, errorCode?: string): void => {
        if (finished) return;
        finished = true;
        opts.beforeClose?.();
        client.setTimeout(0);
        upstream.setTimeout(0);
        client.destroy();
        upstream.destroy();
        resolve({ bytesUp, bytesDown, end, ...(errorCode ? { errorCode } : {}) });
      };

      const pipeOneWay = (from: net.Socket, to: net.Socket, count: (n: number) => void): void => {
        from.on('data', (chunk: Buffer) => {
          count(chunk.length);
          if (!to.write(chunk)) from.pause();
        });
        to.on('drain', () => from.resume());
        from.on('end', () => {
          // Half-close: the reader finished; finish writing on the other side but keep reading it.
          to.end();
          if (++endsSeen === 2) done('done');
        });
      };

      if (opts.clientHead && opts.clientHead.length > 0) {
        bytesUp += opts.clientHead.length;
        upstream.write(opts.clientHead);
      }
      pipeOneWay(client, upstream, (n) => (bytesUp += n));
      pipeOneWay(upstream, client, (n) => (bytesDown += n));

      client.on('error', (e: NodeJS.ErrnoException) => done('client-error', e.code));
      upstream.on('error', (e: NodeJS.ErrnoException) => done('upstream-error', e.code));
      // A socket that closes after both ends were seen is the normal path; before that, the peer is gone.
      client.on('close', () => done(endsSeen === 2 ? 'done' : 'client-error'));
      upstream.on('close', () => done(endsSeen === 2 ? 'done' : 'upstream-error'));

      if (opts.idleMs > 0) {
        // Bytes flowing either way touch both sockets (read on one, write on the other), so a
        // timeout on either one means the whole relay has been idle.
        client.setTimeout(opts.idleMs, () => done('idle'));
        upstream.setTimeout(opts.idleMs, () => done('idle'));
      }
      client.resume();
      upstream.resume();
    });
  }
}

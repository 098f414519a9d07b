/**
 * Workers' log output, forwarded by the supervisor in whole lines. Workers that shared the
 * supervisor's stderr could interleave mid-line: under backpressure a process's queued lines go
 * out in one large write that a pipe or socket takes in part, and another process's line lands in
 * the gap (seen in the hour soak: two JSON lines spliced into each other). Each worker writes to
 * its own pipe instead; this transform passes on only complete lines, so the one writer (the
 * supervisor's stderr) never starts another worker's bytes inside a line.
 */
import { Transform, type TransformCallback } from 'node:stream';

export function wholeLines(): Transform {
  let partial: Buffer | null = null;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      const data = partial ? Buffer.concat([partial, chunk]) : chunk;
      const end = data.lastIndexOf(0x0a) + 1;
      partial = end < data.length ? data.subarray(end) : null;
      cb(null, end > 0 ? data.subarray(0, end) : undefined);
    },
    // A worker that exits mid-line still has its last bytes shown, ended with a newline.
    flush(cb: TransformCallback) {
      cb(null, partial ? Buffer.concat([partial, Buffer.from('\n')]) : undefined);
    },
  });
}

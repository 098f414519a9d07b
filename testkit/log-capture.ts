/** A winston logger that writes its JSON lines into an array, for tests of what gets logged. */
import { Writable } from 'node:stream';
import winston from 'winston';

export function captureLog(): { log: winston.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  const log = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
  return { log, lines };
}

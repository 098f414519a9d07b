/**
 * Run inside a namespace: `node delay-line.js CONTROL_SOCKET DEV...`. A userspace delay line,
 * because this kernel has no netem (and no fq for departure times): each DEV becomes a TUN device,
 * and every IP packet the kernel routes into it is written back into it (so routed on) after that
 * device's delay. Delays start at 0; a line "DEV MS" on the unix socket CONTROL_SOCKET sets one and
 * is answered "ok". Each device is a FIFO: a lowered delay never reorders. Prints "ready".
 */
import fs from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import { openTun } from '../src/sys/tun';

class Line {
  delayMs = 0;
  private readonly queue: { due: number; pkt: Buffer }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private lastDue = 0;

  constructor(private readonly fd: number) {}

  /** One blocking read at a time on the thread pool: a TUN read returns exactly one packet. */
  read(): void {
    const buf = Buffer.allocUnsafe(65_536);
    fs.read(this.fd, buf, 0, buf.length, null, (err, n) => {
      if (err) throw err;
      this.push(buf.subarray(0, n));
      this.read();
    });
  }

  private push(pkt: Buffer): void {
    const now = performance.now();
    const due = Math.max(now + this.delayMs, this.lastDue);
    this.lastDue = due;
    if (due <= now && this.queue.length === 0) {
      fs.writeSync(this.fd, pkt);
      return;
    }
    this.queue.push({ due, pkt });
    if (!this.timer) this.arm();
  }

  private arm(): void {
    const head = this.queue[0];
    this.timer = head ? setTimeout(() => this.flush(), Math.max(0, head.due - performance.now())) : null;
  }

  private flush(): void {
    const now = performance.now();
    let i = 0;
    while (i < this.queue.length && this.queue[i]!.due <= now + 0.5) fs.writeSync(this.fd, this.queue[i++]!.pkt);
    this.queue.splice(0, i);
    this.arm();
  }
}

function main(): void {
  const [control, ...devs] = process.argv.slice(2);
  if (!control || devs.length === 0) throw new Error('usage: delay-line CONTROL_SOCKET DEV...');
  const lines = new Map(devs.map((d) => [d, new Line(openTun(d))]));
  for (const l of lines.values()) l.read();
  const server = net.createServer((c) => {
    readline.createInterface({ input: c }).on('line', (text) => {
      const [dev, ms] = text.trim().split(/\s+/);
      const l = lines.get(dev ?? '');
      const v = Number(ms);
      if (!l || !Number.isFinite(v) || v < 0) {
        c.write(`error: expected "DEV MS" with DEV one of ${devs.join(', ')}\n`);
        return;
      }
      l.delayMs = v;
      c.write('ok\n');
    });
    c.on('error', () => c.destroy());
  });
  server.listen(control, () => process.stdout.write('ready\n'));
}

main();

/**
 * Both ends of the conversion-latency and idle-tunnel workloads, run under mptcpize:
 *
 *   node latency-client.js echo [HOST]             echo server on a free port of HOST (127.0.0.1); prints the port
 *   node latency-client.js burst MODE PROXY ECHO COUNT RATE
 *       opens COUNT connections at RATE per second through the proxy (MODE connect | socks5 |
 *       direct) to the echo server; each sends "ID########\n", waits for the echo and closes.
 *       Prints {"ok":N,"errors":N,"firstError":...,"spanMs":N,"lagP99Ms":N}.
 *   node latency-client.js hold MODE PROXY ECHO COUNT
 *       opens COUNT tunnels (at most 256 handshakes at a time), checks each with one echo, keeps
 *       them all open, prints {"open":N,"errors":N,...} and closes everything when stdin ends.
 *   node latency-client.js keep MODE PROXY ECHO COUNT PERIOD_S
 *       as hold, then echoes a line through every held tunnel once per PERIOD_S (round robin, so
 *       the proxy's idle timeout never fires) and prints a status line every 10 s:
 *       {"status":"keep","open":N,"pings":N,"errors":N,"dropped":N,...}, until stdin ends.
 *   node latency-client.js churn HTTP_PROXY SOCKS_PROXY ECHO RATE BYTES
 *       RATE short tunnels per second, CONNECT and SOCKS5 in turn (to the two proxy ports); each sends BYTES, checks the
 *       echo and closes. Prints {"status":"churn","ok":N,"errors":N,...} every 10 s, until stdin ends.
 */
import net from 'node:net';

type Mode = 'connect' | 'socks5' | 'direct';

/** Reads until `want(buffered)` returns the number of bytes that form the reply (0 = need more). */
function readReply(sock: net.Socket, want: (b: Buffer) => number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const n = want(buf);
      if (n > 0) {
        cleanup();
        if (buf.length > n) sock.unshift(buf.subarray(n));
        resolve(buf.subarray(0, n));
      }
    };
    const onEnd = (): void => (cleanup(), reject(new Error(`closed after ${buf.length} reply bytes`)));
    const onError = (e: Error): void => (cleanup(), reject(e));
    const cleanup = (): void => {
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
    };
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('error', onError);
  });
}

const httpHead = (b: Buffer): number => {
  const i = b.indexOf('\r\n\r\n');
  return i < 0 ? 0 : i + 4;
};
const socksReply = (b: Buffer): number => {
  if (b.length < 5) return 0;
  const n = b[3] === 1 ? 10 : b[3] === 4 ? 22 : 7 + b[4];
  return b.length >= n ? n : 0;
};

/** A tunnel to 127.0.0.1:echo through the subject, ready for data. */
async function tunnel(mode: Mode, proxyPort: number, echoPort: number): Promise<net.Socket> {
  const sock = net.connect(proxyPort, '127.0.0.1');
  sock.setNoDelay(true);
  sock.on('error', () => undefined);
  try {
    if (mode === 'connect') {
      // Written before the handshake completes: it leaves with the first ACK's successor at once.
      sock.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`);
      const head = (await readReply(sock, httpHead)).toString('latin1');
      if (!/^HTTP\/1\.[01] 200/.test(head)) throw new Error(`CONNECT refused: ${head.split('\r\n')[0]}`);
    } else if (mode === 'socks5') {
      sock.write(Buffer.from([5, 1, 0]));
      const hello = await readReply(sock, (b) => (b.length >= 2 ? 2 : 0));
      if (hello[1] !== 0) throw new Error('SOCKS5 method refused');
      const req = Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, 0, 0]);
      req.writeUInt16BE(echoPort, 8);
      sock.write(req);
      const rep = await readReply(sock, socksReply);
      if (rep[1] !== 0) throw new Error(`SOCKS5 reply ${rep[1]}`);
    } else {
      await new Promise<void>((resolve, reject) => {
        sock.once('connect', resolve);
        sock.once('error', reject);
      });
    }
    return sock;
  } catch (e) {
    sock.destroy();
    throw e;
  }
}

/** Sends "ID########\n" (plus `pad` bytes before the newline) and checks the echo. */
async function pingPong(sock: net.Socket, id: number, pad = 0): Promise<void> {
  const line = Buffer.from(`ID${String(id).padStart(8, '0')}${'x'.repeat(pad)}\n`, 'latin1');
  sock.write(line);
  const back = await readReply(sock, (b) => (b.length >= line.length ? line.length : 0));
  if (!back.equals(line)) throw new Error('echo mismatch');
}

interface Tally {
  ok: number;
  errors: number;
  firstError: string | null;
}
const fail = (t: Tally, e: unknown): void => {
  t.errors++;
  t.firstError ??= (e as Error).message;
};

/**
 * The burst's tally, and how well this client kept to the rate asked: spanMs from the first
 * tunnel's start to the last's (the rate achieved is (count - 1) / span), and the 99th percentile
 * of how late a tunnel started against its schedule. A client that cannot keep up (one Node
 * thread) shows here rather than as the subject's latency.
 */
async function burst(mode: Mode, proxyPort: number, echoPort: number, count: number, rate: number): Promise<Tally & { spanMs: number; lagP99Ms: number }> {
  const t: Tally = { ok: 0, errors: 0, firstError: null };
  const pending: Promise<void>[] = [];
  const lags: number[] = [];
  const start = performance.now();
  let started = 0;
  let last = start;
  while (started < count) {
    const now = performance.now();
    const due = Math.min(count, Math.floor(((now - start) / 1000) * rate) + 1);
    for (; started < due; started++) {
      const id = started;
      lags.push(now - start - (id * 1000) / rate);
      last = now;
      pending.push(
        tunnel(mode, proxyPort, echoPort)
          .then(async (s) => {
            await pingPong(s, id);
            s.end();
            t.ok++;
          })
          .catch((e) => fail(t, e)),
      );
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  lags.sort((a, b) => a - b);
  return { ...t, spanMs: last - start, lagP99Ms: lags[Math.max(0, Math.ceil(lags.length * 0.99) - 1)] ?? 0 };
}

/** Opens COUNT tunnels (256 handshakes at a time), each checked with one echo; `open` follows closes. */
async function openMany(mode: Mode, proxyPort: number, echoPort: number, count: number): Promise<{ t: Tally & { open: number; ms: number }; socks: net.Socket[] }> {
  const t: Tally & { open: number; ms: number } = { ok: 0, errors: 0, firstError: null, open: 0, ms: 0 };
  const socks: net.Socket[] = [];
  const start = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const id = next++;
      try {
        const s = await tunnel(mode, proxyPort, echoPort);
        await pingPong(s, id);
        socks.push(s);
        s.on('close', () => t.open--);
        t.open++;
        t.ok++;
      } catch (e) {
        fail(t, e);
      }
    }
  };
  await Promise.all(Array.from({ length: 256 }, worker));
  t.ms = performance.now() - start;
  return { t, socks };
}

/**
 * Prints `status()` every 10 s until stdin ends; then `stop` (which waits for work in flight, so
 * the final status counts every tunnel as done or failed), a final status, and exit.
 */
function untilStdinEnds(status: () => object, stop: () => Promise<void>): void {
  const timer = setInterval(() => process.stdout.write(JSON.stringify(status()) + '\n'), 10_000);
  process.stdin.resume();
  process.stdin.on('end', () => {
    clearInterval(timer);
    void stop().then(() => {
      process.stdout.write(JSON.stringify({ ...status(), final: true }) + '\n');
      process.exit(0);
    });
  });
}

/** Resolves once `idle()` holds, or after `ms` (what is still in flight then shows in the final status). */
async function settle(idle: () => boolean, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!idle() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

async function hold(mode: Mode, proxyPort: number, echoPort: number, count: number): Promise<void> {
  const { t, socks } = await openMany(mode, proxyPort, echoPort, count);
  process.stdout.write(JSON.stringify(t) + '\n');
  process.stdin.resume();
  process.stdin.on('end', () => {
    for (const s of socks) s.destroy();
    process.exit(0);
  });
}

async function keep(mode: Mode, proxyPort: number, echoPort: number, count: number, periodS: number): Promise<void> {
  const { t, socks } = await openMany(mode, proxyPort, echoPort, count);
  process.stdout.write(JSON.stringify(t) + '\n');
  const opened = t.open;
  const k: Tally & { pings: number } = { ok: 0, errors: 0, firstError: null, pings: 0 };
  let i = 0;
  let busy = 0;
  // One tunnel every period/count ms; a tunnel whose previous echo is still out is skipped (counted).
  const every = Math.max(1, (periodS * 1000) / Math.max(1, socks.length));
  const start = performance.now();
  let due = 0;
  const ping = setInterval(() => {
    const want = Math.floor((performance.now() - start) / every);
    for (; due < want && socks.length; due++) {
      const s = socks[i++ % socks.length];
      if (s.destroyed) continue;
      k.pings++;
      busy++;
      pingPong(s, i)
        .then(() => k.ok++)
        .catch((e) => fail(k, e))
        .finally(() => busy--);
    }
  }, 5);
  untilStdinEnds(
    () => ({ status: 'keep', open: t.open, opened, dropped: opened - t.open, pings: k.pings, ok: k.ok, errors: k.errors, inFlight: busy, firstError: k.firstError }),
    // The tunnels close when the process exits, after the final status has counted them.
    async () => {
      clearInterval(ping);
      await settle(() => busy === 0);
    },
  );
}

async function churn(httpPort: number, socksPort: number, echoPort: number, rate: number, bytes: number): Promise<void> {
  const t: Tally & { bytes: number; inFlight: number; connect: number; socks5: number } = { ok: 0, errors: 0, firstError: null, bytes: 0, inFlight: 0, connect: 0, socks5: 0 };
  const start = performance.now();
  let started = 0;
  const one = async (id: number): Promise<void> => {
    const mode: Mode = id % 2 ? 'socks5' : 'connect';
    const s = await tunnel(mode, mode === 'connect' ? httpPort : socksPort, echoPort);
    try {
      await pingPong(s, id, Math.max(0, bytes - 11));
      await new Promise<void>((resolve) => {
        s.once('close', () => resolve());
        s.end();
        s.resume();
      });
    } finally {
      s.destroy();
    }
    t[mode]++;
    t.bytes += bytes;
  };
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - start) / 1000) * rate);
    for (; started < due; started++) {
      t.inFlight++;
      one(started)
        .then(() => t.ok++)
        .catch((e) => fail(t, e))
        .finally(() => t.inFlight--);
    }
  }, 5);
  untilStdinEnds(
    () => ({ status: 'churn', started, ...t }),
    async () => {
      clearInterval(timer);
      await settle(() => t.inFlight === 0);
    },
  );
}

function echo(host = '127.0.0.1'): void {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.setNoDelay(true);
    s.on('error', () => s.destroy());
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
  });
  server.listen({ port: 0, host, backlog: 4096 }, () => process.stdout.write(`${(server.address() as net.AddressInfo).port}\n`));
}

async function main(argv: string[]): Promise<void> {
  const [cmd, mode, proxy, echoPort, count, rate] = argv;
  if (cmd === 'echo') return echo(mode);
  if (cmd === 'burst') {
    process.stdout.write(JSON.stringify(await burst(mode as Mode, Number(proxy), Number(echoPort), Number(count), Number(rate))) + '\n');
    return;
  }
  if (cmd === 'hold') return hold(mode as Mode, Number(proxy), Number(echoPort), Number(count));
  if (cmd === 'keep') return keep(mode as Mode, Number(proxy), Number(echoPort), Number(count), Number(rate));
  if (cmd === 'churn') return churn(...(argv.slice(1, 6).map(Number) as [number, number, number, number, number]));
  throw new Error(`unknown command ${cmd}`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`latency-client: ${String(e)}\n`);
  process.exit(1);
});

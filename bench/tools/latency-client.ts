/**
 * Both ends of the conversion-latency and idle-tunnel workloads, run under mptcpize:
 *
 *   node latency-client.js echo                    echo server on a free loopback port; prints the port
 *   node latency-client.js burst MODE PROXY ECHO COUNT RATE
 *       opens COUNT connections at RATE per second through the proxy (MODE connect | socks5 |
 *       direct) to the echo server; each sends "ID########\n", waits for the echo and closes.
 *       Prints {"ok":N,"errors":N,"firstError":...}.
 *   node latency-client.js hold MODE PROXY ECHO COUNT
 *       opens COUNT tunnels (at most 256 handshakes at a time), checks each with one echo, keeps
 *       them all open, prints {"open":N,"errors":N,...} and closes everything when stdin ends.
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

async function pingPong(sock: net.Socket, id: number): Promise<void> {
  const line = `ID${String(id).padStart(8, '0')}\n`;
  sock.write(line);
  const back = await readReply(sock, (b) => (b.length >= line.length ? line.length : 0));
  if (back.toString() !== line) throw new Error('echo mismatch');
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

async function burst(mode: Mode, proxyPort: number, echoPort: number, count: number, rate: number): Promise<Tally> {
  const t: Tally = { ok: 0, errors: 0, firstError: null };
  const pending: Promise<void>[] = [];
  const start = performance.now();
  let started = 0;
  while (started < count) {
    const due = Math.min(count, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
    for (; started < due; started++) {
      const id = started;
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
  return t;
}

async function hold(mode: Mode, proxyPort: number, echoPort: number, count: number): Promise<void> {
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
  process.stdout.write(JSON.stringify(t) + '\n');
  process.stdin.resume();
  process.stdin.on('end', () => {
    for (const s of socks) s.destroy();
    process.exit(0);
  });
}

function echo(): void {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.setNoDelay(true);
    s.on('error', () => s.destroy());
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
  });
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => process.stdout.write(`${(server.address() as net.AddressInfo).port}\n`));
}

async function main(argv: string[]): Promise<void> {
  const [cmd, mode, proxy, echoPort, count, rate] = argv;
  if (cmd === 'echo') return echo();
  if (cmd === 'burst') {
    process.stdout.write(JSON.stringify(await burst(mode as Mode, Number(proxy), Number(echoPort), Number(count), Number(rate))) + '\n');
    return;
  }
  if (cmd === 'hold') return hold(mode as Mode, Number(proxy), Number(echoPort), Number(count));
  throw new Error(`unknown command ${cmd}`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`latency-client: ${String(e)}\n`);
  process.exit(1);
});

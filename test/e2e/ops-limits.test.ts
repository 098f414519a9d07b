/**
 * Limits on a live proxy, from raw MPTCP client connections in the client namespace:
 * - every request head on a keep-alive connection is bounded, not just the first: a client that
 *   dribbles its second head is closed (408) after the handshake timeout, an idle keep-alive
 *   connection is closed quietly then, while a normal client is served at once and a slow
 *   upload (longer than the timeout) on a kept-alive connection still arrives intact;
 * - on the mixed port, one handshake deadline from accept: a client that waits before its first
 *   byte and then dribbles (HTTP or SOCKS) is cut at ~1 × handshakeMs, not first-byte wait + a
 *   whole protocol timeout;
 * - more than 100 header lines (the default limits.maxHeaderLines): 431 with MPX_LIMIT_REACHED;
 *   a configured limits.maxHeaderLines of 20 is enforced the same way at 21;
 * - connections over limits.maxConnections are dropped and logged under the client's address;
 * - 500 per-client-limit hits: mptcp_proxy_errors_total{code="MPX_LIMIT_REACHED"} is 500 and the
 *   log has one line for them plus one summary, not 500.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ProxiedHttp } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternChunks, patternSha256 } from '../../testkit/pattern';
import { useTestbed, type ProxyHandle, type ProxyLogLine, type Testbed } from '../../testkit/testbed';
import { metricValue } from '../../testkit/metrics';
import { pickPorts } from '../ops/ports';
import { sleep } from '../../testkit/sleep';

const HANDSHAKE_MS = 1_000;

/** A raw client connection (through the testbed bridge) that keeps every byte it receives. */
class Raw {
  data = Buffer.alloc(0);
  closedAt: number | null = null;
  readonly closed: Promise<void>;
  private wake: (() => void) | null = null;
  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.data = Buffer.concat([this.data, d]);
      this.wake?.();
    });
    socket.on('error', () => {});
    this.closed = new Promise((r) =>
      socket.once('close', () => {
        this.closedAt = Date.now();
        this.wake?.();
        r();
      }),
    );
  }
  static async open(bridge: string): Promise<Raw> {
    const s = net.connect(bridge);
    await new Promise((r, j) => s.once('connect', r).once('error', j));
    return new Raw(s);
  }
  /** Wait for one whole response (content-length bodies) and take it off the buffer. */
  async response(timeoutMs = 5_000): Promise<{ head: string; body: Buffer }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = this.data.indexOf('\r\n\r\n');
      if (end >= 0) {
        const head = this.data.subarray(0, end).toString('latin1');
        const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (this.data.length >= end + 4 + len) {
          const body = this.data.subarray(end + 4, end + 4 + len);
          this.data = this.data.subarray(end + 4 + len);
          return { head, body };
        }
      }
      if (this.closedAt !== null || Date.now() > deadline) throw new Error(`no whole response (closed: ${this.closedAt !== null}): ${this.data.toString('latin1').slice(0, 200)}`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 100);
      });
    }
  }
}

/** `name` as written in the exposition, e.g. mptcp_proxy_errors_total{code="X"}; other labels are ignored. */
async function metric(tb: Testbed, port: number, name: string): Promise<number> {
  const r = await tb.exec('proxy', ['curl', '-s', `http://127.0.0.1:${port}/metrics`]);
  const [base, labels] = name.split('{') as [string, string | undefined];
  return metricValue(r.stdout, base, ...(labels ? labels.slice(0, -1).split(',') : []));
}

describe('ops: request-head deadlines and limit hits', { timeout: 180_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 0 });
  let server: LegacyServer;
  before(async () => {
    server = await startLegacyServer(tb());
  });

  /** The config file of the proxy on `port` (rewritten for a reload). */
  const writeConfig = (t: Testbed, port: number, yaml: string, mixedPort?: number): string => {
    const file = path.join(t.tmpDir, `limits-${port}.yaml`);
    const mixed = mixedPort ? `  - { name: mixed, protocol: mixed, listen: "${t.addr.proxy1}:${mixedPort}" }\n` : '';
    fs.writeFileSync(file, `listeners:\n  - { name: http, protocol: http, listen: "${t.addr.proxy1}:${port}" }\n${mixed}access:\n  allowClients: ["${t.cidr}"]\nlog: { format: json }\n${yaml}`);
    return file;
  };
  const start = (t: Testbed, port: number, metricsPort: number, yaml: string, mixedPort?: number): Promise<ProxyHandle> =>
    t.startProxy(['--config', writeConfig(t, port, yaml, mixedPort), '--metrics', `127.0.0.1:${metricsPort}`]);

  describe(`handshake timeout ${HANDSHAKE_MS} ms`, () => {
    let px: ProxyHandle;
    let port: number;
    let mixedPort: number;
    let metricsPort: number;
    let bridge: string;
    before(async () => {
      [port, metricsPort, mixedPort] = pickPorts(3);
      px = await start(tb(), port, metricsPort, `timeouts: { handshakeMs: ${HANDSHAKE_MS} }\n`, mixedPort);
      bridge = await tb().bridge('client', tb().addr.proxy1, port, { mptcp: true });
    });
    after(async () => {
      await px?.stop();
    });

    const get = (p: string): string => `GET ${server.url(p)} HTTP/1.1\r\nHost: ${server.host}\r\n\r\n`;

    test('a dribbled second head on a keep-alive connection gets 408 and close; a normal client is served meanwhile', async () => {
      const slow = await Raw.open(bridge);
      slow.socket.write(get('/bytes/1000?seed=1'));
      const first = await slow.response();
      assert.match(first.head, /^HTTP\/1\.1 200/);
      assert.equal(first.body.length, 1000);
      const idleFrom = Date.now();
      const head = `GET ${server.url('/bytes/10')} HTTP/1.1\r\nHost: ${server.host}\r\nX-Slow: ${'a'.repeat(40)}`;
      let i = 0;
      const dribble = setInterval(() => {
        if (i < head.length && !slow.socket.destroyed) slow.socket.write(head[i++]);
      }, 100);
      try {
        // A normal client, on its own connection, while the slow one dribbles.
        await sleep(300);
        const normal = await ProxiedHttp.open(tb(), tb().addr.proxy1, port);
        const t0 = Date.now();
        const r = await normal.request('GET', server.url('/bytes/5000?seed=2'));
        const latency = Date.now() - t0;
        normal.close();
        assert.equal(r.sha256, patternSha256(2, 5000));
        assert.ok(latency < 500, `normal client took ${latency} ms`);
        await Promise.race([slow.closed, sleep(HANDSHAKE_MS * 4)]);
      } finally {
        clearInterval(dribble);
      }
      assert.ok(slow.closedAt !== null, `the dribbling connection is still open ${Date.now() - idleFrom} ms after it went idle (${i} head bytes sent)`);
      const after = slow.closedAt - idleFrom;
      assert.ok(after >= HANDSHAKE_MS - 50 && after < HANDSHAKE_MS + 1_000, `closed ${after} ms after going idle`);
      assert.match(slow.data.toString('latin1'), /^HTTP\/1\.1 408 /, 'a partial head is answered 408');
    });

    test('an idle keep-alive connection is closed quietly after the timeout', async () => {
      const idle = await Raw.open(bridge);
      idle.socket.write(get('/bytes/100?seed=3'));
      await idle.response();
      const from = Date.now();
      await Promise.race([idle.closed, sleep(HANDSHAKE_MS * 4)]);
      assert.ok(idle.closedAt !== null, 'idle keep-alive connection still open');
      assert.ok(idle.closedAt - from < HANDSHAKE_MS + 1_000, `closed after ${idle.closedAt - from} ms`);
      assert.equal(idle.data.length, 0, `no response for a request never sent: ${idle.data.toString('latin1').slice(0, 100)}`);
    });

    test('a slow upload longer than the timeout, second on a keep-alive connection, is not cut', async () => {
      const c = await Raw.open(bridge);
      c.socket.write(get('/bytes/100?seed=4'));
      assert.match((await c.response()).head, /^HTTP\/1\.1 200/);
      const size = 2_000_000;
      const t0 = Date.now();
      c.socket.write(`POST ${server.url('/echo')} HTTP/1.1\r\nHost: ${server.host}\r\nContent-Length: ${size}\r\n\r\n`);
      for (const chunk of patternChunks(5, size)) {
        c.socket.write(chunk);
        await sleep(60); // 31 chunks: ~1.9 s, about twice the handshake timeout
      }
      const r = await c.response(10_000);
      const took = Date.now() - t0;
      c.socket.destroy();
      assert.match(r.head, /^HTTP\/1\.1 200/);
      assert.equal(r.body.length, size);
      assert.equal(createHash('sha256').update(r.body).digest('hex'), patternSha256(5, size));
      assert.ok(took > HANDSHAKE_MS * 1.5, `the upload took only ${took} ms`);
    });

    test('silent connections on the HTTP and mixed ports: each handshake timeout counted, two log lines', async () => {
      const code = 'mptcp_proxy_errors_total{code="MPX_HANDSHAKE_TIMEOUT"}';
      const before = await metric(tb(), metricsPort, code);
      const linesBefore = px.logs.length;
      const mixedBridge = await tb().bridge('client', tb().addr.proxy1, mixedPort, { mptcp: true });
      const silent = await Promise.all([...Array.from({ length: 20 }, () => Raw.open(bridge)), ...Array.from({ length: 20 }, () => Raw.open(mixedBridge))]);
      await Promise.race([Promise.all(silent.map((c) => c.closed)), sleep(HANDSHAKE_MS * 4)]);
      assert.equal(silent.filter((c) => c.closedAt === null).length, 0, 'silent connections left open');
      assert.equal((await metric(tb(), metricsPort, code)) - before, 40);
      const lines = px.logs.slice(linesBefore).filter((l) => l.code === 'MPX_HANDSHAKE_TIMEOUT' || l.result === 'MPX_HANDSHAKE_TIMEOUT');
      assert.ok(lines.length <= 2, `${lines.length} log lines for 40 handshake timeouts: ${JSON.stringify(lines.slice(0, 3))}`);
    });

    test('mixed port: waiting before the first byte, then dribbling, is cut ~1 × handshakeMs from accept (HTTP and SOCKS)', async () => {
      const mixedBridge = await tb().bridge('client', tb().addr.proxy1, mixedPort, { mptcp: true });
      // The first write comes late; a deadline restarted there would close at FIRST_AT + HANDSHAKE_MS.
      const FIRST_AT = 800;
      const BOUND = HANDSHAKE_MS + 500; // < FIRST_AT + HANDSHAKE_MS, with room for a loaded machine
      const dribble = async (first: Buffer, rest: Buffer): Promise<{ raw: Raw; tookMs: number }> => {
        const raw = await Raw.open(mixedBridge);
        const t0 = Date.now();
        let i = 0;
        let tick: NodeJS.Timeout | undefined;
        const start = setTimeout(() => {
          raw.socket.write(first);
          tick = setInterval(() => {
            if (i < rest.length && !raw.socket.destroyed) raw.socket.write(rest.subarray(i, ++i));
          }, 100);
        }, FIRST_AT);
        try {
          await Promise.race([raw.closed, sleep(HANDSHAKE_MS * 4)]);
        } finally {
          clearTimeout(start);
          clearInterval(tick);
        }
        assert.ok(raw.closedAt !== null, `still open ${Date.now() - t0} ms after accept (${i} bytes dribbled)`);
        return { raw, tookMs: raw.closedAt - t0 };
      };
      const [http, socks] = await Promise.all([
        dribble(Buffer.from('G'), Buffer.from(`ET ${server.url('/bytes/10')} HTTP/1.1\r\nHost: ${server.host}\r\nX-Slow: ${'a'.repeat(60)}`)),
        // SOCKS5: the whole greeting at once (its method selection answer proves SOCKS was engaged), then a request byte by byte.
        dribble(Buffer.from([5, 1, 0]), Buffer.concat([Buffer.from([5, 1, 0, 3, 60]), Buffer.from('h'.repeat(60)), Buffer.from([0, 80])])),
      ]);
      console.log(`# mixed port, first byte at ${FIRST_AT} ms then dribbling: HTTP cut after ${http.tookMs} ms, SOCKS after ${socks.tookMs} ms (handshakeMs ${HANDSHAKE_MS})`);
      assert.match(http.raw.data.toString('latin1'), /^HTTP\/1\.1 408 /, 'the HTTP front end timed the head out');
      assert.deepEqual([...socks.raw.data.subarray(0, 2)], [5, 0], 'the SOCKS front end answered the greeting');
      for (const [what, r] of [['HTTP', http], ['SOCKS', socks]] as const) {
        assert.ok(r.tookMs >= HANDSHAKE_MS - 50 && r.tookMs < BOUND, `${what}: closed ${r.tookMs} ms after accept, want ${HANDSHAKE_MS}..${BOUND}`);
      }
    });

    test('101 header lines: 431 MPX_LIMIT_REACHED; 100 are served', async () => {
      await headerLimit(bridge, 100);
    });
  });

  /** A GET whose head has `count` header lines (Host included). */
  const getWithHeaders = (count: number): string =>
    `GET ${server.url('/bytes/10?seed=6')} HTTP/1.1\r\nHost: ${server.host}\r\n${Array.from({ length: count - 1 }, (_, k) => `X-H${k}: v\r\n`).join('')}\r\n`;
  const assertRefused = (head: string, n: number): void => {
    assert.match(head, /^HTTP\/1\.1 431 /, `${n} header lines are refused`);
    assert.match(head, /X-Mptcp-Proxy-Error: MPX_LIMIT_REACHED/i);
  };

  /** n header lines are served, n + 1 get 431 with MPX_LIMIT_REACHED. */
  const headerLimit = async (bridge: string, n: number): Promise<void> => {
    const ok = await Raw.open(bridge);
    ok.socket.write(getWithHeaders(n));
    assert.match((await ok.response()).head, /^HTTP\/1\.1 200/, `${n} header lines are served`);
    ok.socket.destroy();
    const crowded = await Raw.open(bridge);
    crowded.socket.write(getWithHeaders(n + 1));
    assertRefused((await crowded.response()).head, n + 1);
    crowded.socket.destroy();
  };

  test('limits.maxHeaderLines: 20 is enforced (21 lines get 431); a reload to 30 applies to new connections', async () => {
    const t = tb();
    const [port, metricsPort] = pickPorts(2);
    const px = await start(t, port, metricsPort, 'limits: { maxHeaderLines: 20 }\n');
    try {
      const bridge = await t.bridge('client', t.addr.proxy1, port, { mptcp: true });
      await headerLimit(bridge, 20);
      // A keep-alive connection from before the reload keeps the limit its parser was armed with.
      const old = await Raw.open(bridge);
      old.socket.write(getWithHeaders(20));
      assert.match((await old.response()).head, /^HTTP\/1\.1 200/);
      writeConfig(t, port, 'limits: { maxHeaderLines: 30 }\n');
      px.proc.kill('SIGHUP');
      await px.waitForLog((l) => l.message === 'config reloaded', 10_000);
      await headerLimit(bridge, 30);
      old.socket.write(getWithHeaders(21));
      assertRefused((await old.response()).head, 21);
      old.socket.destroy();
    } finally {
      await px.stop();
    }
  });

  /**
   * A proxy with `limitYaml` and two connections held open within the limit; `body` makes the hits.
   * Returns the proxy's log lines about the limit, read after a clean stop.
   */
  const withTwoHeld = async (limitYaml: string, body: (o: { bridge: string; limitHits: () => Promise<number> }) => Promise<void>): Promise<ProxyLogLine[]> => {
    const t = tb();
    const [port, metricsPort] = pickPorts(2);
    const px = await start(t, port, metricsPort, `limits: ${limitYaml}\ntimeouts: { handshakeMs: 60000 }\n`);
    let stopped = false;
    try {
      const bridge = await t.bridge('client', t.addr.proxy1, port, { mptcp: true });
      const held = [await Raw.open(bridge), await Raw.open(bridge)];
      await sleep(300);
      const counter = 'mptcp_proxy_errors_total{code="MPX_LIMIT_REACHED"}';
      const before = await metric(t, metricsPort, counter);
      await body({ bridge, limitHits: async () => (await metric(t, metricsPort, counter)) - before });
      assert.equal(held.filter((c) => c.closedAt !== null).length, 0, 'the two within the limit stay open');
      for (const c of held) c.socket.destroy();
      await px.stop();
      stopped = true;
      return px.logs.filter((l) => l.code === 'MPX_LIMIT_REACHED' || l.result === 'MPX_LIMIT_REACHED');
    } finally {
      if (!stopped) await px.stop();
    }
  };

  test('maxConnections drops: counted, and the limit log names the client address, not "unknown"', async () => {
    const HITS = 20;
    const lines = await withTwoHeld('{ maxConnections: 2 }', async ({ bridge, limitHits }) => {
      const over = await Promise.all(Array.from({ length: HITS }, () => Raw.open(bridge)));
      await Promise.race([Promise.all(over.map((c) => c.closed)), sleep(5_000)]);
      assert.equal(over.filter((c) => c.closedAt === null).length, 0, 'every connection over the limit is closed');
      assert.equal(await limitHits(), HITS);
    });
    const client = tb().addr.client1;
    const hit = lines.find((l) => l.message === 'limit hit');
    assert.equal(hit?.client, client, `limit hit line: ${JSON.stringify(hit)}`);
    const summary = lines.find((l) => l.message === 'limit hits not logged one by one');
    assert.deepEqual([summary?.client, summary?.count], [client, HITS - 1], `summary line: ${JSON.stringify(summary)}`);
  });

  test('500 per-client limit hits: counted 500 times, logged in a couple of lines', async () => {
    const HITS = 500;
    const lines = await withTwoHeld('{ maxConnectionsPerClient: 2 }', async ({ bridge, limitHits }) => {
      let refused = 0;
      for (let done = 0; done < HITS; done += 25) {
        await Promise.all(
          Array.from({ length: Math.min(25, HITS - done) }, async () => {
            const c = await Raw.open(bridge);
            await Promise.race([c.closed, sleep(5_000)]);
            if (c.closedAt !== null) refused++;
            c.socket.destroy();
          }),
        );
      }
      assert.equal(refused, HITS, 'every connection over the limit is closed');
      assert.equal(await limitHits(), HITS, 'mptcp_proxy_errors_total{code="MPX_LIMIT_REACHED"}');
    });
    console.log(`# ${HITS} per-client limit hits -> ${lines.length} log lines: ${lines.map((l) => `${l.message}${l.count ? ` (${l.count})` : ''}`).join('; ')}`);
    assert.ok(lines.length <= 3, `${lines.length} log lines for ${HITS} hits`);
    assert.equal(lines.filter((l) => l.message === 'limit hit').length, 1);
    const summary = lines.find((l) => l.message === 'limit hits not logged one by one');
    assert.equal(summary?.count, HITS - 1, `summary line: ${JSON.stringify(summary)}`);
  });
});

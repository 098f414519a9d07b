/**
 * The splice engine's pipe pool on real loopback sockets: idle relays hold no pipe (so an idle
 * tunnel costs only its two sockets' descriptors), pipes go back to the pool as soon as they are
 * empty, and every descriptor is back when the relays end.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { closeOutcome, connect, listen, startProxy, useSpliceEngine } from '../../testkit/splice-harness';

const engine = useSpliceEngine({ before, after });

const openFds = (): number => fs.readdirSync('/proc/self/fd').length;

/** The hard open-file limit (Node raises the soft one to it on start-up). */
function nofileHard(): number {
  const m = /^Max open files\s+\d+\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? 1 << 20 : Number(m[1]);
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

/** One echo round trip on a tunnel: data went through a pipe each way. */
function echoOnce(c: net.Socket, byte: string): Promise<void> {
  return new Promise((resolve, reject) => {
    c.once('data', (d: Buffer) => (d.toString() === byte ? resolve() : reject(new Error(`echo ${d.toString()} for ${byte}`))));
    c.write(byte);
  });
}

describe('splice relay pipe pool (client mptcp → upstream tcp)', { timeout: 180_000 }, () => {
  it('holds thousands of idle relays with no pipe in use and a small pool, and returns every fd', async () => {
    // This process holds four sockets per relay (client, the proxy's two, server).
    const pairs = Math.min(3000, Math.floor((nofileHard() - openFds() - 300) / 4));
    assert.ok(pairs >= 500, `open-file limit too low for this test (${nofileHard()})`);
    const fdsBefore = openFds();
    const server = await listen('tcp', (s) => {
      s.on('error', () => {});
      s.pipe(s);
    });
    const proxy = await startProxy({ clientKind: 'mptcp', upstreamKind: 'tcp', upstreamPort: server.port, relay: (c, u, o) => engine().relay(c, u, o) });
    const clients: net.Socket[] = [];
    try {
      for (let i = 0; i < pairs; i += 200) {
        const batch = await Promise.all(Array.from({ length: Math.min(200, pairs - i) }, () => connect('mptcp', proxy.port)));
        clients.push(...batch);
      }
      await until(() => engine().active() === pairs, 20_000);
      assert.equal(engine().active(), pairs, 'every pair runs natively');
      // Traffic on every tunnel, 200 at a time: pipes are taken and given back.
      for (let i = 0; i < pairs; i += 200) await Promise.all(clients.slice(i, i + 200).map((c) => echoOnce(c, String.fromCharCode(65 + (i % 26)))));
      await until(() => engine().stats().pipesInUse === 0, 2000);
      const idle = engine().stats();
      assert.equal(idle.active, pairs);
      assert.equal(idle.pipesInUse, 0, 'idle relays hold no pipe');
      assert.ok(idle.pipesOpen <= 64, `pool stays small: ${idle.pipesOpen} pipes open for ${pairs} relays`);
      const held = openFds() - fdsBefore;
      assert.ok(held <= 4 * pairs + 2 * idle.pipesOpen + 20, `${held} fds held for ${pairs} idle relays (4 sockets each)`);

      const outcomes = clients.map((c) => closeOutcome(c));
      for (const c of clients) c.end();
      assert.ok((await Promise.all(outcomes)).every((o) => o === 'closed'), 'every tunnel closed cleanly');
      const runs = await Promise.all(proxy.results);
      assert.equal(runs.length, pairs);
      assert.ok(runs.every((r) => r.result.end === 'done' && r.result.bytesUp === 1 && r.result.bytesDown === 1), 'each relay counted its one byte each way');
    } finally {
      clients.forEach((c) => c.destroy());
      await proxy.close();
      await server.close();
    }
    await until(() => engine().active() === 0, 5000);
    await until(() => openFds() <= fdsBefore + 2 * engine().stats().pipesOpen + 10, 3000);
    const left = openFds() - fdsBefore;
    assert.ok(left <= 2 * engine().stats().pipesOpen + 10, `fds after close: ${left} above the start (pool ${engine().stats().pipesOpen} pipes)`);
  });

  it('gives a pipe back only once it is empty: a stalled receiver keeps its bytes in one', async () => {
    let serverSocket!: net.Socket;
    const server = await listen('tcp', (s) => {
      serverSocket = s;
      s.pause();
    });
    const proxy = await startProxy({ clientKind: 'mptcp', upstreamKind: 'tcp', upstreamPort: server.port, relay: (c, u, o) => engine().relay(c, u, o) });
    try {
      const client = await connect('mptcp', proxy.port);
      const before = engine().stats().pipesInUse;
      // More than the socket buffers take while the server reads nothing: bytes wait in the pipe.
      const big = Buffer.alloc(32 << 20, 7);
      client.write(big);
      await until(() => engine().stats().pipesInUse > before, 5000);
      assert.equal(engine().stats().pipesInUse, before + 1, 'the stalled direction holds one pipe');
      let got = 0;
      const all = new Promise<void>((resolve) => {
        serverSocket.on('data', (d: Buffer) => {
          got += d.length;
          if (got === big.length) resolve();
        });
      });
      serverSocket.resume();
      await all;
      await until(() => engine().stats().pipesInUse === before, 2000);
      assert.equal(engine().stats().pipesInUse, before, 'drained: the pipe is back in the pool');
      client.end();
      serverSocket.end();
      const run = await proxy.nextResult();
      assert.deepEqual(run.result, { bytesUp: big.length, bytesDown: 0, end: 'done' });
      client.destroy();
    } finally {
      await proxy.close();
      await server.close();
    }
  });
});

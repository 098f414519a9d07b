/**
 * KernelView against the real kernel: a client namespace with two paths (MPTCP `subflow`
 * endpoint on path 2, per-source routing) and a server namespace. Each side runs a child process
 * (this same file, with CHILD_FLAG) that starts a KernelView in its own namespace; the server
 * child accepts on an MPTCP listener, waits for the join, sends PAYLOAD, snapshots its subflows;
 * the client child connects with connectMptcp, reads everything, snapshots, answers, closes.
 * Both print their events as JSON lines; the parent asserts on them.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import readline from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { KernelView, type KernelViewEventMap } from '../../src/mptcp/kernel-view';
import { netlinkWatcher } from '../../src/relay/native';
import { connectMptcp, createListenSocket, socketFd, socketName } from '../../src/sys/socket';
import { useTestbed } from '../../testkit/testbed';

const CHILD_FLAG = '--kernel-view-child';
const PAYLOAD = 8 * 1024 * 1024;
const GREETING = 1;
const EVENT_NAMES: (keyof KernelViewEventMap)[] = [
  'connection-created',
  'connection-established',
  'connection-closed',
  'subflow-established',
  'subflow-closed',
  'priority-changed',
  'announced',
  'removed',
  'malformed',
  'lost',
  'failed',
];

// ------------------------------------------------------------------------------------------
// child side

function out(o: object): void {
  process.stdout.write(JSON.stringify(o, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Error ? v.message : v)) + '\n');
}

/** The view does not keep a process alive; the children wait for events with this guard. */
const guard =
  process.argv[2] === CHILD_FLAG
    ? setTimeout(() => {
        out({ kind: 'child-timeout' });
        process.exit(4);
      }, 20_000)
    : undefined;

async function startView(): Promise<KernelView> {
  const kv = new KernelView();
  for (const name of EVENT_NAMES) kv.on(name, (e: unknown) => out({ kind: 'event', name, e }));
  await kv.start();
  return kv;
}

/** Resolves when the view reports `name` for `token` (or already has, per `already`). */
function waitEvent(kv: KernelView, name: 'connection-closed' | 'subflow-established' | 'subflow-closed', token: number, already = false): Promise<void> {
  if (already) return Promise.resolve();
  return new Promise((resolve) => {
    const on = (e: { token: number }): void => {
      if (e.token !== token) return;
      kv.off(name, on);
      resolve();
    };
    kv.on(name, on);
  });
}

/** `hold`: no payload; keep the connection until the client ends it (path-manager test). */
async function serverChild(host: string, hold: boolean): Promise<void> {
  const kv = await startView();
  const l = createListenSocket(host, 0, { mptcp: true, backlog: 16, options: {} });
  const srv = net.createServer((sock) => {
    const fd = socketFd(sock);
    const token = kv.mptcpToken(fd);
    out({ kind: 'accepted', token });
    if (token === null) return void sock.destroy();
    const closed = waitEvent(kv, 'connection-closed', token);
    void (async () => {
      // The client's path manager opens the join only once it is fully established, which
      // takes a DSS ack from us: a greeting byte first, the payload once the join is up.
      sock.write('h');
      await waitEvent(kv, 'subflow-established', token, (kv.connection(token)?.subflows.size ?? 0) >= 2);
      if (hold) sock.on('end', () => sock.end());
      else {
        sock.write(Buffer.alloc(PAYLOAD, 0x5a));
        sock.once('data', () => {
          out({ kind: 'snapshot', s: kv.snapshot(fd) });
          sock.end();
        });
      }
      sock.resume();
      await closed;
      srv.close();
      await kv.stop();
      clearTimeout(guard);
      out({ kind: 'done' });
    })();
  });
  srv.listen({ fd: l.fd }, () => out({ kind: 'ready', port: socketName(l.fd).port }));
}

/** `hold`: read the greeting, then close once the kernel reports a subflow closed. */
async function clientChild(host: string, port: number, hold: boolean): Promise<void> {
  const kv = await startView();
  const t0 = process.hrtime.bigint();
  const { fd, mptcp } = await connectMptcp(host, port, 5000);
  const tConnected = process.hrtime.bigint();
  const token = kv.mptcpToken(fd);
  out({ kind: 'connected', token, mptcp, t0, tConnected });
  if (token === null) process.exit(3);
  const closed = waitEvent(kv, 'connection-closed', token);
  const sock = new net.Socket({ fd, readable: true, writable: true });
  let got = 0;
  if (hold) void waitEvent(kv, 'subflow-closed', token).then(() => sock.end());
  sock.on('data', (d: Buffer) => {
    got += d.length;
    if (hold || got < GREETING + PAYLOAD) return;
    sock.removeAllListeners('data');
    out({ kind: 'snapshot', s: kv.snapshot(fd) });
    sock.write('ok');
    sock.resume();
  });
  sock.on('end', () => {
    out({ kind: 'end' });
    sock.end();
  });
  sock.on('close', () => out({ kind: 'close', at: process.hrtime.bigint() }));
  await closed;
  sock.destroy();
  await kv.stop();
  clearTimeout(guard);
  out({ kind: 'done', got });
}

/**
 * Both ends in this namespace (loopback), two views: `narrow` (serverSideOnly, listening to
 * established and closed only, read on the main loop by the native addon's watcher) and `wide`
 * (everything kept, read by the worker_thread reader). Connection A, then a
 * connection-created listener on narrow, then connection B. Client-side events that reach the
 * narrow view's socket would be emitted (its JS does not look at the side): only the kernel filter
 * keeps them out.
 */
async function filterChild(host: string): Promise<void> {
  const watcher = netlinkWatcher();
  if (!watcher) throw new Error('the native addon has no netlink watcher (build it: npm run build:native)');
  const narrow = new KernelView({ serverSideOnly: true, watcher });
  const wide = new KernelView();
  const report = (view: string, kv: KernelView, name: 'connection-created' | 'connection-established' | 'connection-closed'): void =>
    void kv.on(name, (e: unknown) => out({ kind: 'event', view, name, e }));
  report('narrow', narrow, 'connection-established');
  report('narrow', narrow, 'connection-closed');
  report('wide', wide, 'connection-established');
  report('wide', wide, 'connection-closed');
  await narrow.start();
  await wide.start();
  const l = createListenSocket(host, 0, { mptcp: true, backlog: 16, options: {} });
  const srv = net.createServer((sock) => {
    out({ kind: 'accepted', token: narrow.mptcpToken(socketFd(sock)) });
    sock.resume();
    sock.on('end', () => sock.end());
  });
  await new Promise<void>((resolve) => srv.listen({ fd: l.fd }, resolve));
  const port = socketName(l.fd).port;
  const connection = async (label: string): Promise<void> => {
    const accepted = new Promise<number>((resolve) => srv.once('connection', (sock: net.Socket) => resolve(narrow.mptcpToken(socketFd(sock))!)));
    const { fd } = await connectMptcp(host, port, 5000);
    const clientToken = wide.mptcpToken(fd)!;
    out({ kind: 'connected', label, token: clientToken });
    const serverToken = await accepted;
    // Each view reads at its own pace: both must have seen the closes before the next step.
    const closed = Promise.all([waitEvent(narrow, 'connection-closed', serverToken), waitEvent(wide, 'connection-closed', serverToken), waitEvent(wide, 'connection-closed', clientToken)]);
    const sock = new net.Socket({ fd, readable: true, writable: true });
    sock.resume();
    sock.end();
    await closed;
    sock.destroy();
  };
  await connection('A');
  report('narrow', narrow, 'connection-created');
  await connection('B');
  srv.close();
  await narrow.stop();
  await wide.stop();
  clearTimeout(guard);
  out({ kind: 'done' });
}

// ------------------------------------------------------------------------------------------
// parent side

interface Line {
  kind: string;
  [k: string]: unknown;
}
interface EventLine {
  name: string;
  e: Record<string, unknown> & { token?: number; receivedAt?: string; emittedAt?: string };
}

/** JSON lines of a child, with a waiter. */
function lines(child: ChildProcess): { all: Line[]; stderr: () => string; waitFor: (pred: (l: Line) => boolean, ms: number) => Promise<Line> } {
  const all: Line[] = [];
  let err = '';
  const waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const push = (l: Line): void => {
    all.push(l);
    for (const w of [...waiters]) if (w.pred(l)) w.resolve(l);
  };
  child.on('exit', (code) => push({ kind: 'exit', code }));
  readline.createInterface({ input: child.stdout! }).on('line', (text) => {
    let l: Line;
    try {
      l = JSON.parse(text) as Line;
    } catch {
      err += `non-JSON stdout: ${text}\n`;
      return;
    }
    push(l);
  });
  return {
    all,
    stderr: () => err,
    waitFor: (pred, ms) => {
      const found = all.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms; lines: ${JSON.stringify(all).slice(-3000)}; stderr: ${err}`)), ms);
        waiters.push({ pred, resolve: (l) => (clearTimeout(t), resolve(l)) });
      });
    },
  };
}

const eventsOf = (ls: Line[], name: string, token?: number): EventLine['e'][] =>
  ls.filter((l) => l.kind === 'event' && l.name === name).map((l) => (l as unknown as EventLine).e).filter((e) => token === undefined || e.token === token);

interface SnapshotLine {
  local: { address: string } | null;
  remote: { address: string } | null;
  remId: number | null;
  ifName: string | null;
  tcp: { bytesSent: string; bytesReceived: string; bytesAcked: string; rttUs: number; sndMss: number } | null;
}

if (process.argv[2] === CHILD_FLAG) {
  const [mode, host, port] = process.argv.slice(3);
  const hold = mode!.endsWith('-hold');
  const main = mode === 'filter' ? filterChild(host!) : mode!.startsWith('server') ? serverChild(host!, hold) : clientChild(host!, Number(port), hold);
  main.catch((e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(2);
  });
} else {
  describe('KernelView: mptcp_pm events and subflow snapshots in namespaces', { timeout: 90_000 }, () => {
    const tb = useTestbed({ before, after }, { shapeMbit: 50 });

    it('sees the connection, the join on path 2, both subflows carrying data, and the close', async (t) => {
      const bed = tb();
      const a = bed.addr;
      const script = 'dist/test/e2e/kernel-view.test.js';
      const server = lines(bed.spawnNode('proxy', script, [CHILD_FLAG, 'server', a.proxy1]));
      const ready = await server.waitFor((l) => l.kind === 'ready', 10_000);
      const client = lines(bed.spawnNode('client', script, [CHILD_FLAG, 'client', a.proxy1, String(ready.port)]));

      const cDone = await client.waitFor((l) => l.kind === 'done' || l.kind === 'exit', 30_000).catch((e: Error) => {
        throw new Error(`${e.message}\nserver: ${JSON.stringify(server.all).slice(-3000)} ${server.stderr()}`);
      });
      await server.waitFor((l) => l.kind === 'done' || l.kind === 'exit', 10_000);
      assert.equal(cDone.got, GREETING + PAYLOAD, `client: ${JSON.stringify(client.all).slice(-2000)} ${client.stderr()}`);
      assert.ok(server.all.some((l) => l.kind === 'done'), `server: ${JSON.stringify(server.all).slice(-2000)} ${server.stderr()}`);

      const connected = client.all.find((l) => l.kind === 'connected')!;
      const cTok = connected.token as number;
      const sTok = server.all.find((l) => l.kind === 'accepted')!.token as number;
      assert.equal(connected.mptcp, true);
      assert.ok(typeof cTok === 'number' && typeof sTok === 'number' && cTok !== sTok, 'each side has its own token');

      // Server: created + established, server side, over path 1.
      const sEst = eventsOf(server.all, 'connection-established', sTok);
      assert.equal(sEst.length, 1);
      assert.equal(sEst[0]!.serverSide, true);
      assert.deepEqual(sEst[0]!.remote, { address: a.client1, port: (sEst[0]!.remote as { port: number }).port });
      assert.equal((sEst[0]!.local as { address: string }).address, a.proxy1);
      assert.equal(eventsOf(server.all, 'connection-created', sTok).length, 1);

      // Client: established, not server side.
      const cEst = eventsOf(client.all, 'connection-established', cTok);
      assert.equal(cEst.length, 1);
      assert.equal(cEst[0]!.serverSide, false);

      // The join: one subflow-established on each side, from the path-2 address.
      const sSub = eventsOf(server.all, 'subflow-established', sTok);
      const cSub = eventsOf(client.all, 'subflow-established', cTok);
      assert.equal(sSub.length, 1, JSON.stringify(sSub));
      assert.equal(cSub.length, 1, JSON.stringify(cSub));
      assert.equal((sSub[0]!.remote as { address: string }).address, a.client2);
      assert.equal((cSub[0]!.local as { address: string }).address, a.client2);
      assert.equal(cSub[0]!.backup, false);
      // The client's endpoint is bound to its path-2 device: if_idx → interface name.
      assert.equal(cSub[0]!.ifName, bed.ifaces.client2);

      // Snapshots: two subflows, both moved bytes; the join matched to its event ids.
      const sSnap = server.all.find((l) => l.kind === 'snapshot')!.s as SnapshotLine[];
      const cSnap = client.all.find((l) => l.kind === 'snapshot')!.s as SnapshotLine[];
      assert.equal(sSnap.length, 2, JSON.stringify(sSnap));
      assert.equal(cSnap.length, 2, JSON.stringify(cSnap));
      assert.deepEqual(sSnap.map((s) => s.remote?.address).sort(), [a.client1, a.client2].sort());
      for (const s of sSnap) assert.ok(s.tcp && BigInt(s.tcp.bytesSent) > 0n && s.tcp.sndMss > 0, `server subflow moved no data: ${JSON.stringify(s)}`);
      for (const s of cSnap) assert.ok(s.tcp && BigInt(s.tcp.bytesReceived) > 0n, `client subflow got no data: ${JSON.stringify(s)}`);
      const sentTotal = sSnap.reduce((n, s) => n + BigInt(s.tcp!.bytesSent), 0n);
      assert.ok(sentTotal >= BigInt(PAYLOAD), `subflows sent ${sentTotal} < ${PAYLOAD}`);
      const join = sSnap.find((s) => s.remote?.address === a.client2)!;
      assert.equal(join.remId, sSub[0]!.remId);
      const cJoin = cSnap.find((s) => s.local?.address === a.client2)!;
      assert.equal(cJoin.ifName, bed.ifaces.client2);

      // Closed on both sides, after established.
      const sClosed = eventsOf(server.all, 'connection-closed', sTok);
      const cClosed = eventsOf(client.all, 'connection-closed', cTok);
      assert.equal(sClosed.length, 1);
      assert.equal(cClosed.length, 1);
      assert.ok(BigInt(sClosed[0]!.receivedAt!) > BigInt(sEst[0]!.receivedAt!));
      for (const ls of [server.all, client.all]) {
        assert.equal(eventsOf(ls, 'malformed').length, 0);
        assert.equal(eventsOf(ls, 'lost').length, 0);
      }

      // Latency figures (CLOCK_MONOTONIC is shared by all processes).
      const us = (ns: bigint): string => (Number(ns) / 1000).toFixed(0);
      const cEstAt = BigInt(cEst[0]!.receivedAt!);
      const dispatch = [...server.all, ...client.all]
        .filter((l) => l.kind === 'event')
        .map((l) => BigInt((l as unknown as EventLine).e.emittedAt!) - BigInt((l as unknown as EventLine).e.receivedAt!));
      t.diagnostic(`client connect() start → its ESTABLISHED received: ${us(cEstAt - BigInt(connected.t0 as string))} us`);
      t.diagnostic(`connect() resolved → ESTABLISHED received: ${us(cEstAt - BigInt(connected.tConnected as string))} us (negative: event first)`);
      t.diagnostic(`reader → emit on main thread, max over ${dispatch.length} events: ${us(dispatch.reduce((m, x) => (x > m ? x : m), 0n))} us`);
    });

    it('serverSideOnly: the kernel drops client-side and unlistened events before they reach the socket (native watcher and worker reader)', async () => {
      const bed = tb();
      const child = lines(bed.spawnNode('proxy', 'dist/test/e2e/kernel-view.test.js', [CHILD_FLAG, 'filter', '127.0.0.1']));
      await child.waitFor((l) => l.kind === 'done' || l.kind === 'exit', 20_000);
      const all = child.all;
      assert.ok(all.some((l) => l.kind === 'done'), `filter child: ${JSON.stringify(all).slice(-2000)} ${child.stderr()}`);
      const [cA, cB] = all.filter((l) => l.kind === 'connected').map((l) => l.token as number);
      const [sA, sB] = all.filter((l) => l.kind === 'accepted').map((l) => l.token as number);
      const of = (view: string, name: string): EventLine['e'][] => all.filter((l) => l.kind === 'event' && l.view === view && l.name === name).map((l) => (l as unknown as EventLine).e);
      const tokens = (view: string, name: string): number[] => of(view, name).map((e) => e.token!);
      // The unfiltered view got both sides of both connections: the events were there to drop.
      assert.deepEqual(tokens('wide', 'connection-established').sort(), [cA, sA, cB, sB].sort());
      assert.deepEqual(tokens('wide', 'connection-closed').sort(), [cA, sA, cB, sB].sort());
      // The narrow view: the accepted side only, and no client-side close (never tracked).
      assert.deepEqual(tokens('narrow', 'connection-established'), [sA, sB]);
      assert.ok(of('narrow', 'connection-established').every((e) => e.serverSide === true));
      assert.deepEqual(tokens('narrow', 'connection-closed'), [sA, sB]);
      // CREATED is dropped while nobody listens; a listener added at run time gets B's, server side only.
      assert.deepEqual(tokens('narrow', 'connection-created'), [sB]);
    });

    it('reports announced, priority-changed, removed and subflow-closed from path-manager changes', async () => {
      const bed = tb();
      const a = bed.addr;
      const script = 'dist/test/e2e/kernel-view.test.js';
      const server = lines(bed.spawnNode('proxy', script, [CHILD_FLAG, 'server-hold', a.proxy1]));
      const ready = await server.waitFor((l) => l.kind === 'ready', 10_000);
      const client = lines(bed.spawnNode('client', script, [CHILD_FLAG, 'client-hold', a.proxy1, String(ready.port)]));
      const isEv = (name: string) => (l: Line) => l.kind === 'event' && l.name === name;
      const ev = async (side: typeof server, name: string): Promise<EventLine['e']> => ((await side.waitFor(isEv(name), 5000)) as unknown as EventLine).e;
      const ip = async (role: 'client' | 'proxy', args: string[]): Promise<string> => {
        const r = await bed.exec(role, ['ip', 'mptcp', 'endpoint', ...args]);
        assert.equal(r.code, 0, `ip mptcp endpoint ${args.join(' ')}: ${r.stderr}`);
        return r.stdout;
      };
      await ev(server, 'subflow-established');
      await ev(client, 'subflow-established');
      // The join can be reported before the child logs its accept/connect: wait for those lines.
      const cTok = (await client.waitFor((l) => l.kind === 'connected', 5000)).token as number;
      const sTok = (await server.waitFor((l) => l.kind === 'accepted', 5000)).token as number;

      // The server announces its second address: ADD_ADDR → ANNOUNCED at the client.
      await ip('proxy', ['add', a.proxy2, 'dev', bed.ifaces.proxy2, 'id', '7', 'signal']);
      const ann = await ev(client, 'announced');
      assert.deepEqual([ann.token, ann.remId, ann.address, ann.family], [cTok, 7, a.proxy2, 4]);

      // The client marks its path-2 endpoint backup: MP_PRIO → SUB_PRIORITY at the server.
      const cId = /id (\d+)/.exec(await ip('client', ['show']))?.[1];
      assert.ok(cId, 'client endpoint id');
      await ip('client', ['change', 'id', cId, 'backup']);
      const prio = await ev(server, 'priority-changed');
      assert.equal(prio.token, sTok);
      assert.equal(prio.backup, true);
      assert.equal((prio.remote as { address: string }).address, a.client2);

      // The server withdraws the address: RM_ADDR → REMOVED at the client.
      await ip('proxy', ['delete', 'id', '7']);
      const rem = await ev(client, 'removed');
      assert.deepEqual([rem.token, rem.remId], [cTok, 7]);

      // The client drops its endpoint: the join subflow closes on both sides.
      await ip('client', ['delete', 'id', cId]);
      const cClosed = await ev(client, 'subflow-closed');
      assert.equal((cClosed.local as { address: string }).address, a.client2);
      const sClosed = await ev(server, 'subflow-closed');
      assert.equal(sClosed.token, sTok);
      assert.equal((sClosed.remote as { address: string }).address, a.client2);

      // The client then ends the connection; both views see it close.
      await client.waitFor((l) => l.kind === 'done' || l.kind === 'exit', 10_000);
      await server.waitFor((l) => l.kind === 'done' || l.kind === 'exit', 10_000);
      assert.equal(eventsOf(client.all, 'connection-closed', cTok).length, 1);
      assert.equal(eventsOf(server.all, 'connection-closed', sTok).length, 1);
      assert.ok(client.all.some((l) => l.kind === 'done') && server.all.some((l) => l.kind === 'done'));
    });
  });
}

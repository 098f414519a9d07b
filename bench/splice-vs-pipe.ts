/**
 * Throughput and relay CPU per GB: MPTCP client → relay → TCP server on loopback, for the splice
 * engine against a plain socket.pipe() relay, with a no-relay baseline for the endpoints' limit.
 * The client and the server run in their own processes, so process.cpuUsage() here is the relay's
 * own cost. Usage: [PIPE_SIZE=bytes] node dist/bench/splice-vs-pipe.js [sizeMiB=1024] [runs=3] [client=mptcp|tcp]
 */
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { loadSpliceRelay, spliceUnavailableReason } from '../src/relay/splice-relay';
import { connect, type Kind, listen, sendAll } from '../testkit/splice-harness';

type Msg = { kind?: Kind; port?: number; bytes?: number; done?: boolean; error?: string; cpuSec?: number };

function cpuSince(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
}

const CHUNK = Buffer.alloc(1 << 20, 0x5a);

/** Child role "sink": a TCP server that counts bytes and reports each finished connection. */
async function sink(): Promise<void> {
  const l = await listen('tcp', (s) => {
    const cpu0 = process.cpuUsage();
    let bytes = 0;
    s.on('data', (c: Buffer) => (bytes += c.length));
    s.once('end', () => {
      s.end();
      process.send!({ bytes, done: true, cpuSec: cpuSince(cpu0) } satisfies Msg);
    });
    s.resume();
  });
  process.send!({ port: l.port } satisfies Msg);
}

/** Child role "source": on each {kind, port, bytes} connect and send that many bytes. */
function source(): void {
  process.on('message', async (m: Msg) => {
    try {
      const cpu0 = process.cpuUsage();
      const s = await connect(m.kind!, m.port!);
      s.resume();
      await sendAll(s, CHUNK, { repeat: Math.ceil(m.bytes! / CHUNK.length), end: true, chunk: CHUNK.length });
      process.send!({ done: true, cpuSec: cpuSince(cpu0) } satisfies Msg);
    } catch (e) {
      process.send!({ error: String(e) } satisfies Msg);
    }
  });
  process.send!({ done: true } satisfies Msg);
}

function next(child: ChildProcess): Promise<Msg> {
  return new Promise((resolve) => child.once('message', (m: Msg) => resolve(m)));
}

type Relay = (client: net.Socket, upstream: net.Socket) => Promise<unknown>;

function pipeRelay(client: net.Socket, upstream: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    let open = 2;
    const closed = (): void => {
      if (--open === 0) resolve();
    };
    client.once('close', closed);
    upstream.once('close', closed);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
    upstream.resume();
  });
}

async function main(): Promise<void> {
  const sizeMiB = Number(process.argv[2] ?? 1024);
  const runs = Number(process.argv[3] ?? 3);
  const bytes = sizeMiB * (1 << 20);
  const kind: Kind = process.argv[4] === 'tcp' ? 'tcp' : 'mptcp';
  const splice = loadSpliceRelay(process.env.PIPE_SIZE ? { pipeSize: Number(process.env.PIPE_SIZE) } : {});
  if (!splice) throw new Error(`splice relay unavailable: ${spliceUnavailableReason()}`);

  const sinkProc = fork(__filename, ['--role=sink']);
  const sourceProc = fork(__filename, ['--role=source']);
  const sinkPort = (await next(sinkProc)).port!;
  await next(sourceProc);

  const engines: [string, Relay | null][] = [
    ['direct (no relay)', null],
    ['pipe()', pipeRelay],
    ['splice', (c, u) => splice.relay(c, u, { idleMs: 0 })],
  ];
  // Engines take turns run by run, so background load hits them alike.
  const setups = await Promise.all(
    engines.map(async ([name, relay]) => {
      const proxy = relay
        ? await listen(kind, (client) => {
            void connect('tcp', sinkPort).then((upstream) => {
              upstream.pause();
              return relay(client, upstream);
            });
          })
        : null;
      return { name, proxy, port: proxy?.port ?? sinkPort, rates: [] as number[], cpuPerGB: [] as number[], endpointsPerGB: [] as number[] };
    }),
  );
  for (let i = 0; i < runs; i++) {
    for (const e of setups) {
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const finished = next(sinkProc);
      const sent = next(sourceProc);
      sourceProc.send({ kind, port: e.port, bytes } satisfies Msg);
      const m = await finished;
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = process.cpuUsage(cpu0);
      const s = await sent;
      if (s.error) throw new Error(`${e.name}: source failed: ${s.error}`);
      e.endpointsPerGB.push(((m.cpuSec ?? 0) + (s.cpuSec ?? 0)) / (bytes / 1e9));
      if (m.bytes !== bytes) throw new Error(`${e.name}: sink got ${m.bytes} of ${bytes} bytes`);
      e.rates.push(bytes / 1e9 / secs);
      e.cpuPerGB.push((cpu.user + cpu.system) / 1e6 / (bytes / 1e9));
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rows = setups.map(
    (e) =>
      `${e.name.padEnd(18)} best ${Math.max(...e.rates).toFixed(2)} GB/s  median ${median(e.rates).toFixed(2)} GB/s  ` +
      `CPU s/GB: relay ${median(e.cpuPerGB).toFixed(3)}, client+server ${median(e.endpointsPerGB).toFixed(3)}  (GB/s per run: ${e.rates.map((r) => r.toFixed(2)).join(', ')})`,
  );
  await Promise.all(setups.map((e) => e.proxy?.close()));
  sinkProc.kill();
  sourceProc.kill();
  console.log(`${sizeMiB} MiB per run, ${kind.toUpperCase()} client → relay → TCP server on loopback, ${runs} runs each, pipe size ${splice.pipeSize} B`);
  for (const r of rows) console.log(r);
}

const role = process.argv.find((a) => a.startsWith('--role='))?.slice(7);
if (role === 'sink') void sink();
else if (role === 'source') source();
else
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });

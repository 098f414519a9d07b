/**
 * The sniffer in router mode against real kernel MPTCP: a client with two paths through a router
 * to an MPTCP server. The sniffer runs in the router namespace on its two client-facing
 * interfaces, as the CLI would (a child process calling runSniffCommand), and must give the join
 * the same connection token as the initial subflow, which must be the server's own token
 * (MPTCP_INFO). A capture taken with tcpdump on the server (Linux cooked SLL2 on "any") must decode
 * to the same story.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { killGroup, mustRun, run } from '../../testkit/run';
import { SubflowSniffer } from '../../src/sniffer/capture';
import type { SniffEvent, SubflowClosedEvent, SubflowEvent } from '../../src/sniffer/events';

const id = randomBytes(3).toString('hex');
const NS = { cli: `snf-cli-${id}`, rtr: `snf-rtr-${id}`, srv: `snf-srv-${id}` };
const SRV = '10.71.3.2';
const PORT = 5000;
const UP = 300_000; // client → server
const DOWN = 500_000; // server → client
const tmp = mkdtempSync(path.join(os.tmpdir(), 'snf-'));
const children: ChildProcess[] = [];

const nsx = (ns: string, ...argv: string[]): Promise<string> => mustRun(['ip', 'netns', 'exec', ns, ...argv]);

async function cleanup(): Promise<void> {
  for (const c of children) if (c.pid && c.exitCode === null) killGroup(c.pid, 'SIGKILL');
  for (const ns of Object.values(NS)) await run(['ip', 'netns', 'del', ns]);
  rmSync(tmp, { recursive: true, force: true });
}
process.once('exit', () => {
  for (const c of children) if (c.pid && c.exitCode === null) killGroup(c.pid, 'SIGKILL');
});

before(async () => {
  try {
    for (const ns of Object.values(NS)) await mustRun(['ip', 'netns', 'add', ns]);
    // Created inside the namespaces, so no name ever exists in the root namespace.
    await mustRun(['ip', '-n', NS.cli, 'link', 'add', 'c1', 'type', 'veth', 'peer', 'name', 'r1', 'netns', NS.rtr]);
    await mustRun(['ip', '-n', NS.cli, 'link', 'add', 'c2', 'type', 'veth', 'peer', 'name', 'r2', 'netns', NS.rtr]);
    await mustRun(['ip', '-n', NS.rtr, 'link', 'add', 'r3', 'type', 'veth', 'peer', 'name', 's1', 'netns', NS.srv]);
    const addrs: [string, string, string][] = [
      [NS.cli, 'c1', '10.71.1.2/24'],
      [NS.cli, 'c2', '10.71.2.2/24'],
      [NS.rtr, 'r1', '10.71.1.1/24'],
      [NS.rtr, 'r2', '10.71.2.1/24'],
      [NS.rtr, 'r3', '10.71.3.1/24'],
      [NS.srv, 's1', `${SRV}/24`],
    ];
    for (const [ns, dev, a] of addrs) {
      await mustRun(['ip', '-n', ns, 'addr', 'add', a, 'dev', dev]);
      await mustRun(['ip', '-n', ns, 'link', 'set', dev, 'up']);
    }
    for (const ns of Object.values(NS)) await mustRun(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    await nsx(NS.rtr, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    // Per-source routing: traffic from the path2 address leaves on path2.
    await mustRun(['ip', '-n', NS.cli, 'route', 'add', 'default', 'via', '10.71.1.1', 'dev', 'c1']);
    await mustRun(['ip', '-n', NS.cli, 'route', 'add', 'default', 'via', '10.71.2.1', 'dev', 'c2', 'table', '102']);
    await mustRun(['ip', '-n', NS.cli, 'rule', 'add', 'from', '10.71.2.2', 'table', '102']);
    await mustRun(['ip', '-n', NS.srv, 'route', 'add', 'default', 'via', '10.71.3.1']);
    for (const ns of [NS.cli, NS.srv]) await mustRun(['ip', '-n', ns, 'mptcp', 'limits', 'set', 'subflows', '2', 'add_addr_accepted', '2']);
    await mustRun(['ip', '-n', NS.cli, 'mptcp', 'endpoint', 'add', '10.71.2.2', 'dev', 'c2', 'subflow']);
  } catch (err) {
    await cleanup();
    throw err;
  }
});

after(cleanup);

/** Spawn a long-running process; resolves once `ready` matches a line of its output. */
function startChild(argv: string[], ready: RegExp, stream: 'stdout' | 'stderr'): Promise<{ child: ChildProcess; out: () => string; err: () => string }> {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.push(child);
  let stdout = '';
  let stderr = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${argv.join(' ')} not ready: ${stderr}`)), 10_000);
    const check = (): void => {
      if (ready.test(stream === 'stdout' ? stdout : stderr)) {
        clearTimeout(timer);
        resolve({ child, out: () => stdout, err: () => stderr });
      }
    };
    child.stdout!.on('data', (d: Buffer) => ((stdout += d.toString()), check()));
    child.stderr!.on('data', (d: Buffer) => ((stderr += d.toString()), check()));
    child.on('exit', (code) => reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr}`)));
  });
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const t = setTimeout(() => resolve(null), timeoutMs);
    child.once('exit', (code) => (clearTimeout(t), resolve(code)));
  });
}

// MPTCP server: reads until EOF, answers DOWN bytes, prints its own token from MPTCP_INFO.
const SERVER_PY = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('${SRV}', ${PORT})); s.listen(4)
print('listening', flush=True)
c, _ = s.accept()
n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
info = c.getsockopt(284, 1, 96)
print('token %08x received %d' % (struct.unpack_from('<I', info, 12)[0], n), flush=True)
c.sendall(b'b' * ${DOWN})
c.close()
`;

// MPTCP client: sends UP bytes over about 1.5 s (time for the join), half-closes, reads to EOF.
const CLIENT_PY = `
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.connect(('${SRV}', ${PORT}))
chunk = b'a' * ${UP / 20}
for i in range(20):
    s.sendall(chunk); time.sleep(0.075)
s.shutdown(socket.SHUT_WR)
n = 0
while True:
    d = s.recv(65536)
    if not d: break
    n += len(d)
print('got', n, flush=True)
s.close()
`;

test('router-mode sniffer links the join to the initial subflow; server capture decodes alike', async () => {
  const sniffEntry = path.resolve(__dirname, '..', '..', 'src', 'sniffer', 'sniff-command.js');
  const sniff = (ns: string, ...args: string[]): string[] => [
    'ip', 'netns', 'exec', ns, process.execPath, '-e',
    `require(${JSON.stringify(sniffEntry)}).runSniffCommand(process.argv.slice(1)).then((c) => process.exit(c))`,
    '--', ...args, '--json',
  ];
  const sniffer = await startChild(sniff(NS.rtr, '--interface', 'r1', '--interface', 'r2'), /capturing on r1, r2/, 'stderr');
  // On the end host itself, over every interface (libpcap's "any": Linux cooked frames).
  const onHost = await startChild(sniff(NS.srv, '--interface', 'any'), /capturing on any/, 'stderr');
  const pcapPath = path.join(tmp, 'server.pcap');
  const dump = await startChild(
    ['ip', 'netns', 'exec', NS.srv, 'tcpdump', '-i', 'any', '--immediate-mode', '-U', '-s', '200', '-w', pcapPath, 'tcp', 'port', String(PORT)],
    /listening on/,
    'stderr',
  );
  const server = await startChild(['ip', 'netns', 'exec', NS.srv, 'python3', '-c', SERVER_PY], /listening/, 'stdout');

  const client = await run(['ip', 'netns', 'exec', NS.cli, 'python3', '-c', CLIENT_PY], { timeoutMs: 20_000 });
  assert.equal(client.code, 0, client.stderr);
  assert.match(client.stdout, new RegExp(`got ${DOWN}`));
  assert.equal(await waitExit(server.child, 5000), 0);
  const m = /token ([0-9a-f]{8}) received (\d+)/.exec(server.out());
  assert.ok(m, server.out());
  const serverToken = m[1]!;
  assert.equal(Number(m[2]), UP);

  // Let the closing FIN/ACKs reach the capture, then stop both captures cleanly.
  await new Promise((r) => setTimeout(r, 700));
  process.kill(-sniffer.child.pid!, 'SIGTERM');
  process.kill(-onHost.child.pid!, 'SIGINT');
  assert.equal(await waitExit(sniffer.child, 5000), 0, 'sniff exits 0 on SIGTERM');
  assert.equal(await waitExit(onHost.child, 5000), 0, 'sniff exits 0 on SIGINT');
  process.kill(-dump.child.pid!, 'SIGINT');
  await waitExit(dump.child, 5000);

  const events = sniffer
    .out()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as SniffEvent);
  const subflows = events.filter((e): e is SubflowEvent => e.event === 'subflow');
  assert.equal(subflows.length, 2, JSON.stringify(events));
  const initial = subflows.find((e) => e.kind === 'initial');
  const join = subflows.find((e) => e.kind === 'join');
  assert.ok(initial && join, JSON.stringify(subflows));
  assert.equal(initial.connection, serverToken, 'connection is the server-side token');
  assert.equal(join.connection, initial.connection);
  assert.equal(initial.interface, 'r1');
  assert.equal(join.interface, 'r2');
  assert.match(initial.src, /^10\.71\.1\.2:\d+$/);
  assert.match(join.src, /^10\.71\.2\.2:\d+$/);
  assert.equal(initial.dst, `${SRV}:${PORT}`);
  assert.equal(join.dst, `${SRV}:${PORT}`);

  // Byte accounting from sequence/ack numbers, although the filter drops DSS-only data segments.
  const closed = events.filter((e): e is SubflowClosedEvent => e.event === 'subflow-closed');
  assert.equal(closed.length, 2, JSON.stringify(events));
  const sent = closed.reduce((a, e) => a + e.bytesSent, 0);
  const received = closed.reduce((a, e) => a + e.bytesReceived, 0);
  // Reinjection may send some bytes on two subflows; nothing may be lost from the count.
  assert.ok(sent >= UP && sent < UP * 1.2, `sent ${sent}`);
  assert.ok(received >= DOWN && received < DOWN * 1.2, `received ${received}`);
  const hostSubflows = onHost
    .out()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as SniffEvent)
    .filter((e): e is SubflowEvent => e.event === 'subflow');
  assert.deepEqual(
    hostSubflows.map((e) => [e.kind, e.connection, e.src, e.interface]).sort(),
    [
      ['initial', serverToken, initial.src, 'any'],
      ['join', serverToken, join.src, 'any'],
    ],
  );
  const close = events.find((e) => e.event === 'close');
  assert.ok(close && close.connection === serverToken && close.event === 'close' && close.subflows === 2, JSON.stringify(events));

  // The server-side capture (SLL2 on "any", every packet) tells the same story.
  assert.ok(statSync(pcapPath).size > 0);
  const fromFile: SniffEvent[] = [];
  const offline = new SubflowSniffer((e) => fromFile.push(e));
  await offline.readFile(pcapPath, 'server');
  const fileSubflows = fromFile.filter((e): e is SubflowEvent => e.event === 'subflow');
  assert.deepEqual(
    fileSubflows.map((e) => [e.kind, e.connection, e.src.split(':')[0]]).sort(),
    [
      ['initial', serverToken, '10.71.1.2'],
      ['join', serverToken, '10.71.2.2'],
    ],
  );
  const fileClosed = fromFile.filter((e): e is SubflowClosedEvent => e.event === 'subflow-closed');
  assert.equal(fileClosed.reduce((a, e) => a + e.bytesSent, 0), sent, 'router and server count the same bytes');

  // The kernel filter: the router's sniffer saw far fewer packets than the full server capture.
  const routerPackets = Number(/stopped after (\d+) packets/.exec(sniffer.err())?.[1]);
  const allPackets = offline.stats().packets;
  process.stderr.write(`# sniffer packets: router (filtered) ${routerPackets}, server capture (all) ${allPackets}\n`);
  assert.ok(routerPackets > 0 && routerPackets < allPackets, `${routerPackets} vs ${allPackets}`);
});

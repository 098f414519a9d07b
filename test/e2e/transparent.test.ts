/**
 * Transparent mode end to end on the real kernel: the client (curl under mptcpize, no proxy
 * configured) only has the proxy namespace as its gateway on both paths; the proxy's TPROXY rule
 * diverts its TCP to the legacy server into a `transparent` listener, which converts to plain TCP.
 * Checked: byte-identical download over two subflows (the join to the server's address is
 * diverted too), the server sees only the proxy, /connections shows the MPTCP client, refusals
 * reset the client with stable codes, the kernel state exists while running and is gone after
 * SIGTERM, and `mptcp-proxy cleanup` removes it after a SIGKILL.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ConnectionStatus } from '../../src/admin/server';
import { curl } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternChunks, patternSha256 } from '../../testkit/pattern';
import { CLI_ENTRY, firstLine, useTestbed, type ProxyHandle, type Testbed } from '../../testkit/testbed';
import { metricValue } from '../../testkit/metrics';
import { sleep } from '../../testkit/sleep';

const METRICS = '127.0.0.1:9464';
/** A wildcard transparent listener for ports other than its own; also dialled directly (loop). */
const ANY_PORT = 15001;
/** Redirected but not in access.connectPorts. */
const DENIED_PORT = 15002;
const BYTES = 20_000_000;
const TPROXY_TABLE = 'mptcp_proxy_tproxy';
const TPROXY_PREF = 19856;

async function inProxy(tb: Testbed, argv: string[]): Promise<string> {
  const r = await tb.exec('proxy', argv);
  assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** One MPTCP/TCP counter of a namespace (nstat -a: absolute, no history file side effects). */
async function nstat(tb: Testbed, ns: 'client' | 'proxy' | 'server', name: string): Promise<number> {
  const r = await tb.exec(ns, ['nstat', '-asz', name]);
  const m = new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(r.stdout);
  return m ? Number(m[1]) : 0;
}

/** What the kernel holds for transparent mode in the proxy namespace. */
async function kernelState(tb: Testbed): Promise<{ table: string | null; rule: boolean; route: boolean }> {
  const t = await tb.exec('proxy', ['nft', 'list', 'table', 'inet', TPROXY_TABLE]);
  const rules = await inProxy(tb, ['ip', 'rule', 'show']);
  const routes = await inProxy(tb, ['ip', 'route', 'show', 'table', 'all']);
  return {
    table: t.code === 0 ? t.stdout : null,
    rule: new RegExp(`^${TPROXY_PREF}:.*fwmark 0x4d500040 lookup ${TPROXY_PREF}`, 'm').test(rules),
    route: new RegExp(`^local default dev lo table ${TPROXY_PREF}`, 'm').test(routes),
  };
}

for (const workers of [1, 2]) describe(`transparent mode: TPROXY to an MPTCP listener, no client configuration (workers=${workers})`, { timeout: 180_000 }, () => {
  let server: LegacyServer;
  let px: ProxyHandle;
  let configFile: string;

  // Registered before the testbed's own after hook, which deletes the namespaces.
  after(async () => {
    if (!px) return;
    const exit = await px.stop();
    assert.equal(exit.code, 0, 'proxy exits cleanly on SIGTERM');
    const s = await kernelState(tb());
    assert.deepEqual(s, { table: null, rule: false, route: false }, 'SIGTERM removes the TPROXY table, the fwmark rule and the local route');
  });
  const tb = useTestbed({ before, after }, { shapeMbit: 50 });

  /** The proxy's config; `extraPorts` go to the wildcard listener too (reload test). */
  const writeConfig = (extraPorts: number[] = []): void =>
    writeFileSync(
      configFile,
      [
        'listeners:',
        // The server's own port: joins to the server's address reach this listener too.
        `  - { name: tp, protocol: transparent, listen: "127.0.0.1:${server.httpPort}" }`,
        `  - { name: tp-any, protocol: transparent, listen: "0.0.0.0:${ANY_PORT}", ports: [${[ANY_PORT, server.echoPort, DENIED_PORT, ...extraPorts].join(', ')}] }`,
        'access:',
        `  allowClients: ["${tb().cidr}"]`,
        `  connectPorts: [${server.httpPort}, ${server.echoPort}, ${ANY_PORT}]`,
        'transparent:',
        `  interfaces: [${tb().ifaces.proxy1}, ${tb().ifaces.proxy2}]`,
        'metrics:',
        `  listen: ${METRICS}`,
        'log:',
        '  format: json',
        `workers: ${workers}`,
      ].join('\n'),
    );

  before(async () => {
    server = await startLegacyServer(tb());
    configFile = path.join(tb().tmpDir, 'transparent.yaml');
    writeConfig();
    px = await tb().startProxy(['--config', configFile]);
    await px.waitForLog((l) => l.message === 'admin listening', 10_000);
  });

  test('the TPROXY table, fwmark rule and local route exist while it runs', async () => {
    const s = await kernelState(tb());
    assert.ok(s.table, 'nft table present');
    assert.match(s.table, new RegExp(`iifname \\{ "${tb().ifaces.proxy1}", "${tb().ifaces.proxy2}" \\}`));
    assert.match(s.table, new RegExp(`tcp dport ${server.httpPort} tproxy ip to 127\\.0\\.0\\.1:${server.httpPort} meta mark set 0x4d500040`));
    assert.match(s.table, new RegExp(`tproxy ip to :${ANY_PORT} `));
    assert.match(s.table, /fib daddr type local return/);
    assert.equal(s.rule, true, 'fwmark rule in the owned slot');
    assert.equal(s.route, true, 'local default route in the owned table');
  });

  test('a plain curl (no proxy) downloads byte-identical over two subflows; the server sees only the proxy', async (t) => {
    const before = await tb().pathCounters();
    const synRx = await nstat(tb(), 'proxy', 'MPTcpExtMPJoinAckRx');
    const download = curl(tb(), { url: server.url(`/bytes/${BYTES}?seed=11`), timeoutMs: 60_000 });
    let live: ConnectionStatus | undefined;
    const serverPeers = new Set<string>();
    let serverMptcp = '';
    for (let i = 0; i < 80 && !(live && live.subflows.length >= 2 && serverPeers.size > 0); i++) {
      await sleep(100);
      const body = JSON.parse(await inProxy(tb(), ['curl', '-sS', '--noproxy', '*', `http://${METRICS}/connections`])) as { connections: ConnectionStatus[] };
      live = body.connections.find((c) => c.protocol === 'transparent') ?? live;
      const ss = await tb().exec('server', ['ss', '-Htn', 'state', 'established', `( sport = :${server.httpPort} )`]);
      for (const line of ss.stdout.trim().split('\n').filter(Boolean)) serverPeers.add(line.trim().split(/\s+/).at(-1)!.replace(/:\d+$/, ''));
      serverMptcp += (await tb().exec('server', ['ss', '-HM'])).stdout;
    }
    const r = await download;
    assert.equal(r.exitCode, 0, `${r.errorMessage} ${r.stderr}\n${px.stderr.slice(-2000)}`);
    assert.equal(r.httpCode, 200);
    assert.equal(r.sha256, patternSha256(11, BYTES), 'byte-identical');

    // The proxy: an MPTCP client connection, to the server's own address, on the transparent listener.
    assert.ok(live, 'the connection is listed in /connections');
    assert.equal(live.mptcp, true, JSON.stringify(live));
    assert.equal(live.listener, 'tp');
    assert.equal(live.client.replace(/:\d+$/, ''), tb().addr.client1);
    assert.equal(live.destination, `${server.host}:${server.httpPort}`);
    assert.equal(live.subflows.length, 2, `two subflows: ${JSON.stringify(live.subflows)}`);
    assert.ok((await nstat(tb(), 'proxy', 'MPTcpExtMPJoinAckRx')) > synRx, 'a join was accepted');

    // The legacy server: plain TCP, from the proxy's address, never from the client.
    assert.deepEqual([...serverPeers], [tb().addr.proxyServerSide], 'the server sees the proxy only');
    assert.equal(serverMptcp.trim(), '', 'no MPTCP socket on the server');
    assert.equal(await nstat(tb(), 'server', 'MPTcpExtMPCapableSYNRX'), 0, 'no MPTCP SYN reached the server');

    const line = await px.waitForLog((l) => l.message === 'connection' && l.protocol === 'transparent' && l.listener === 'tp' && (l.bytesOut as number) >= BYTES);
    assert.equal(line.result, 'ok');
    assert.equal(line.mptcp, true);
    assert.equal(line.subflows, 2);
    assert.equal(line.upstream, server.host);

    // Both client paths carried a real share of the download.
    const afterCounters = await tb().pathCounters();
    const rx = afterCounters.map((c, i) => c.rxBytes - before[i]!.rxBytes);
    t.diagnostic(`download ${BYTES} B in ${r.timeTotal.toFixed(2)} s = ${r.mbitPerSec.toFixed(1)} Mbit/s; client path rx bytes ${rx.join(' / ')}`);
    for (const [i, bytes] of rx.entries()) assert.ok(bytes > BYTES * 0.2, `path${i + 1} carried ${bytes} of ${BYTES} bytes`);
  });

  test('another redirected port works single-path: the kernel refuses a join on a port other than the listener’s', async () => {
    const mismatch = await nstat(tb(), 'proxy', 'MPTcpExtMismatchPortSynRx');
    const sock = await tb().bridge('client', server.host, server.echoPort, { mptcp: true });
    const c = net.connect(sock);
    const got: Buffer[] = [];
    c.on('data', (d: Buffer) => got.push(d));
    for (const chunk of patternChunks(5, 2_000_000)) if (!c.write(chunk)) await once(c, 'drain');
    // Keep the connection up long enough for the client's join attempt.
    await sleep(500);
    c.end();
    await once(c, 'close');
    assert.equal(Buffer.concat(got).length, 2_000_000);
    assert.equal(createHash('sha256').update(Buffer.concat(got)).digest('hex'), patternSha256(5, 2_000_000), 'echo byte-identical');
    const line = await px.waitForLog((l) => l.message === 'connection' && l.listener === 'tp-any' && l.destination === `${server.host}:${server.echoPort}`);
    assert.equal(line.result, 'ok');
    assert.equal(line.mptcp, true);
    assert.equal(line.subflows, 1, 'no second subflow on a foreign port');
    assert.ok((await nstat(tb(), 'proxy', 'MPTcpExtMismatchPortSynRx')) > mismatch, 'the join was refused for its port');
  });

  test('refusals reset the client with stable codes; the listener is not a proxy port; the proxy stays up', async () => {
    // Redirected, but the port is not in access.connectPorts.
    const denied = await curl(tb(), { url: `http://${server.host}:${DENIED_PORT}/`, timeoutMs: 10_000 });
    assert.notEqual(denied.exitCode, 0);
    // The reset can land before curl sees its connect complete ("Couldn't connect") or after ("reset").
    assert.match(denied.errorMessage, /reset|Recv failure|Couldn't connect/i, denied.errorMessage);
    const portLine = await px.waitForLog((l) => l.message === 'refused' && l.protocol === 'transparent' && l.code === 'MPX_PORT_DENIED');
    assert.equal(portLine.destination, `${server.host}:${DENIED_PORT}`);

    // Dialled directly (not redirected: the proxy's own addresses are never diverted), as a
    // plain connection and as an HTTP proxy: the destination is the listener itself, a loop.
    const direct = await curl(tb(), { url: `http://${tb().addr.proxy1}:${ANY_PORT}/`, timeoutMs: 10_000 });
    assert.notEqual(direct.exitCode, 0);
    const asProxy = await curl(tb(), { url: server.url('/bytes/10'), proxy: { kind: 'http', host: tb().addr.proxy1, port: ANY_PORT }, timeoutMs: 10_000 });
    assert.notEqual(asProxy.exitCode, 0);
    assert.notEqual(asProxy.httpCode, 200);
    const loops = (): typeof px.logs => px.logs.filter((l) => l.message === 'refused' && l.protocol === 'transparent' && l.code === 'MPX_DEST_DENIED');
    for (let i = 0; i < 50 && loops().length < 2; i++) await sleep(100);
    assert.equal(loops().length, 2, 'both direct connections refused as loops');
    for (const l of loops()) assert.match(String(l.detail), /proxy itself/);

    const metrics = await inProxy(tb(), ['curl', '-sS', '--noproxy', '*', `http://${METRICS}/metrics`]);
    assert.ok(metricValue(metrics, 'mptcp_proxy_errors_total', 'code="MPX_PORT_DENIED"') >= 1);
    assert.ok(metricValue(metrics, 'mptcp_proxy_errors_total', 'code="MPX_DEST_DENIED"') >= 2);
    assert.equal(px.proc.exitCode, null, 'still running');

    // And it still converts.
    const ok = await curl(tb(), { url: server.url('/bytes/1000?seed=3') });
    assert.equal(ok.exitCode, 0, ok.errorMessage);
    assert.equal(ok.sha256, patternSha256(3, 1000));
  });

  test('SIGHUP replaces the rules in one transaction; a download running through them survives', async () => {
    const installs = (): number => px.logs.filter((l) => l.message === 'transparent mode: TPROXY rules installed').length;
    const download = curl(tb(), { url: server.url('/bytes/6000000?seed=21'), extraArgs: ['--limit-rate', '3M'], timeoutMs: 30_000 });
    await sleep(700);
    const n = installs();
    writeConfig([15003]);
    px.proc.kill('SIGHUP');
    for (let i = 0; i < 50 && installs() === n; i++) await sleep(100);
    assert.equal(installs(), n + 1, 'rules re-installed once');
    const s = await kernelState(tb());
    assert.match(s.table ?? '', /tcp dport \{[^}]*\b15003\b[^}]*\} tproxy ip to :15001 /, 'the new port is diverted');
    assert.equal(s.rule && s.route, true);
    const r = await download;
    assert.equal(r.exitCode, 0, r.errorMessage);
    assert.equal(r.sha256, patternSha256(21, 6_000_000), 'byte-identical across the reload');
  });
});

describe('transparent mode: kernel state after a crash', { timeout: 60_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 0 });

  test('SIGKILL leaves the state; `mptcp-proxy cleanup` removes it', async () => {
    const px = await tb().startProxy(['--transparent', '0.0.0.0:15080', '--allow-client', tb().cidr, '--no-metrics', '--log-format', 'json']);
    await px.waitForLog((l) => l.message === 'transparent mode: TPROXY rules installed');
    px.proc.kill('SIGKILL');
    await px.exited;
    const left = await kernelState(tb());
    assert.ok(left.table && left.rule && left.route, `state left after SIGKILL: ${JSON.stringify(left)}`);
    const out = await inProxy(tb(), [process.execPath, CLI_ENTRY, 'cleanup']);
    assert.match(out, new RegExp(`nft table inet ${TPROXY_TABLE}`));
    assert.deepEqual(await kernelState(tb()), { table: null, rule: false, route: false });
  });

  test('a later start without transparent listeners removes a crashed run’s diversion', async () => {
    const crashed = await tb().startProxy(['--transparent', '0.0.0.0:15080', '--allow-client', tb().cidr, '--no-metrics', '--log-format', 'json']);
    await crashed.waitForLog((l) => l.message === 'transparent mode: TPROXY rules installed');
    crashed.proc.kill('SIGKILL');
    await crashed.exited;
    assert.ok((await kernelState(tb())).table, 'left by the SIGKILL');
    const px = await tb().startProxy(['--http', `${tb().addr.proxy1}:3128`, '--allow-client', tb().cidr, '--no-metrics', '--log-format', 'json']);
    try {
      await px.waitForLog((l) => l.message === 'kernel state: removed what an earlier run left' && (l.removed as string[]).includes(`nft table inet ${TPROXY_TABLE}`));
      assert.deepEqual(await kernelState(tb()), { table: null, rule: false, route: false });
    } finally {
      assert.equal((await px.stop()).code, 0);
    }
  });
});

/** IPv6 beside the testbed's IPv4: the same topology and per-source routing, ULA addresses. */
async function addIpv6(tb: Testbed): Promise<{ client1: string; server: string; cidr: string }> {
  const p = `fd00:${tb.octet.toString(16)}`;
  const a = { c1: `${p}:1::2`, c2: `${p}:2::2`, p1: `${p}:1::1`, p2: `${p}:2::1`, ps: `${p}:3::1`, s: `${p}:3::2` };
  const batch: [Parameters<Testbed['exec']>[0], string[]][] = [
    ['client', [`addr add ${a.c1}/64 dev ${tb.ifaces.client1} nodad`, `addr add ${a.c2}/64 dev ${tb.ifaces.client2} nodad`]],
    ['client', [`route add default via ${a.p1} dev ${tb.ifaces.client1}`, `route add default via ${a.p2} dev ${tb.ifaces.client2} table 102`, `rule add from ${a.c2} table 102 pref 100`]],
    ['proxy', [`addr add ${a.p1}/64 dev ${tb.ifaces.proxy1} nodad`, `addr add ${a.p2}/64 dev ${tb.ifaces.proxy2} nodad`, `addr add ${a.ps}/64 dev ${tb.ifaces.proxyServerSide} nodad`]],
    ['server', [`addr add ${a.s}/64 dev ${tb.ifaces.server} nodad`, `route add default via ${a.ps}`]],
  ];
  for (const [ns, lines] of batch) {
    const r = await tb.exec(ns, ['ip', '-6', '-batch', '-'], { input: lines.join('\n') + '\n' });
    assert.equal(r.code, 0, r.stderr);
  }
  // The client's path2 endpoint for IPv6 joins (the testbed's own is IPv4).
  assert.equal((await tb.exec('client', ['ip', 'mptcp', 'endpoint', 'add', a.c2, 'dev', tb.ifaces.client2, 'subflow'])).code, 0);
  return { client1: a.c1, server: a.s, cidr: `${p}::/32` };
}

describe('transparent mode over IPv6 (IPV6_TRANSPARENT, tproxy ip6, ip -6 rules)', { timeout: 60_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 50 });

  test('a plain curl over IPv6 downloads byte-identical over two subflows; the -6 rule goes with SIGTERM', async (t) => {
    const v6 = await addIpv6(tb());
    const srv = tb().spawnNode('server', 'dist/testkit/legacy-server.js', [v6.server]);
    const port = (JSON.parse(await firstLine(srv, 10_000)) as { http: number }).http;
    const px = await tb().startProxy(['--transparent', `[::1]:${port}`, '--allow-client', v6.cidr, '--no-metrics', '--log-format', 'json']);
    let exited = false;
    try {
      await px.waitForLog((l) => l.message === 'transparent mode: TPROXY rules installed');
      const table = (await tb().exec('proxy', ['nft', 'list', 'table', 'inet', TPROXY_TABLE])).stdout;
      assert.match(table, new RegExp(`ip6 saddr ${v6.cidr} tcp dport ${port} tproxy ip6 to \\[::1\\]:${port} `), 'only the allowed IPv6 clients are diverted');
      assert.match(await inProxy(tb(), ['ip', '-6', 'rule', 'show']), new RegExp(`^${TPROXY_PREF}:.*fwmark 0x4d500040`, 'm'));
      const bytes = 10_000_000;
      const r = await curl(tb(), { url: `http://[${v6.server}]:${port}/bytes/${bytes}?seed=6`, timeoutMs: 30_000 });
      assert.equal(r.exitCode, 0, r.errorMessage);
      assert.equal(r.sha256, patternSha256(6, bytes));
      t.diagnostic(`IPv6: ${bytes} B at ${r.mbitPerSec.toFixed(1)} Mbit/s`);
      const line = await px.waitForLog((l) => l.message === 'connection' && l.protocol === 'transparent');
      assert.equal(line.client, `[${v6.client1}]:${String(r.writeOut.local_port)}`);
      assert.equal(line.destination, `[${v6.server}]:${port}`);
      assert.equal(line.mptcp, true);
      assert.equal(line.subflows, 2);
      assert.equal((await px.stop()).code, 0);
      exited = true;
      assert.doesNotMatch(await inProxy(tb(), ['ip', '-6', 'rule', 'show']), new RegExp(`^${TPROXY_PREF}:`, 'm'));
      assert.doesNotMatch(await inProxy(tb(), ['ip', '-6', 'route', 'show', 'table', 'all']), new RegExp(`table ${TPROXY_PREF}`));
    } finally {
      if (!exited) await px.stop();
    }
  });
});

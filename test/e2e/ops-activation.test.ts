/**
 * Socket activation as systemd does it: a small python3 wrapper (standing in for PID 1) makes an
 * MPTCP listening socket, puts it on fd 3, sets LISTEN_FDS=1, LISTEN_PID=its own pid and
 * LISTEN_FDNAMES, and execs node (exec keeps the pid). The proxy must serve on that very socket
 * (its config names the same address, so binding its own would fail with EADDRINUSE), log that
 * it is MPTCP, carry MPTCP clients with both subflows, keep the socket across SIGHUP, pass it to
 * --workers 2, warn about a socket no listener takes, and refuse a passed fd that is not a
 * listening stream socket.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connectionLogFor, curl } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternSha256 } from '../../testkit/pattern';
import { useTestbed, type ProxyHandle, type Testbed } from '../../testkit/testbed';
import { pickPorts } from '../ops/ports';

/** argv: KIND HOST PORT FDNAME -- PROGRAM ARGS...; KIND is mptcp, tcp or udp. */
const WRAPPER = `
import os, socket, sys
kind, host, port, name = sys.argv[1:5]
prog = sys.argv[6:]
if kind == 'udp':
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262 if kind == 'mptcp' else 6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, int(port)))
if kind != 'udp':
    s.listen(128)
fd = s.detach()
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)  # fd 3 survives the exec
os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=name)
os.execv(prog[0], prog)
`;
import { sleep } from '../../testkit/sleep';

describe('socket activation (LISTEN_FDS)', { timeout: 180_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 0 });
  let server: LegacyServer;
  let wrapper: string;
  before(async () => {
    server = await startLegacyServer(tb());
    wrapper = path.join(tb().tmpDir, 'activate.py');
    fs.writeFileSync(wrapper, WRAPPER);
  });

  const config = (t: Testbed, port: number, name = 'http', extra = ''): string => {
    const file = path.join(t.tmpDir, `act-${port}.yaml`);
    fs.writeFileSync(
      file,
      `listeners:\n  - { name: ${name}, protocol: http, listen: "${t.addr.proxy1}:${port}" }\naccess:\n  allowClients: ["${t.cidr}"]\nmetrics: { enabled: false }\nlog: { format: json }\n${extra}`,
    );
    return file;
  };

  const activated = async (t: Testbed, kind: string, port: number, fdName: string, args: string[]): Promise<ProxyHandle> => {
    const px = await t.startProxy(args, { argvPrefix: ['python3', wrapper, kind, t.addr.proxy1, String(port), fdName, '--'], waitReady: false });
    const deadline = Date.now() + 15_000;
    while (!px.logs.some((l) => l.message === 'listening' || l.message === 'workers ready')) {
      if (px.proc.exitCode !== null || px.proc.signalCode !== null) break;
      if (Date.now() > deadline) throw new Error(`proxy did not start: ${px.stderr.slice(-2000)}`);
      await sleep(50);
    }
    return px;
  };

  const fetchVia = async (t: Testbed, port: number, seed: number): Promise<Awaited<ReturnType<typeof curl>>> => {
    const r = await curl(t, { url: server.url(`/bytes/200000?seed=${seed}`), proxy: { kind: 'http', host: t.addr.proxy1, port } });
    assert.equal(r.exitCode, 0, `curl: ${r.errorMessage} ${r.stderr}`);
    assert.equal(r.sha256, patternSha256(seed, 200_000));
    return r;
  };

  test('an MPTCP socket on fd 3 named after the listener is served: MPTCP clients with two subflows, kept across SIGHUP', async () => {
    const t = tb();
    const [port] = pickPorts(1);
    const px = await activated(t, 'mptcp', port, 'http', ['--config', config(t, port)]);
    try {
      const used = await px.waitForLog((l) => l.message === 'socket activation: using a passed socket', 5_000);
      assert.equal(used.protocol, 'mptcp', JSON.stringify(used));
      assert.equal(used.address, `${t.addr.proxy1}:${port}`);
      const listening = await px.waitForLog((l) => l.message === 'listening');
      assert.equal(listening.mptcp, true);
      const r = await fetchVia(t, port, 1);
      const line = await connectionLogFor(px, r);
      assert.equal(line.mptcp, true, JSON.stringify(line));
      assert.ok(Number(line.subflows) >= 2, `subflows: ${JSON.stringify(line)}`);
      px.proc.kill('SIGHUP');
      await px.waitForLog((l) => l.message === 'config reloaded');
      await fetchVia(t, port, 2);
      assert.equal(px.logs.filter((l) => l.message === 'socket activation: using a passed socket').length, 1, 'the socket was taken again on an unchanged reload');
      // Removed by a reload, the listener frees the socket; added back, it takes it again.
      fs.writeFileSync(config(t, port), fs.readFileSync(config(t, port), 'utf8').replace('name: http, protocol: http', 'name: http, protocol: mixed'));
      px.proc.kill('SIGHUP');
      await px.waitForLog(() => px.logs.filter((x) => x.message === 'config reloaded').length >= 2);
      assert.equal(px.logs.filter((l) => l.message === 'socket activation: using a passed socket').length, 2);
      await fetchVia(t, port, 3);
    } finally {
      const exit = await px.stop();
      assert.equal(exit.code, 0, px.stderr.slice(-2000));
    }
  });

  test('--workers 2 share the passed socket', async () => {
    const t = tb();
    const [port] = pickPorts(1);
    const px = await activated(t, 'mptcp', port, 'http', ['--config', config(t, port), '--workers', '2']);
    try {
      await px.waitForLog((l) => l.message === 'workers ready', 15_000);
      const used = px.logs.filter((l) => l.message === 'socket activation: using a passed socket');
      assert.equal(used.length, 2, `each worker takes the socket: ${JSON.stringify(used)}`);
      assert.ok(used.every((l) => l.protocol === 'mptcp'));
      for (let i = 0; i < 6; i++) await fetchVia(t, port, 10 + i);
      // The workers got the sockets from the supervisor, not from LISTEN_* (cleared before forking).
      const children = fs.readFileSync(`/proc/${px.proc.pid}/task/${px.proc.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      assert.ok(children.length >= 2, `worker pids: ${children.join(' ')}`);
      for (const pid of children) {
        const env = fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
        assert.ok(!env.some((e) => /^LISTEN_(FDS|PID|FDNAMES)=/.test(e)), `worker ${pid} has LISTEN_* in its environment`);
      }
    } finally {
      const exit = await px.stop(8_000);
      assert.equal(exit.code, 0, px.stderr.slice(-2000));
    }
  });

  test('a passed TCP socket is used with a warning; an unmatched one is reported; a UDP one is refused', async () => {
    const t = tb();
    const [p1, p2, p3, own] = pickPorts(4);
    const tcp = await activated(t, 'tcp', p1, 'http', ['--config', config(t, p1)]);
    try {
      const warn = await tcp.waitForLog((l) => l.message === 'listening with plain TCP, not MPTCP');
      assert.equal(warn.reason, 'the passed socket is TCP');
      const r = await fetchVia(t, p1, 20);
      const line = await connectionLogFor(tcp, r);
      assert.equal(line.mptcp, false, 'a TCP listener cannot carry MPTCP');
    } finally {
      await tcp.stop();
    }
    const unmatched = await activated(t, 'mptcp', p2, 'other', ['--config', config(t, own)]);
    try {
      const w = await unmatched.waitForLog((l) => String(l.message).startsWith('socket activation: a passed socket matches no listener'));
      assert.equal(w.fdName, 'other');
      await fetchVia(t, own, 21);
    } finally {
      await unmatched.stop();
    }
    const udp = await activated(t, 'udp', p3, 'http', ['--config', config(t, p3)]);
    const exit = await udp.exited;
    assert.notEqual(exit.code, 0);
    assert.match(udp.stderr, /socket activation: fd 3 \(http\) cannot serve a listener: socket type 2, not SOCK_STREAM/);
  });
});

/**
 * A throw-away network of namespaces for end-to-end tests:
 *
 *   CLIENT ==path1== PROXY --- SERVER        (router: CLIENT ==2 paths== ROUTER ==2 paths== PROXY)
 *          ==path2==
 *
 * The client has two shaped paths (HTB egress, IFB+HTB ingress, all on the client side so the
 * proxy's own interfaces stay free for the steering engine), per-source routing so traffic from
 * its path2 address leaves on path2, and an MPTCP `subflow` endpoint on path2. The server side is
 * a plain TCP legacy network. Names and subnets are random per instance, so parallel runs by
 * other engineers never collide, and everything is removed by destroy() or, if the test process
 * is interrupted, by an exit hook.
 */
import { execFileSync, spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { killGroup, mustRun, run, type ExecOptions, type ExecResult } from './run';
import { sleep } from './sleep';

export type { ExecResult } from './run';

/** Repository root (this file runs from dist/testkit). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const CLI_ENTRY = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

export interface TestbedOptions {
  /** Rate of each client path, both directions (default 50). 0 = unshaped. */
  shapeMbit?: number;
  /** Put a forwarding ROUTER namespace between client and proxy (for router-mode sniffing). */
  router?: boolean;
  /** Client MPTCP add_addr_accepted limit. 0 (default) makes the subflow endpoint join the proxy's
   *  initial address over path2; > 0 with a plain subflow endpoint joins announced addresses from
   *  the default route's source, i.e. over path1 (see NOTES.md). */
  clientAddAddrAccepted?: number;
}

export type Role = 'client' | 'proxy' | 'server' | 'router';

export interface TestbedAddresses {
  client1: string;
  client2: string;
  proxy1: string;
  proxy2: string;
  /** The proxy's address on the legacy (server) side. */
  proxyServerSide: string;
  server: string;
  /** Router mode: the router's addresses facing the client on path1/path2. */
  router1?: string;
  router2?: string;
  /** /24 prefixes, e.g. "10.77.1.0/24". */
  path1Subnet: string;
  path2Subnet: string;
  serverSubnet: string;
}

export interface TestbedInterfaces {
  client1: string;
  client2: string;
  clientIfb1: string;
  clientIfb2: string;
  proxy1: string;
  proxy2: string;
  proxyServerSide: string;
  server: string;
  /** Router mode: router interfaces toward client (1, 2) and proxy (3, 4). */
  router?: [string, string, string, string];
}

export interface LinkCounters {
  rxBytes: number;
  txBytes: number;
}

export interface SpawnOpts {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Inherit stderr for debugging instead of piping it. */
  stdio?: 'pipe' | 'inherit';
}

export interface ProxyLogLine {
  level?: string;
  message?: string;
  [key: string]: unknown;
}

export interface ProxyExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ProxyHandle {
  proc: ChildProcess;
  /** Every stderr line that parsed as a JSON object, in order. */
  logs: ProxyLogLine[];
  /** All of stderr and stdout, raw. */
  readonly stderr: string;
  readonly stdout: string;
  /** HOST:PORT values of the listen flags, in flag order. */
  listens: { flag: string; host: string; port: number }[];
  exited: Promise<ProxyExit>;
  /** Resolves with the first log line matching pred (already logged or future). */
  waitForLog(pred: (l: ProxyLogLine) => boolean, timeoutMs?: number): Promise<ProxyLogLine>;
  /** SIGTERM, then SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<ProxyExit>;
}

export interface StartProxyOptions {
  /** Wait until every listen port accepts (default true). */
  waitReady?: boolean;
  readyTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Run the client-facing process under mptcpize (not needed: the proxy makes MPTCP sockets). */
  argvPrefix?: string[];
  /** The namespace to run in (default the proxy's; another instance's from addNamespace). */
  ns?: Role | string;
}

const LISTEN_FLAGS = new Set(['--http', '--socks', '--mixed', '--convert', '--metrics']);

/** "HOST:PORT" or "[v6]:PORT" → parts; null when not of that form. */
export function splitHostPort(s: string): { host: string; port: number } | null {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  return m ? { host: m[1], port: Number(m[2]) } : null;
}

function listenArgs(args: readonly string[]): { flag: string; host: string; port: number }[] {
  const out: { flag: string; host: string; port: number }[] = [];
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].split(/=(.*)/s, 2);
    if (!LISTEN_FLAGS.has(flag)) continue;
    const hp = splitHostPort(inline ?? args[i + 1] ?? '');
    if (hp) out.push({ flag, ...hp });
  }
  return out;
}

/** Live testbeds, for the exit hook. */
const live = new Set<Testbed>();
let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const tb of live) tb.destroySync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const tb of live) tb.destroySync();
      process.exit(128 + (os.constants.signals[sig] ?? 1));
    });
  }
}

export class Testbed {
  readonly id: string;
  readonly ns: { client: string; proxy: string; server: string; router?: string };
  readonly addr: TestbedAddresses;
  readonly ifaces: TestbedInterfaces;
  readonly shapeMbit: number;
  readonly octet: number;
  /** Temporary directory for unix sockets and files; removed by destroy(). */
  readonly tmpDir: string;
  private readonly procs = new Set<ChildProcess>();
  /** Namespaces added by addNamespace(), removed with the others. */
  private readonly extraNs: string[] = [];
  private readonly bridges = new Map<string, Promise<string>>();
  private destroyed = false;

  private constructor(readonly opts: Required<TestbedOptions>) {
    this.id = randomBytes(3).toString('hex');
    this.octet = randomInt(16, 250);
    const n = (role: string): string => `mpx-${role}-${this.id}`;
    this.ns = { client: n('cli'), proxy: n('prx'), server: n('srv'), ...(opts.router ? { router: n('rtr') } : {}) };
    const o = this.octet;
    const r = opts.router;
    this.addr = {
      client1: `10.${o}.1.2`,
      client2: `10.${o}.2.2`,
      proxy1: r ? `10.${o}.11.2` : `10.${o}.1.1`,
      proxy2: r ? `10.${o}.12.2` : `10.${o}.2.1`,
      proxyServerSide: `10.${o}.3.1`,
      server: `10.${o}.3.2`,
      ...(r ? { router1: `10.${o}.1.1`, router2: `10.${o}.2.1` } : {}),
      path1Subnet: `10.${o}.1.0/24`,
      path2Subnet: `10.${o}.2.0/24`,
      serverSubnet: `10.${o}.3.0/24`,
    };
    this.ifaces = {
      client1: 'c1',
      client2: 'c2',
      clientIfb1: 'ifb1',
      clientIfb2: 'ifb2',
      proxy1: 'p1',
      proxy2: 'p2',
      proxyServerSide: 'ps',
      server: 's0',
      ...(r ? { router: ['r1', 'r2', 'r3', 'r4'] as [string, string, string, string] } : {}),
    };
    this.shapeMbit = opts.shapeMbit;
    this.tmpDir = mkdtempSync(path.join(os.tmpdir(), `mpx-tb-${this.id}-`));
  }

  static async create(opts: TestbedOptions = {}): Promise<Testbed> {
    installExitHooks();
    const tb = new Testbed({ shapeMbit: opts.shapeMbit ?? 50, router: opts.router ?? false, clientAddAddrAccepted: opts.clientAddAddrAccepted ?? 0 });
    live.add(tb);
    try {
      await tb.build();
    } catch (e) {
      await tb.destroy();
      throw e;
    }
    return tb;
  }

  /** A /16 covering every testbed address (for --allow-client). */
  get cidr(): string {
    return `10.${this.octet}.0.0/16`;
  }

  private namespaces(): string[] {
    return [this.ns.client, this.ns.proxy, this.ns.server, ...(this.ns.router ? [this.ns.router] : []), ...this.extraNs];
  }

  /**
   * One more namespace (e.g. a second proxy instance), set up like the others (rp_filter off,
   * MPTCP on, lo up) and removed by destroy(); the test links it. Returns its name.
   */
  async addNamespace(role: string): Promise<string> {
    const n = `mpx-${role}-${this.id}`;
    await mustRun(['ip', 'netns', 'add', n]);
    this.extraNs.push(n);
    await this.prepareNamespace(n);
    return n;
  }

  private async prepareNamespace(n: string): Promise<void> {
    // rp_filter off before any interface exists, so every new interface inherits it: replies
    // and joins arrive on a path other than the one the route to their source points at.
    await this.sysctl(n, { 'net.ipv4.conf.all.rp_filter': 0, 'net.ipv4.conf.default.rp_filter': 0, 'net.mptcp.enabled': 1 });
    await this.ipBatch(n, ['link set lo up']);
  }

  private async ipBatch(ns: string, lines: string[]): Promise<void> {
    await mustRun(['ip', '-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' });
  }

  private async tcBatch(ns: string, lines: string[]): Promise<void> {
    await mustRun(['tc', '-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' });
  }

  private async sysctl(ns: string, settings: Record<string, string | number>): Promise<void> {
    await mustRun(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)]);
  }

  private async build(): Promise<void> {
    const { ns, addr: a, ifaces: i, octet: o } = this;
    for (const n of this.namespaces()) {
      await mustRun(['ip', 'netns', 'add', n]);
      await this.prepareNamespace(n);
    }
    // Client-side peers: the proxy directly, or the router.
    const near = ns.router ?? ns.proxy;
    const [n1, n2] = ns.router ? [i.router![0], i.router![1]] : [i.proxy1, i.proxy2];
    const [gw1, gw2] = ns.router ? [a.router1!, a.router2!] : [a.proxy1, a.proxy2];
    await this.ipBatch(ns.client, [
      `link add ${i.client1} type veth peer name ${n1} netns ${near}`,
      `link add ${i.client2} type veth peer name ${n2} netns ${near}`,
      `addr add ${a.client1}/24 dev ${i.client1}`,
      `addr add ${a.client2}/24 dev ${i.client2}`,
      `link set ${i.client1} up`,
      `link set ${i.client2} up`,
    ]);
    await this.ipBatch(near, [`addr add ${gw1}/24 dev ${n1}`, `addr add ${gw2}/24 dev ${n2}`, `link set ${n1} up`, `link set ${n2} up`]);
    if (ns.router) {
      const [r3, r4] = [i.router![2], i.router![3]];
      await this.ipBatch(ns.router, [
        `link add ${r3} type veth peer name ${i.proxy1} netns ${ns.proxy}`,
        `link add ${r4} type veth peer name ${i.proxy2} netns ${ns.proxy}`,
        `addr add 10.${o}.11.1/24 dev ${r3}`,
        `addr add 10.${o}.12.1/24 dev ${r4}`,
        `link set ${r3} up`,
        `link set ${r4} up`,
      ]);
      await this.sysctl(ns.router, { 'net.ipv4.ip_forward': 1 });
      // What arrives on client path2 leaves on proxy path2 whatever its destination address (a
      // join to the proxy's path1 address included), so the two paths stay apart end to end.
      await this.ipBatch(ns.router, [`route add default via ${a.proxy2} dev ${r4} table 202`, `rule add iif ${i.router![1]} table 202 pref 100`]);
      await this.ipBatch(ns.proxy, [
        `addr add ${a.proxy1}/24 dev ${i.proxy1}`,
        `addr add ${a.proxy2}/24 dev ${i.proxy2}`,
        `link set ${i.proxy1} up`,
        `link set ${i.proxy2} up`,
        // Replies to each client path go back over the matching router path.
        `route add ${a.path1Subnet} via 10.${o}.11.1 dev ${i.proxy1}`,
        `route add ${a.path2Subnet} via 10.${o}.12.1 dev ${i.proxy2}`,
      ]);
    }
    // Per-source routing: traffic from the path2 address leaves on path2, the rest on path1.
    await this.ipBatch(ns.client, [
      `route add default via ${gw1} dev ${i.client1}`,
      `route add default via ${gw2} dev ${i.client2} table 102`,
      `rule add from ${a.client2} table 102 pref 100`,
      `mptcp limits set subflows 2 add_addr_accepted ${this.opts.clientAddAddrAccepted}`,
      `mptcp endpoint add ${a.client2} dev ${i.client2} subflow`,
    ]);
    await this.ipBatch(ns.proxy, [
      `link add ${i.proxyServerSide} type veth peer name ${i.server} netns ${ns.server}`,
      `addr add ${a.proxyServerSide}/24 dev ${i.proxyServerSide}`,
      `link set ${i.proxyServerSide} up`,
      `mptcp limits set subflows 4 add_addr_accepted 4`,
    ]);
    await this.ipBatch(ns.server, [`addr add ${a.server}/24 dev ${i.server}`, `link set ${i.server} up`, `route add default via ${a.proxyServerSide}`]);
    if (this.shapeMbit > 0) await this.shapeClient();
  }

  /** HTB egress on each client veth, and ingress redirected to an IFB with the same HTB. */
  private async shapeClient(): Promise<void> {
    const i = this.ifaces;
    const paths: [string, string][] = [
      [i.client1, i.clientIfb1],
      [i.client2, i.clientIfb2],
    ];
    await this.ipBatch(
      this.ns.client,
      paths.flatMap(([, ifb]) => [`link add ${ifb} type ifb`, `link set ${ifb} up`]),
    );
    const rate = `${this.shapeMbit}mbit`;
    // Explicit quantum: HTB's derived one is "big" at these rates. A 1000-packet pfifo leaf,
    // because an IFB's own txqueuelen (32) would drop bursts long before the rate limit.
    const htb = (dev: string): string[] => [
      `qdisc add dev ${dev} root handle 1: htb default 10`,
      `class add dev ${dev} parent 1: classid 1:10 htb rate ${rate} ceil ${rate} quantum 15140`,
      `qdisc add dev ${dev} parent 1:10 handle 10: pfifo limit 1000`,
    ];
    await this.tcBatch(
      this.ns.client,
      paths.flatMap(([dev, ifb]) => [
        ...htb(dev),
        `qdisc add dev ${dev} handle ffff: ingress`,
        `filter add dev ${dev} parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev ${ifb}`,
        ...htb(ifb),
      ]),
    );
  }

  private nsOf(role: Role | string): string {
    if (role === 'client' || role === 'proxy' || role === 'server') return this.ns[role];
    if (role === 'router') {
      if (!this.ns.router) throw new Error('testbed has no router namespace');
      return this.ns.router;
    }
    return role;
  }

  /** Run argv inside a namespace (role name or namespace name) to completion. */
  exec(ns: Role | string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return run(['ip', 'netns', 'exec', this.nsOf(ns), ...argv], opts);
  }

  /** Start argv inside a namespace; killed (with its process group) by destroy(). */
  spawn(ns: Role | string, argv: readonly string[], opts: SpawnOpts = {}): ChildProcess {
    if (this.destroyed) throw new Error('testbed destroyed');
    // pdeathsig: helpers die with the test process even when it is SIGKILLed (no exit hook runs then).
    const child = spawnChild('ip', ['netns', 'exec', this.nsOf(ns), 'setpriv', '--pdeathsig', 'KILL', '--', ...argv], {
      cwd: opts.cwd ?? REPO_ROOT,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', opts.stdio === 'inherit' ? 'inherit' : 'pipe'],
      detached: true,
    });
    this.procs.add(child);
    child.on('exit', () => this.procs.delete(child));
    return child;
  }

  /** Run a node script (path relative to the repo root) inside a namespace. */
  spawnNode(ns: Role | string, script: string, args: readonly string[] = [], opts: SpawnOpts & { mptcpize?: boolean } = {}): ChildProcess {
    const prefix = opts.mptcpize ? ['mptcpize', 'run'] : [];
    return this.spawn(ns, [...prefix, process.execPath, path.resolve(REPO_ROOT, script), ...args], opts);
  }

  /** Byte counters of an interface inside a namespace. */
  async counters(ns: Role | string, dev: string): Promise<LinkCounters> {
    const out = await mustRun(['ip', '-n', this.nsOf(ns), '-s', '-j', 'link', 'show', 'dev', dev]);
    const j = JSON.parse(out) as { stats64: { rx: { bytes: number }; tx: { bytes: number } } }[];
    return { rxBytes: j[0].stats64.rx.bytes, txBytes: j[0].stats64.tx.bytes };
  }

  /** Client-side counters of both paths. */
  async pathCounters(): Promise<[LinkCounters, LinkCounters]> {
    return [await this.counters('client', this.ifaces.client1), await this.counters('client', this.ifaces.client2)];
  }

  /**
   * Wait until both client paths are quiet (under `maxBytes` in `windowMs`), so that a measurement
   * counts its own flow and not the tail a previous test's flow still has queued in the shapers.
   */
  async quietPaths(o: { windowMs?: number; maxBytes?: number; timeoutMs?: number } = {}): Promise<void> {
    const windowMs = o.windowMs ?? 200;
    const maxBytes = o.maxBytes ?? 20_000;
    const deadline = Date.now() + (o.timeoutMs ?? 5_000);
    const total = (c: [LinkCounters, LinkCounters]): number[] => c.map((x) => x.rxBytes + x.txBytes);
    let prev = total(await this.pathCounters());
    for (;;) {
      await new Promise((r) => setTimeout(r, windowMs));
      const cur = total(await this.pathCounters());
      if (cur.every((b, i) => b - prev[i] < maxBytes)) return;
      if (Date.now() > deadline) throw new Error(`client paths still busy after ${o.timeoutMs ?? 5_000} ms: ${cur.map((b, i) => b - prev[i]).join(' / ')} B in the last ${windowMs} ms`);
      prev = cur;
    }
  }

  /** Load an nftables script inside a namespace (e.g. a drop rule that blackholes a port). */
  async nft(ns: Role | string, script: string): Promise<void> {
    await mustRun(['ip', 'netns', 'exec', this.nsOf(ns), 'nft', '-f', '-'], { input: script });
  }

  /** Is something listening on port (TCP) inside ns? */
  async listening(ns: Role | string, port: number): Promise<boolean> {
    const r = await this.exec(ns, ['ss', '-Hltn', `sport = :${port}`]);
    return r.code === 0 && r.stdout.trim().length > 0;
  }

  /**
   * A unix socket path (in the shared file system) that connects, from inside `ns`, to
   * host:port: lets in-process Node clients (http.request({ socketPath })) act from a namespace.
   * Each accepted unix connection becomes its own TCP (or, with mptcp, MPTCP) connection.
   */
  bridge(ns: Role | string, host: string, port: number, opts: { mptcp?: boolean } = {}): Promise<string> {
    const key = `${this.nsOf(ns)} ${host} ${port} ${opts.mptcp ? 'mptcp' : 'tcp'}`;
    let p = this.bridges.get(key);
    if (!p) {
      const sock = path.join(this.tmpDir, `bridge-${this.bridges.size}.sock`);
      const child = this.spawnNode(ns, 'dist/testkit/ns-bridge.js', [sock, host, String(port)], { mptcpize: opts.mptcp });
      p = firstLine(child, 10_000).then((line) => {
        if (line !== 'ready') throw new Error(`bridge did not start: ${line}`);
        return sock;
      });
      this.bridges.set(key, p);
    }
    return p;
  }

  /** Run the proxy CLI inside the proxy namespace. */
  async startProxy(args: string[], opts: StartProxyOptions = {}): Promise<ProxyHandle> {
    const ns = opts.ns ?? 'proxy';
    // MPTCP_PROXY_TEST_FAST_PATH=on|off runs the suite's proxies with that relay.fastPath.
    const fastPath = process.env.MPTCP_PROXY_TEST_FAST_PATH;
    const forced = fastPath && !args.includes('--fast-path') ? ['--fast-path', fastPath] : [];
    const child = this.spawn(ns, [...(opts.argvPrefix ?? []), process.execPath, CLI_ENTRY, ...args, ...forced], { env: opts.env });
    const logs: ProxyLogLine[] = [];
    const waiters: { pred: (l: ProxyLogLine) => boolean; resolve: (l: ProxyLogLine) => void }[] = [];
    let stderr = '';
    let stdout = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    const rl = readline.createInterface({ input: child.stderr! });
    rl.on('line', (line) => {
      stderr += line + '\n';
      const parsed = parseJsonObject(line);
      if (!parsed) return;
      logs.push(parsed);
      for (const w of [...waiters]) {
        if (w.pred(parsed)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(parsed);
        }
      }
    });
    const exited = new Promise<ProxyExit>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    // 'exit' may come before the last stderr lines are read: wait for the stream too.
    const closed = new Promise<ProxyExit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    const handle: ProxyHandle = {
      proc: child,
      logs,
      get stderr() {
        return stderr;
      },
      get stdout() {
        return stdout;
      },
      listens: listenArgs(args),
      exited: closed,
      waitForLog(pred, timeoutMs = 5000) {
        const found = logs.find(pred);
        if (found) return Promise.resolve(found);
        return new Promise((resolve, reject) => {
          const w = { pred, resolve: (l: ProxyLogLine) => (clearTimeout(t), resolve(l)) };
          const t = setTimeout(() => {
            waiters.splice(waiters.indexOf(w), 1);
            reject(new Error(`no matching proxy log line within ${timeoutMs} ms; stderr:\n${stderr.slice(-4000)}`));
          }, timeoutMs);
          waiters.push(w);
        });
      },
      async stop(graceMs = 3000) {
        if (child.exitCode !== null || child.signalCode !== null) return closed;
        child.kill('SIGTERM');
        const t = setTimeout(() => child.pid && killGroup(child.pid, 'SIGKILL'), graceMs);
        const r = await closed;
        clearTimeout(t);
        return r;
      },
    };
    void exited;
    if (opts.waitReady ?? true) {
      const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000);
      const exitedEarly = closed.then(() => true);
      for (const l of handle.listens) {
        for (;;) {
          if (await this.listening(ns, l.port)) break;
          const early = await Promise.race([exitedEarly, sleep(50).then(() => false)]);
          if (early) throw new Error(`proxy exited before ${l.flag} ${l.host}:${l.port} listened: code ${child.exitCode}; stderr:\n${stderr}`);
          if (Date.now() > deadline) {
            await handle.stop(500);
            throw new Error(`proxy ${l.flag} ${l.host}:${l.port} not listening after ${opts.readyTimeoutMs ?? 10_000} ms; stderr:\n${stderr}`);
          }
        }
      }
    }
    return handle;
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const procs = [...this.procs];
    for (const p of procs) if (p.pid) killGroup(p.pid, 'SIGTERM');
    const deadline = Date.now() + 1500;
    while ([...this.procs].length > 0 && Date.now() < deadline) await sleep(20);
    this.destroySync();
  }

  /** Synchronous teardown for exit hooks: kill everything left in our namespaces, delete them. */
  destroySync(): void {
    this.destroyed = true;
    live.delete(this);
    for (const p of this.procs) if (p.pid) killGroup(p.pid, 'SIGKILL');
    for (const n of this.namespaces()) {
      try {
        // Processes inside a namespace this testbed created are its own (helpers, tools).
        const pids = execFileSync('ip', ['netns', 'pids', n], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().split(/\s+/).filter(Boolean);
        for (const pid of pids) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      } catch {
        /* namespace never created */
      }
      try {
        execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    }
    rmSync(this.tmpDir, { recursive: true, force: true });
  }
}

export function createTestbed(opts: TestbedOptions = {}): Promise<Testbed> {
  return Testbed.create(opts);
}

/** Build a testbed, run fn, always destroy. */
export async function withTestbed<T>(opts: TestbedOptions, fn: (tb: Testbed) => Promise<T>): Promise<T> {
  const tb = await createTestbed(opts);
  try {
    return await fn(tb);
  } finally {
    await tb.destroy();
  }
}

/**
 * For node:test suites sharing one testbed: call inside describe(); the returned getter gives
 * the testbed in tests. `hooks` are node:test's before/after.
 */
export function useTestbed(hooks: { before: (fn: () => Promise<void>) => void; after: (fn: () => Promise<void>) => void }, opts: TestbedOptions = {}): () => Testbed {
  let tb: Testbed | undefined;
  hooks.before(async () => {
    tb = await createTestbed(opts);
  });
  hooks.after(async () => {
    await tb?.destroy();
  });
  return () => {
    if (!tb) throw new Error('testbed not built (before hook failed?)');
    return tb;
  };
}

function parseJsonObject(line: string): ProxyLogLine | null {
  if (!line.startsWith('{')) return null;
  try {
    const v: unknown = JSON.parse(line);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as ProxyLogLine) : null;
  } catch {
    return null;
  }
}

/** The first stdout line of a child (helper scripts announce readiness this way). */
export function firstLine(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const rl = readline.createInterface({ input: child.stdout! });
    const t = setTimeout(() => reject(new Error(`no output within ${timeoutMs} ms: ${err}`)), timeoutMs);
    rl.once('line', (line) => {
      clearTimeout(t);
      rl.close();
      // Keep draining: a paused pipe would eventually block the child.
      child.stdout?.resume();
      resolve(line);
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`exited (${code}) before its first line: ${err}`));
    });
  });
}

/**
 * Everything the bench measures, started on loopback with its own config files in a temp dir:
 * the origin (nginx under mptcpize; the "limit" is a client talking to it directly), mptcp-proxy
 * with each relay engine, and the peers (Dante, Squid, HAProxy, microsocks under mptcpize, and
 * a naive Node pipe relay). Each server starts once, on first use, and stops at the end.
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../testkit/testbed';
import { Daemon, NOFILE, freePort, have, waitPort, withNofile } from './proc';

/** How a client reaches the origin through a subject. */
export type ClientMode = 'direct' | 'forward' | 'connect' | 'socks5' | 'convert';
export type SubjectKind = 'limit' | 'ours' | 'peer';

export interface Subject {
  id: string;
  label: string;
  kind: SubjectKind;
  mode: ClientMode;
  /** Which server carries it ('origin' for the limit). */
  server: ServerName;
  /** Listener of that server the client talks to. */
  listener: Listener;
}

type Listener = 'http' | 'socks' | 'tcp' | 'convert';

export type ServerName = 'origin' | 'ours-splice' | 'ours-splice-w2' | 'ours-fast' | 'ours-stream' | 'dante' | 'squid' | 'haproxy' | 'microsocks' | 'node-pipe';

export const SUBJECTS: readonly Subject[] = [
  { id: 'limit', label: 'limit: MPTCP straight to nginx', kind: 'limit', mode: 'direct', server: 'origin', listener: 'tcp' },
  { id: 'ours-connect-splice', label: 'mptcp-proxy CONNECT splice', kind: 'ours', mode: 'connect', server: 'ours-splice', listener: 'http' },
  { id: 'ours-socks-splice', label: 'mptcp-proxy SOCKS5 splice', kind: 'ours', mode: 'socks5', server: 'ours-splice', listener: 'socks' },
  { id: 'ours-connect-splice-w2', label: 'mptcp-proxy CONNECT splice, 2 workers', kind: 'ours', mode: 'connect', server: 'ours-splice-w2', listener: 'http' },
  { id: 'ours-connect-fast', label: 'mptcp-proxy CONNECT native fast path', kind: 'ours', mode: 'connect', server: 'ours-fast', listener: 'http' },
  { id: 'ours-socks-fast', label: 'mptcp-proxy SOCKS5 native fast path', kind: 'ours', mode: 'socks5', server: 'ours-fast', listener: 'socks' },
  { id: 'ours-connect-stream', label: 'mptcp-proxy CONNECT stream', kind: 'ours', mode: 'connect', server: 'ours-stream', listener: 'http' },
  { id: 'ours-socks-stream', label: 'mptcp-proxy SOCKS5 stream', kind: 'ours', mode: 'socks5', server: 'ours-stream', listener: 'socks' },
  { id: 'ours-forward', label: 'mptcp-proxy HTTP forward', kind: 'ours', mode: 'forward', server: 'ours-splice', listener: 'http' },
  // Forward requests are handed from native to the TS front end once per connection.
  { id: 'ours-forward-fast', label: 'mptcp-proxy HTTP forward, fast path on', kind: 'ours', mode: 'forward', server: 'ours-fast', listener: 'http' },
  { id: 'dante', label: 'Dante SOCKS5 (mptcpize)', kind: 'peer', mode: 'socks5', server: 'dante', listener: 'socks' },
  { id: 'squid-forward', label: 'Squid HTTP forward (mptcpize)', kind: 'peer', mode: 'forward', server: 'squid', listener: 'http' },
  { id: 'squid-connect', label: 'Squid CONNECT (mptcpize)', kind: 'peer', mode: 'connect', server: 'squid', listener: 'http' },
  { id: 'haproxy', label: 'HAProxy tcp (mptcpize)', kind: 'peer', mode: 'direct', server: 'haproxy', listener: 'tcp' },
  { id: 'microsocks', label: 'microsocks SOCKS5 (mptcpize)', kind: 'peer', mode: 'socks5', server: 'microsocks', listener: 'socks' },
  { id: 'node-pipe', label: 'naive Node pipe() SOCKS5 (mptcpize)', kind: 'peer', mode: 'socks5', server: 'node-pipe', listener: 'socks' },
];

/**
 * RFC 8803 Convert (message and first bytes in the client's MPTCP SYN): a latency subject only,
 * since no bulk client speaks it. Its destination cannot be loopback (RFC 8803 §6.2.5), so its
 * echo server sits on CONVERT_DEST_ADDR, an RFC 2544 benchmarking address the latency workload
 * adds to lo of the bench's own namespace.
 */
export const CONVERT_SUBJECT: Subject = { id: 'ours-convert', label: 'mptcp-proxy Convert (RFC 8803, TFO) splice', kind: 'ours', mode: 'convert', server: 'ours-splice', listener: 'convert' };
export const CONVERT_DEST_ADDR = '198.18.0.1';

/** The established peers the "≥ 1.5 × best of" target compares against. */
export const CLASSIC_PEERS = new Set(['dante', 'squid-forward', 'squid-connect', 'haproxy']);

export const subject = (id: string): Subject => {
  const s = [...SUBJECTS, CONVERT_SUBJECT].find((x) => x.id === id);
  if (!s) throw new Error(`unknown subject ${id}`);
  return s;
};

export interface RunningServer {
  name: ServerName;
  daemon: Daemon;
  ports: Partial<Record<Listener, number>>;
}

/** Files the origin serves. */
export interface OriginFiles {
  big: { path: string; bytes: number };
  medium: { path: string; bytes: number };
  small: { path: string; bytes: number };
}

const MPTCPIZE = ['mptcpize', 'run'];

/** Per-client limits would refuse the 10,000-tunnel workload: every client here is 127.0.0.1. */
export const BENCH_PROXY_CONFIG = 'limits:\n  maxConnections: 40000\n  maxConnectionsPerClient: 40000\ntimeouts:\n  drainMs: 500\n';

/**
 * argv of mptcp-proxy as the bench runs it (HTTP and SOCKS listeners on loopback, a Convert one
 * when given a port, metrics off unless a port is given).
 */
export function proxyCommand(o: { config: string; http: number; socks: number; convert?: number; relay: 'splice' | 'stream'; workers: number; fastPath: boolean; metrics?: number; logLevel?: string }): string[] {
  // BENCH_PROXY_NODE_FLAGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/p") profiles our proxy under a workload.
  const flags = (process.env.BENCH_PROXY_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const [exe, ...rest] = node('dist/src/cli/main.js');
  return withNofile([
    exe!,
    ...flags,
    ...rest,
    ...['--config', o.config, '--http', `127.0.0.1:${o.http}`, '--socks', `127.0.0.1:${o.socks}`, '--allow-dest', '127.0.0.0/8', '--log-level', o.logLevel ?? 'warn', '--relay', o.relay],
    ...(o.convert === undefined ? [] : ['--convert', `127.0.0.1:${o.convert}`, '--allow-dest', `${CONVERT_DEST_ADDR}/32`]),
    ...(o.metrics === undefined ? ['--no-metrics'] : ['--metrics', `127.0.0.1:${o.metrics}`]),
    ...(o.workers > 1 ? ['--workers', String(o.workers)] : []),
    ...['--fast-path', o.fastPath ? 'on' : 'off'],
  ]);
}
const node = (script: string, ...args: string[]): string[] => [process.execPath, path.join(REPO_ROOT, script), ...args];

export class Servers {
  private readonly running = new Map<ServerName, Promise<RunningServer>>();
  private readonly extras = new Map<number, Promise<RunningServer>>();
  readonly files: OriginFiles;

  constructor(
    readonly dir: string,
    sizes: { big: number; medium: number },
  ) {
    // The documents live in tmpfs (dir is under /dev/shm): sparse files of zeros cost no disk
    // reads and almost no memory, so the origin is never the bottleneck.
    const www = path.join(dir, 'www');
    fs.mkdirSync(www, { recursive: true });
    const make = (name: string, bytes: number): { path: string; bytes: number } => {
      fs.writeFileSync(path.join(www, name), '');
      fs.truncateSync(path.join(www, name), bytes);
      return { path: `/${name}`, bytes };
    };
    this.files = { big: make('big.bin', sizes.big), medium: make('medium.bin', sizes.medium), small: make('small.txt', 0) };
    fs.writeFileSync(path.join(www, 'small.txt'), 'x'.repeat(128));
    this.files.small.bytes = 128;
  }

  /** Can this server run on this machine? null = yes, else why not. */
  static missing(name: ServerName): string | null {
    const need: Record<ServerName, string[]> = {
      origin: ['mptcpize'],
      'ours-splice': [],
      'ours-splice-w2': [],
      'ours-fast': [],
      'ours-stream': [],
      dante: ['danted', 'mptcpize'],
      squid: ['squid', 'mptcpize'],
      haproxy: ['haproxy', 'mptcpize'],
      microsocks: ['microsocks', 'mptcpize'],
      'node-pipe': ['mptcpize'],
    };
    const absent = need[name].filter((b) => !have(b));
    return absent.length ? `not installed: ${absent.join(', ')}` : null;
  }

  get(name: ServerName): Promise<RunningServer> {
    let p = this.running.get(name);
    if (!p) {
      p = this.start(name);
      this.running.set(name, p);
      p.catch(() => this.running.delete(name));
    }
    return p;
  }

  async originPort(): Promise<number> {
    return (await this.get('origin')).ports.tcp!;
  }

  /** URL of an origin document (always by IP: no resolver in the path). */
  async url(file: keyof OriginFiles): Promise<string> {
    return `http://127.0.0.1:${await this.originPort()}${this.files[file].path}`;
  }

  /** The port a subject's client talks to. */
  async port(s: Subject): Promise<number> {
    const srv = await this.get(s.server);
    const p = srv.ports[s.listener];
    if (p === undefined) throw new Error(`${s.server} has no ${s.listener} listener`);
    return p;
  }

  async stopAll(): Promise<void> {
    await this.stopExtra();
    const all = await Promise.allSettled([...this.running.values()]);
    this.running.clear();
    await Promise.all(all.map((r) => (r.status === 'fulfilled' ? r.value.daemon.stop() : undefined)));
  }

  async stop(name: ServerName): Promise<void> {
    const p = this.running.get(name);
    this.running.delete(name);
    if (p) await (await p).daemon.stop();
  }

  private sub(name: string): string {
    const d = path.join(this.dir, name);
    fs.mkdirSync(d, { recursive: true });
    return d;
  }

  private async start(name: ServerName): Promise<RunningServer> {
    const why = Servers.missing(name);
    if (why) throw new Error(why);
    const started = async (daemon: Daemon, ports: RunningServer['ports']): Promise<RunningServer> => {
      for (const p of Object.values(ports)) await waitPort(p, 15_000, daemon);
      return { name, daemon, ports };
    };
    switch (name) {
      case 'origin':
        return this.startOrigin();
      case 'ours-splice':
      case 'ours-splice-w2':
      case 'ours-fast':
      case 'ours-stream': {
        const [http, socks] = [await freePort(), await freePort()];
        // The Convert subject runs on the CONNECT and SOCKS subjects' own process.
        const convert = name === CONVERT_SUBJECT.server ? await freePort() : undefined;
        const cfg = path.join(this.sub(name), 'config.yaml');
        fs.writeFileSync(cfg, BENCH_PROXY_CONFIG);
        const argv = proxyCommand({ config: cfg, http, socks, ...(convert ? { convert } : {}), relay: name === 'ours-stream' ? 'stream' : 'splice', workers: name === 'ours-splice-w2' ? 2 : 1, fastPath: name === 'ours-fast' });
        return started(new Daemon(name, argv), { http, socks, ...(convert ? { convert } : {}) });
      }
      case 'dante': {
        const port = await freePort();
        const d = this.sub('dante');
        const conf = path.join(d, 'danted.conf');
        fs.writeFileSync(
          conf,
          [
            `logoutput: ${path.join(d, 'danted.log')}`,
            `internal: 127.0.0.1 port = ${port}`,
            'external: 127.0.0.1',
            'clientmethod: none',
            'socksmethod: none',
            'user.privileged: root',
            'user.unprivileged: nobody',
            'client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }',
            'socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 }',
            '',
          ].join('\n'),
        );
        return started(new Daemon(name, withNofile([...MPTCPIZE, 'danted', '-f', conf, '-p', path.join(d, 'danted.pid')])), { socks: port });
      }
      case 'squid': {
        const port = await freePort();
        const d = this.sub('squid');
        fs.chmodSync(d, 0o777);
        const conf = path.join(d, 'squid.conf');
        fs.writeFileSync(
          conf,
          [
            `http_port 127.0.0.1:${port}`,
            'acl lo src 127.0.0.0/8',
            'http_access allow lo',
            'http_access deny all',
            'cache deny all',
            'cache_mem 8 MB',
            'access_log none',
            `cache_log ${path.join(d, 'cache.log')}`,
            `pid_filename ${path.join(d, 'squid.pid')}`,
            `coredump_dir ${d}`,
            'pinger_enable off',
            'shutdown_lifetime 0 seconds',
            `max_filedescriptors ${NOFILE}`,
            'forwarded_for delete',
            'via off',
            '',
          ].join('\n'),
        );
        return started(new Daemon(name, withNofile([...MPTCPIZE, 'squid', '-N', '-f', conf])), { http: port });
      }
      case 'haproxy':
        return this.startHaproxy(await this.originPort());
      case 'microsocks': {
        const port = await freePort();
        return started(new Daemon(name, withNofile([...MPTCPIZE, 'microsocks', '-i', '127.0.0.1', '-p', String(port)])), { socks: port });
      }
      case 'node-pipe': {
        const port = await freePort();
        return started(new Daemon(name, withNofile([...MPTCPIZE, ...node('dist/bench/tools/pipe-relay.js', String(port))])), { socks: port });
      }
    }
  }

  /** HAProxy in tcp mode forwards to one fixed backend: extra instances aimed at other ports. */
  haproxyTo(targetPort: number): Promise<RunningServer> {
    let p = this.extras.get(targetPort);
    if (!p) {
      p = this.startHaproxy(targetPort);
      this.extras.set(targetPort, p);
      p.catch(() => this.extras.delete(targetPort));
    }
    return p;
  }

  async stopExtra(): Promise<void> {
    const all = await Promise.allSettled([...this.extras.values()]);
    this.extras.clear();
    await Promise.all(all.map((r) => (r.status === 'fulfilled' ? r.value.daemon.stop() : undefined)));
  }

  private async startHaproxy(targetPort: number): Promise<RunningServer> {
    const why = Servers.missing('haproxy');
    if (why) throw new Error(why);
    const port = await freePort();
    const conf = path.join(this.sub(`haproxy-${targetPort}`), 'haproxy.cfg');
    fs.writeFileSync(conf, ['global', `  maxconn ${Math.floor((NOFILE - 100) / 2)}`, 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 120s', '  timeout server 120s', 'frontend f', `  bind 127.0.0.1:${port}`, '  default_backend b', 'backend b', `  server s 127.0.0.1:${targetPort}`, ''].join('\n'));
    const daemon = new Daemon('haproxy', withNofile([...MPTCPIZE, 'haproxy', '-db', '-f', conf]));
    await waitPort(port, 15_000, daemon);
    return { name: 'haproxy', daemon, ports: { tcp: port } };
  }

  private async startOrigin(): Promise<RunningServer> {
    const port = await freePort();
    const d = this.sub('nginx');
    if (have('nginx')) {
      const conf = path.join(d, 'nginx.conf');
      const tmp = (n: string): string => `${n} ${path.join(d, n)};`;
      fs.writeFileSync(
        conf,
        [
          'daemon off;',
          'user root;',
          'worker_processes 1;',
          `worker_rlimit_nofile ${NOFILE};`,
          `pid ${path.join(d, 'nginx.pid')};`,
          `error_log ${path.join(d, 'error.log')} warn;`,
          `events { worker_connections ${NOFILE - 100}; }`,
          'http {',
          '  access_log off;',
          '  sendfile on;',
          '  tcp_nopush on;',
          '  keepalive_requests 10000000;',
          '  keepalive_timeout 120s;',
          '  default_type application/octet-stream;',
          ...['client_body_temp_path', 'proxy_temp_path', 'fastcgi_temp_path', 'uwsgi_temp_path', 'scgi_temp_path'].map((n) => `  ${tmp(n)}`),
          `  server { listen 127.0.0.1:${port} backlog=4096; root ${path.join(this.dir, 'www')}; }`,
          '}',
          '',
        ].join('\n'),
      );
      const daemon = new Daemon('nginx', withNofile([...MPTCPIZE, 'nginx', '-c', conf, '-e', path.join(d, 'error.log')]));
      await waitPort(port, 15_000, daemon);
      return { name: 'origin', daemon, ports: { tcp: port } };
    }
    // No nginx (e.g. a CI runner set up for tests only): a Node origin serving the same files.
    const daemon = new Daemon('origin', withNofile([...MPTCPIZE, ...node('dist/bench/tools/origin.js', String(port), path.join(this.dir, 'www'))]));
    await waitPort(port, 15_000, daemon);
    return { name: 'origin', daemon, ports: { tcp: port } };
  }
}

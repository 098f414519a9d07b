/**
 * Real clients run from inside the testbed: curl (under `mptcpize run` for MPTCP, bare for plain
 * TCP) through the proxy's HTTP forward, CONNECT and SOCKS modes, and Node's own http client
 * reaching into the client namespace through a unix-socket bridge.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { killGroup } from './run';
import type { ProxyHandle, ProxyLogLine, Role, Testbed } from './testbed';

export type ProxyKind = 'http' | 'connect' | 'socks5h' | 'socks5' | 'socks4a' | 'socks4';

export interface CurlOptions {
  url: string;
  proxy?: { kind: ProxyKind; host: string; port: number; user?: string; pass?: string };
  /** Run under mptcpize (default true). */
  mptcp?: boolean;
  ns?: Role;
  extraArgs?: string[];
  /** Kill curl after this long (default 60 s). */
  timeoutMs?: number;
  /** Keep the body when it is at most this long (default 1 MiB); always hashed. */
  keepBodyMax?: number;
}

export interface CurlResult {
  /** curl's exit code (0 = transfer ok); null when killed. */
  exitCode: number | null;
  errorMessage: string;
  httpCode: number;
  /** CONNECT's answer from the proxy (0 when no tunnel). */
  httpConnect: number;
  sizeDownload: number;
  /** Average download rate over the whole transfer, bytes/s, as curl measured it. */
  speedDownload: number;
  mbitPerSec: number;
  timeTotal: number;
  sha256: string;
  body: Buffer | null;
  stderr: string;
  writeOut: Record<string, unknown>;
}

function proxyArgs(p: NonNullable<CurlOptions['proxy']>): string[] {
  const scheme = p.kind === 'connect' ? 'http' : p.kind;
  const args = ['--proxy', `${scheme}://${p.host}:${p.port}`];
  if (p.kind === 'connect') args.push('--proxytunnel');
  if (p.user !== undefined) args.push('--proxy-user', `${p.user}:${p.pass ?? ''}`);
  return args;
}

/** Environment without proxy variables, so curl only ever uses the proxy it is told to. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/_proxy$/i.test(k)));
}

export async function curl(tb: Testbed, o: CurlOptions): Promise<CurlResult> {
  const argv = [
    ...(o.mptcp ?? true ? ['mptcpize', 'run'] : []),
    'curl',
    '-sS',
    '--noproxy',
    '',
    ...(o.proxy ? proxyArgs(o.proxy) : []),
    '-o',
    '-',
    // The write-out goes to stderr so stdout is the body alone.
    '-w',
    '%{stderr}\n%{json}\n',
    ...(o.extraArgs ?? []),
    o.url,
  ];
  const child = tb.spawn(o.ns ?? 'client', argv, { env: cleanEnv() });
  const hash = createHash('sha256');
  const keepMax = o.keepBodyMax ?? 1 << 20;
  const kept: Buffer[] = [];
  let size = 0;
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    hash.update(d);
    size += d.length;
    if (size <= keepMax) kept.push(d);
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.pid && killGroup(child.pid, 'SIGKILL'), o.timeoutMs ?? 60_000);
  const [exitCode] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  const jsonLine = stderr
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'));
  const w = jsonLine ? (JSON.parse(jsonLine) as Record<string, unknown>) : {};
  const num = (k: string): number => (typeof w[k] === 'number' ? (w[k] as number) : 0);
  return {
    exitCode,
    errorMessage: typeof w.errormsg === 'string' ? w.errormsg : '',
    httpCode: num('http_code') || num('response_code'),
    httpConnect: num('http_connect'),
    sizeDownload: num('size_download'),
    speedDownload: num('speed_download'),
    mbitPerSec: (num('speed_download') * 8) / 1e6,
    timeTotal: num('time_total'),
    sha256: hash.digest('hex'),
    body: size <= keepMax ? Buffer.concat(kept) : null,
    stderr: jsonLine ? stderr.slice(0, stderr.lastIndexOf(jsonLine)).trim() : stderr.trim(),
    writeOut: w,
  };
}

/** The proxy's per-connection log line for the connection curl made (matched by client address). */
export function connectionLogFor(px: ProxyHandle, r: CurlResult, timeoutMs = 5000): Promise<ProxyLogLine> {
  const ip = String(r.writeOut.local_ip);
  // As the proxy writes it: an IPv6 address in brackets.
  const client = `${net.isIPv6(ip) ? `[${ip}]` : ip}:${String(r.writeOut.local_port)}`;
  return px.waitForLog((l) => l.message === 'connection' && l.client === client, timeoutMs);
}

function drainOrClose(req: http.ClientRequest): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      req.off('drain', done);
      req.off('close', done);
      resolve();
    };
    req.on('drain', done);
    req.on('close', done);
  });
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  sha256: string;
  size: number;
  body: Buffer;
  /** The agent reused an open connection for this request. */
  reusedSocket: boolean;
}

/**
 * Node's http client acting from inside a namespace: requests go through tb.bridge() to
 * proxyHost:proxyPort (made in `ns`, MPTCP by default). Use one ProxiedHttp for several
 * requests to test keep-alive: its agent holds at most one connection.
 */
export class ProxiedHttp {
  readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  private constructor(private readonly socketPath: string) {}

  static async open(tb: Testbed, proxyHost: string, proxyPort: number, opts: { ns?: Role; mptcp?: boolean } = {}): Promise<ProxiedHttp> {
    return new ProxiedHttp(await tb.bridge(opts.ns ?? 'client', proxyHost, proxyPort, { mptcp: opts.mptcp ?? true }));
  }

  /**
   * One forward-proxy request (absolute URL as the request target). `body` is sent chunked
   * (no content-length) unless `contentLength` is set; a generator streams with backpressure.
   */
  async request(
    method: string,
    url: string,
    opts: { headers?: http.OutgoingHttpHeaders; body?: Iterable<Buffer>; contentLength?: number; keepBodyMax?: number } = {},
  ): Promise<HttpResult> {
    const u = new URL(url);
    const req = http.request({
      socketPath: this.socketPath,
      agent: this.agent,
      method,
      path: url,
      headers: { host: u.host, ...(opts.contentLength !== undefined ? { 'content-length': opts.contentLength } : {}), ...opts.headers },
    });
    // The response is read while the body is still going out: an echo answers as it reads, and
    // a client that uploads everything first deadlocks once the buffers on the way back are full.
    const received = (once(req, 'response') as Promise<[http.IncomingMessage]>).then(async ([res]) => {
      const hash = createHash('sha256');
      const keepMax = opts.keepBodyMax ?? 1 << 20;
      const kept: Buffer[] = [];
      let size = 0;
      for await (const d of res as AsyncIterable<Buffer>) {
        hash.update(d);
        size += d.length;
        if (size <= keepMax) kept.push(d);
      }
      return { status: res.statusCode ?? 0, headers: res.headers, sha256: hash.digest('hex'), size, body: Buffer.concat(kept) };
    });
    // Settled as a value, so a failure during the upload is thrown below, not reported unhandled.
    const outcome = received.then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    if (opts.body) {
      for (const chunk of opts.body) {
        if (req.destroyed) break;
        if (!req.write(chunk)) await drainOrClose(req);
      }
    }
    req.end();
    const r = await outcome;
    if ('error' in r) throw r.error;
    return { ...r.result, reusedSocket: req.reusedSocket };
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * The legacy (plain TCP) side of the testbed: an HTTP server and a raw TCP echo server.
 *
 * As a script, run inside the server namespace: `node legacy-server.js HOST` prints one JSON line
 * {"http":PORT,"echo":PORT}. Routes:
 *   GET /bytes/N[?seed=S][&chunked=1][&kBps=R]  N pattern bytes (see ./pattern), content-length or
 *                                      chunked; with kBps, paced to R kB/s (a download of known duration)
 *   POST|PUT /echo                     the body back, content-length if the request had one, else chunked
 *   GET /headers                       the request's headers as JSON (what the proxy forwarded)
 * Keep-alive is on (30 s idle). From a test, call startLegacyServer(tb).
 */
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { patternChunks } from './pattern';
import { firstLine, type Testbed } from './testbed';

async function sendPattern(res: http.ServerResponse, seed: number, length: number, chunked: boolean, kBps: number): Promise<void> {
  res.writeHead(200, { 'content-type': 'application/octet-stream', ...(chunked ? {} : { 'content-length': String(length) }) });
  const t0 = Date.now();
  let sent = 0;
  for (const c of patternChunks(seed, length)) {
    if (!res.write(c)) await once(res, 'drain');
    if (res.destroyed) return;
    sent += c.length;
    const due = kBps > 0 ? t0 + sent / kBps - Date.now() : 0;
    if (due > 0) await new Promise((r) => setTimeout(r, due));
  }
  res.end();
}

function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x');
  const bytes = /^\/bytes\/(\d+)$/.exec(url.pathname);
  if (req.method === 'GET' && bytes) {
    const q = url.searchParams;
    sendPattern(res, Number(q.get('seed') ?? 1), Number(bytes[1]), q.get('chunked') === '1', Number(q.get('kBps') ?? 0)).catch(() => res.destroy());
    return;
  }
  if ((req.method === 'POST' || req.method === 'PUT') && url.pathname === '/echo') {
    const len = req.headers['content-length'];
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...(len !== undefined ? { 'content-length': len } : {}) });
    req.pipe(res);
    return;
  }
  if (req.method === 'GET' && url.pathname === '/headers') {
    const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  req.resume();
  res.writeHead(404, { 'content-length': 0 });
  res.end();
}

async function main(): Promise<void> {
  const host = process.argv[2] ?? '127.0.0.1';
  const web = http.createServer(handle);
  web.keepAliveTimeout = 30_000;
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  web.listen(0, host);
  echo.listen(0, host);
  await Promise.all([once(web, 'listening'), once(echo, 'listening')]);
  const port = (s: net.Server): number => (s.address() as net.AddressInfo).port;
  process.stdout.write(JSON.stringify({ http: port(web), echo: port(echo) }) + '\n');
}

export interface LegacyServer {
  host: string;
  httpPort: number;
  echoPort: number;
  /** http://server:port + path */
  url(path: string): string;
  proc: ChildProcess;
}

/** Start the legacy servers inside tb's server namespace (stopped by tb.destroy()). */
export async function startLegacyServer(tb: Testbed): Promise<LegacyServer> {
  const proc = tb.spawnNode('server', 'dist/testkit/legacy-server.js', [tb.addr.server]);
  const ports = JSON.parse(await firstLine(proc, 10_000)) as { http: number; echo: number };
  const host = tb.addr.server;
  return { host, httpPort: ports.http, echoPort: ports.echo, url: (p) => `http://${host}:${ports.http}${p}`, proc };
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`legacy-server: ${String(e)}\n`);
    process.exit(1);
  });
}

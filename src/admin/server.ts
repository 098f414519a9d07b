/**
 * The admin/metrics HTTP endpoint (default 127.0.0.1:9464): GET /metrics (Prometheus),
 * GET /connections (live JSON status), GET /healthz. Before answering, `refresh` lets the kernel
 * view sample the open connections, so figures are current without polling in the background.
 */
import http from 'node:http';
import type { Logger } from '../log/logger';
import type { MptcpConnectionRecord, SubflowRegistry } from '../registry/registry';
import { diagnoseSinglePath, readPathManagerView, type PathDiagnosis, type PathManagerView } from '../registry/diagnosis';
import type { ClientView } from '../core/connection';
import { formatHostPort } from '../core/address';
import type { ConnectionBuffers } from '../tuning/tuner';

export interface AdminSources {
  metrics: { render(): Promise<string>; contentType: string };
  subflows: SubflowRegistry;
  /** Open client connections, for /connections. */
  connections: () => Iterable<ClientView>;
  /** Sample kernel state of open connections before answering. */
  refresh: () => void | Promise<void>;
  /** Socket buffer sizes the tuner chose, by connection id (src/tuning); absent = not shown. */
  buffers?: (id: number) => ConnectionBuffers | null;
  /** Extra routes other modules serve (e.g. /proxy.pac). */
  routes?: Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>;
}

export interface ConnectionStatus {
  id: number;
  listener: string;
  protocol: string;
  client: string;
  mptcp: boolean | null;
  token: string | null;
  user: string | null;
  destination: string | null;
  upstream: string | null;
  ageMs: number;
  bytesIn: number;
  bytesOut: number;
  subflows: {
    local: string;
    remote: string;
    interface: string | null;
    kind: string;
    backup: boolean;
    bytesTx: number;
    bytesRx: number;
    rttMs: number | null;
    mss: number | null;
    ageMs: number;
  }[];
  /** Receive/send buffer sizes (kernel bytes) and why; null when the tuner does not track it. */
  buffers?: ConnectionBuffers | null;
  /**
   * Why the connection uses one path, with the fix (src/registry/diagnosis); null when it uses
   * more, or nothing is known; absent from instances that predate it.
   */
  singlePath?: PathDiagnosis | null;
}

export function connectionStatus(sources: Pick<AdminSources, 'subflows' | 'connections' | 'buffers'>, pm: PathManagerView): ConnectionStatus[] {
  const byClient = new Map<number, ConnectionStatus['subflows']>();
  const records = new Map<number, MptcpConnectionRecord>();
  const now = Date.now();
  for (const rec of sources.subflows.connections.values()) {
    if (!rec.client) continue;
    records.set(rec.client.id, rec);
    byClient.set(
      rec.client.id,
      [...rec.subflows.values()]
        .filter((s) => s.state === 'established')
        .map((s) => ({
          local: formatHostPort(s.local),
          remote: formatHostPort(s.remote),
          interface: s.interface,
          kind: s.kind,
          backup: s.backup,
          bytesTx: s.bytesTx,
          bytesRx: s.bytesRx,
          rttMs: s.rttUs === null ? null : s.rttUs / 1000,
          mss: s.mss,
          ageMs: now - s.since,
        })),
    );
  }
  return [...sources.connections()].map((c) => ({
    id: c.id,
    listener: c.listener,
    protocol: c.protocol,
    client: formatHostPort({ host: c.clientAddress, port: c.clientPort }),
    mptcp: c.mptcp,
    token: c.token === null ? null : c.token.toString(16).padStart(8, '0'),
    user: c.user,
    destination: c.destination ? formatHostPort(c.destination) : null,
    upstream: c.upstreamAddress,
    ageMs: now - c.startedAtMs,
    bytesIn: c.bytesFromClient,
    bytesOut: c.bytesToClient,
    subflows: byClient.get(c.id) ?? [],
    ...(sources.buffers ? { buffers: sources.buffers(c.id) } : {}),
    singlePath: diagnoseSinglePath(c.mptcp, records.get(c.id), pm),
  }));
}

export function startAdminServer(host: string, port: number, sources: AdminSources, log: Logger): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    const extra = sources.routes?.[path];
    if (extra) return extra(req, res);
    if (path === '/metrics') {
      Promise.resolve(sources.refresh())
        .then(() => sources.metrics.render())
        .then(
        (text) => res.writeHead(200, { 'Content-Type': sources.metrics.contentType }).end(text),
        (e) => {
          log.error('metrics render failed', { error: (e as Error).message });
          res.writeHead(500).end();
        },
      );
    } else if (path === '/connections') {
      Promise.resolve(sources.refresh())
        .then(() => readPathManagerView())
        .then(
        (pm) => {
          if (pm.errors.length > 0) log.warn('path manager state unreadable; one-path diagnoses are less precise', { errors: pm.errors });
          res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ connections: connectionStatus(sources, pm) }));
        },
        (e) => {
          log.error('status refresh failed', { error: (e as Error).message });
          res.writeHead(500).end();
        },
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      log.info('admin listening', { address: `${host}:${(server.address() as { port: number }).port}`, paths: ['/metrics', '/connections', ...Object.keys(sources.routes ?? {})] });
      resolve(server);
    });
  });
}

/** Stop the admin endpoint without waiting for scrapers' keep-alive connections. */
export function closeAdminServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/**
 * `mptcp-proxy status`: the admin endpoint's /connections as a readable table (or raw JSON);
 * with `--targets`, several instances' (a cluster behind a load balancer) merged into one view.
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import type { ConnectionStatus } from '../admin/server';
import { parseHostPort } from '../core/address';
import { ConfigError, DEFAULTS } from '../config/schema';

function fetchJson(host: string, port: number, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch {
          reject(new Error(`bad JSON from ${host}:${port}${path}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

const human = (n: number): string => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}G` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n));

export function formatStatusTable(conns: ConnectionStatus[]): string {
  if (conns.length === 0) return 'no open connections\n';
  const lines: string[] = [];
  for (const c of conns) {
    lines.push(
      `#${c.id} ${c.listener}/${c.protocol} ${c.client} → ${c.destination ?? '-'}  mptcp=${c.mptcp ? 'yes' : 'no'}${c.token ? ` token=${c.token}` : ''}  in=${human(c.bytesIn)} out=${human(c.bytesOut)}  age=${(c.ageMs / 1000).toFixed(1)}s${c.user ? ` user=${c.user}` : ''}`,
    );
    for (const s of c.subflows) {
      lines.push(
        `    ${s.kind.padEnd(7)} ${s.remote.padEnd(22)} → ${s.local.padEnd(22)} ${(s.interface ?? '?').padEnd(10)} ${s.backup ? 'backup ' : 'active '} tx=${human(s.bytesTx).padStart(7)} rx=${human(s.bytesRx).padStart(7)} rtt=${s.rttMs === null ? '-' : `${s.rttMs.toFixed(2)}ms`}${s.mss ? ` mss=${s.mss}` : ''}`,
      );
    }
    if (c.singlePath) lines.push(`    one path: ${c.singlePath.cause}: ${c.singlePath.detail}`, `      fix: ${c.singlePath.fix}`);
  }
  return `${lines.join('\n')}\n`;
}

/** "http://host:port[/]" or "host:port" → the admin endpoint. */
export function parseTarget(t: string): { host: string; port: number } {
  const m = /^(?:http:\/\/)?([^/]+)\/?$/.exec(t.trim());
  if (!m) throw new ConfigError(`status: target "${t}" is not HOST:PORT or http://HOST:PORT`);
  try {
    return parseHostPort(m[1]!);
  } catch (e) {
    throw new ConfigError(`status: target "${t}": ${(e as Error).message}`);
  }
}

export interface TargetStatus {
  target: string;
  connections: ConnectionStatus[] | null;
  error?: string;
}

/** Each connection once, marked with the instance (target) that holds it. */
export function mergeTargets(per: readonly TargetStatus[]): { targets: { target: string; connections: number | null; error?: string }[]; connections: (ConnectionStatus & { target: string })[] } {
  return {
    targets: per.map((p) => ({ target: p.target, connections: p.connections?.length ?? null, ...(p.error ? { error: p.error } : {}) })),
    connections: per.flatMap((p) => (p.connections ?? []).map((c) => ({ ...c, target: p.target }))),
  };
}

export function formatTargets(per: readonly TargetStatus[]): string {
  const total = per.reduce((n, p) => n + (p.connections?.length ?? 0), 0);
  const down = per.filter((p) => p.connections === null).length;
  const parts = per.map((p) => (p.connections === null ? `== ${p.target}: unreachable: ${p.error}\n` : `== ${p.target}: ${p.connections.length} connection(s)\n${formatStatusTable(p.connections)}`));
  return `${parts.join('')}${per.length} instance(s)${down ? `, ${down} unreachable` : ''}, ${total} connection(s)\n`;
}

async function fetchTarget(target: string): Promise<TargetStatus> {
  const ep = parseTarget(target);
  try {
    const data = (await fetchJson(ep.host, ep.port, '/connections')) as { connections: ConnectionStatus[] };
    return { target, connections: data.connections };
  } catch (e) {
    return { target, connections: null, error: (e as Error).message };
  }
}

export async function runStatusCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { metrics: { type: 'string' }, targets: { type: 'string' }, json: { type: 'boolean' } }, strict: true }));
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  if (values.targets !== undefined) {
    const targets = values.targets.split(',').filter((t) => t.trim() !== '');
    if (targets.length === 0) throw new ConfigError('status: --targets needs at least one HOST:PORT');
    for (const t of targets) parseTarget(t);
    const per = await Promise.all(targets.map(fetchTarget));
    process.stdout.write(values.json ? `${JSON.stringify(mergeTargets(per), null, 2)}\n` : formatTargets(per));
    // Partial answers are printed; the exit code says one was missing.
    return per.some((p) => p.connections === null) ? 1 : 0;
  }
  const ep = values.metrics ? parseHostPort(values.metrics) : { host: DEFAULTS.metrics.host, port: DEFAULTS.metrics.port };
  let data: { connections: ConnectionStatus[] };
  try {
    data = (await fetchJson(ep.host, ep.port, '/connections')) as { connections: ConnectionStatus[] };
  } catch (e) {
    process.stderr.write(`mptcp-proxy: cannot reach the proxy's admin endpoint at ${ep.host}:${ep.port}: ${(e as Error).message}\n`);
    return 1;
  }
  process.stdout.write(values.json ? `${JSON.stringify(data, null, 2)}\n` : formatStatusTable(data.connections));
  return 0;
}

/**
 * Steering e2e helpers: the real CLI (`mptcp-proxy --config FILE`) in the testbed's proxy
 * namespace, its owned kernel state read back with the system tools, and config files.
 * The proxy wires the kernel view, registry and steering engine itself; nothing here feeds it.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { ProxyHandle, ProxyLogLine, Testbed } from './testbed';
import { sleep } from './sleep';

/** A config with one HTTP listener on proxy1:3128, debug JSON logs (they carry reactionMs), and `doc`. */
export function writeConfig(tb: Testbed, name: string, doc: Record<string, unknown>): string {
  const file = path.join(tb.tmpDir, name);
  const base = {
    listeners: [{ protocol: 'http', listen: `${tb.addr.proxy1}:3128` }],
    access: { allowClients: [tb.addr.path1Subnet, tb.addr.path2Subnet] },
    metrics: { enabled: false },
    log: { level: 'debug', format: 'json' },
  };
  writeFileSync(file, YAML.stringify({ ...base, ...doc }));
  return file;
}

/** The CLI with a config file; ready once its listener logs (startProxy only waits for listen flags). */
export async function startSteeredProxy(tb: Testbed, cfg: string): Promise<ProxyHandle> {
  const h = await tb.startProxy(['--config', cfg]);
  try {
    await h.waitForLog((l) => l.message === 'listening', 15_000);
    // The CLI installs its signal handlers just after the listeners log; a SIGTERM sent in
    // between would kill it with its state left (see the steering report).
    await sleep(300);
  } catch (e) {
    await h.stop(500);
    throw e;
  }
  return h;
}

export const steered = (policy: string) => (l: ProxyLogLine): boolean => l.message === 'subflow steered' && l.policy === policy;

export interface OwnedState {
  table: boolean;
  /** Interfaces (IFBs included) with our root qdisc. */
  qdiscs: string[];
  /** Interfaces whose ingress redirects to one of our IFBs. */
  ingress: string[];
  ifbs: string[];
  rules: number[];
  endpoints: number[];
}

export const NONE: OwnedState = { table: false, qdiscs: [], ingress: [], ifbs: [], rules: [], endpoints: [] };

export async function ownedState(tb: Testbed): Promise<OwnedState> {
  const j = async <T>(argv: string[]): Promise<T> => JSON.parse((await tb.exec('proxy', argv)).stdout || '[]') as T;
  const tables = (await tb.exec('proxy', ['nft', 'list', 'tables'])).stdout;
  const q = await j<{ dev: string; handle: string; kind: string; root?: boolean }[]>(['tc', '-j', 'qdisc', 'show']);
  const ingress: string[] = [];
  for (const dev of q.filter((x) => x.kind === 'ingress').map((x) => x.dev)) {
    const f = await j<{ options?: { actions?: { to_dev?: string }[] } }[]>(['tc', '-j', 'filter', 'show', 'dev', dev, 'ingress']);
    if (f.some((x) => x.options?.actions?.some((a) => a.to_dev?.startsWith('mpx-ifb')))) ingress.push(dev);
  }
  const links = await j<{ ifname: string }[]>(['ip', '-j', 'link', 'show']);
  const rules = await j<{ priority: number }[]>(['ip', '-j', 'rule', 'show']);
  const eps = await j<{ id: number }[]>(['ip', '-j', 'mptcp', 'endpoint', 'show']);
  return {
    table: /inet mptcp_proxy/.test(tables),
    qdiscs: q.filter((x) => x.root && x.handle === '4d50:').map((x) => x.dev).sort(),
    ingress,
    ifbs: links.map((l) => l.ifname).filter((n) => n.startsWith('mpx-ifb')),
    rules: rules.map((r) => r.priority).filter((p) => p > 0x4d50 && p <= 0x4d50 + 64),
    endpoints: eps.map((e) => e.id).filter((id) => id >= 192),
  };
}

/** Client-side receive and transmit bytes on both paths. */
export async function pathBytes(tb: Testbed): Promise<{ rx: [number, number]; tx: [number, number] }> {
  const [a, b] = await tb.pathCounters();
  return { rx: [a.rxBytes, b.rxBytes], tx: [a.txBytes, b.txBytes] };
}

export const mbit = (bytes: number, ms: number): number => (bytes * 8) / 1000 / ms;

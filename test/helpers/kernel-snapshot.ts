/**
 * A full listing of a namespace's kernel state as the system tools print it (qdiscs, classes,
 * filters, nft, rules, routes, MPTCP endpoints and limits, sysctls), and the difference of two:
 * what a proxy leaves behind after a crash and a restart shows up here.
 */
import type { Role, Testbed } from '../../testkit/testbed';

export type Snapshot = Record<string, string[]>;

/** Counters and stats are the only volatile parts of these listings. */
function normalise(text: string): string[] {
  return text
    .replace(/\b(packets|bytes|direct_packets_stat) \d+/g, '$1 N')
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l !== '');
}

/** Everything in a proxy's namespace (default the testbed's) the proxy could have changed, as the system tools print it. */
export async function snapshot(tb: Testbed, ns: Role | string = 'proxy'): Promise<Snapshot> {
  const out: Snapshot = {};
  const show = async (name: string, argv: string[]): Promise<void> => {
    let r = await tb.exec(ns, argv);
    // `ip link` names a veth's peer namespace by asking about every name in /var/run/netns: one
    // that another test deletes meanwhile prints this, which says nothing about ns. Ask again.
    for (let i = 0; i < 5 && r.stderr.includes('Peer netns reference is invalid'); i++) r = await tb.exec(ns, argv);
    out[name] = normalise(`${r.stdout}${r.stderr}`);
  };
  await show('ip link', ['ip', 'link', 'show']);
  await show('tc qdisc', ['tc', 'qdisc', 'show']);
  const devs = out['ip link']!.map((l) => /^\d+: ([^:@]+)[:@]/.exec(l)?.[1]).filter((d): d is string => !!d);
  for (const dev of devs) {
    await show(`tc class ${dev}`, ['tc', 'class', 'show', 'dev', dev]);
    await show(`tc filter ${dev}`, ['tc', 'filter', 'show', 'dev', dev]);
    await show(`tc filter ${dev} ingress`, ['tc', 'filter', 'show', 'dev', dev, 'ingress']);
  }
  await show('nft ruleset', ['nft', 'list', 'ruleset']);
  await show('ip rule', ['ip', 'rule', 'show']);
  await show('ip -6 rule', ['ip', '-6', 'rule', 'show']);
  await show('ip route all', ['ip', 'route', 'show', 'table', 'all']);
  await show('ip -6 route all', ['ip', '-6', 'route', 'show', 'table', 'all']);
  await show('mptcp endpoints', ['ip', 'mptcp', 'endpoint', 'show']);
  await show('mptcp limits', ['ip', 'mptcp', 'limits', 'show']);
  await show('sysctl', ['sysctl', 'net.mptcp', 'net.ipv4.tcp_rto_max_ms', 'net.ipv4.tcp_rmem', 'net.ipv4.tcp_wmem', 'net.core.rmem_max', 'net.core.wmem_max', 'net.ipv4.ip_forward', 'net.ipv4.tcp_congestion_control', 'net.ipv4.conf.all', 'net.ipv4.conf.default']);
  return out;
}

/** Lines present on one side only, per listing ("+" now, "-" before). */
export function diff(before: Snapshot, now: Snapshot): string[] {
  const lines: string[] = [];
  for (const k of new Set([...Object.keys(before), ...Object.keys(now)])) {
    const a = [...(before[k] ?? [])];
    for (const l of now[k] ?? []) {
      const i = a.indexOf(l);
      if (i >= 0) a.splice(i, 1);
      else lines.push(`${k}: + ${l}`);
    }
    for (const l of a) lines.push(`${k}: - ${l}`);
  }
  return lines;
}

/**
 * The baseline: links come up and IPv6 link-local addresses finish DAD (adding their local
 * routes) on their own time, so wait until no link lacks carrier, no address is tentative and
 * two snapshots in a row agree.
 */
export async function settledSnapshot(tb: Testbed, ns: Role | string = 'proxy'): Promise<Snapshot> {
  for (let i = 0; ; i++) {
    const s = await snapshot(tb, ns);
    const settled = !s['ip link']!.some((l) => l.includes('NO-CARRIER')) && (await tb.exec(ns, ['ip', '-6', 'addr', 'show', 'tentative'])).stdout.trim() === '';
    if (settled && diff(s, await snapshot(tb, ns)).length === 0) return s;
    if (i >= 100) throw new Error(`namespace ${ns} did not settle`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

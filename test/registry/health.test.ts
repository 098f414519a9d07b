/**
 * MPTCP health: the kernel's MPTcpExt counters as metrics (from a given /proc/net/netstat text),
 * and the one-path diagnosis for each cause, from registry records as the kernel feed fills them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProxyMetrics } from '../../src/metrics/metrics';
import { diagnoseSinglePath, type PathManagerView } from '../../src/registry/diagnosis';
import { SubflowRegistry } from '../../src/registry/registry';
import { parseNetstatBlock } from '../../src/sys/netstat';

const netstat = (values: Record<string, number>): string =>
  `TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 1 2\nMPTcpExt: ${Object.keys(values).join(' ')}\nMPTcpExt: ${Object.values(values).join(' ')}\n`;

test('netstat: the MPTcpExt block by name, other blocks ignored', () => {
  const m = parseNetstatBlock(netstat({ MPJoinSynRx: 3, MPJoinRejected: 2 }), 'MPTcpExt');
  assert.deepEqual([...m], [['MPJoinSynRx', 3], ['MPJoinRejected', 2]]);
  assert.equal(parseNetstatBlock('TcpExt: A\nTcpExt: 1\n', 'MPTcpExt').size, 0);
});

test('kernel MPTCP counters become labelled metrics; growth between scrapes is added, shared labels summed', async () => {
  const metrics = new ProxyMetrics();
  let kernel = { MPCapableFallbackACK: 4, DssFallback: 1, MPJoinSynRx: 7, MPJoinAckRx: 5, MPJoinRejected: 2, MPJoinSynAckHMacFailure: 1, MPJoinAckHMacFailure: 1, AddAddrDrop: 3, Blackhole: 0, SubflowStale: 1 };
  let timeout = '3600';
  metrics.observeKernelMptcp(() => new Map(Object.entries(kernel)), () => timeout);
  const value = async (name: string, labels: Record<string, string> = {}): Promise<number | undefined> => {
    const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
    return m?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
  };
  assert.equal(await value('mptcp_proxy_kernel_fallbacks_total', { cause: 'no-mp-capable-ack' }), 4);
  assert.equal(await value('mptcp_proxy_kernel_join_rejections_total', { cause: 'limit' }), 2);
  assert.equal(await value('mptcp_proxy_kernel_join_rejections_total', { cause: 'hmac' }), 2);
  assert.equal(await value('mptcp_proxy_kernel_joins_total', { stage: 'syn-rx' }), 7);
  assert.equal(await value('mptcp_proxy_kernel_add_addr_total', { event: 'rx-dropped' }), 3);
  assert.equal(await value('mptcp_proxy_kernel_blackhole_timeout_seconds'), 3600);
  assert.equal(await value('mptcp_proxy_kernel_blackhole_active'), 0);
  kernel = { ...kernel, MPJoinRejected: 5, Blackhole: 1 };
  assert.equal(await value('mptcp_proxy_kernel_join_rejections_total', { cause: 'limit' }), 5);
  assert.equal(await value('mptcp_proxy_kernel_blackhole_active'), 1, 'a blackhole seen now is within the timeout');
  timeout = '0';
  assert.equal(await value('mptcp_proxy_kernel_blackhole_active'), 0, 'detection off');
  assert.match(await metrics.render(), /mptcp_proxy_kernel_fallbacks_total\{cause="dss"[^}]*\} 1/);
});

const pm = (o: Partial<PathManagerView> = {}): PathManagerView => ({ limits: { subflows: 2, addAddrAccepted: 0 }, signals: [], errors: [], ...o });

function oneSubflow(): SubflowRegistry {
  const r = new SubflowRegistry();
  r.subflowUp({ token: 'aa', local: { host: '10.0.1.1', port: 1080 }, remote: { host: '10.0.1.2', port: 40000 }, interface: 'p1', kind: 'initial', backup: false, source: 'kernel' });
  return r;
}

test('diagnosis: fallback, limit, no endpoint, never joined, path down, and nothing to say for two paths', () => {
  assert.equal(diagnoseSinglePath(false, undefined, pm())?.cause, 'fallback');
  assert.equal(diagnoseSinglePath(null, undefined, pm()), null);
  const r = oneSubflow();
  const rec = r.connections.get('aa');
  assert.equal(diagnoseSinglePath(true, rec, pm({ limits: { subflows: 0, addAddrAccepted: 0 } }))?.cause, 'join-limit');
  assert.equal(diagnoseSinglePath(true, rec, pm())?.cause, 'no-endpoint');
  assert.equal(diagnoseSinglePath(true, rec, pm({ signals: ['10.0.2.1'] }))?.cause, 'client-never-joined');
  const join = { token: 'aa', local: { host: '10.0.1.1', port: 1080 }, remote: { host: '10.0.2.2', port: 40001 }, interface: 'p2', kind: 'join' as const, backup: false, source: 'kernel' as const };
  r.subflowUp(join);
  assert.equal(diagnoseSinglePath(true, rec, pm()), null, 'two paths: no diagnosis');
  r.subflowDown('aa', join.local, join.remote, { error: 110, resetReason: 6 });
  const d = diagnoseSinglePath(true, rec, pm({ limits: { subflows: 0, addAddrAccepted: 0 } }));
  assert.equal(d?.cause, 'path-down', 'a lost path is named before the limit');
  assert.match(d!.detail, /10\.0\.2\.2 via p2 .*ETIMEDOUT.*middlebox interference/);
  assert.match(d!.fix, /paths\.pathManager: userspace heals it/);
  assert.match(diagnoseSinglePath(true, rec, pm({ userspace: true }))!.fix, /re-announces/, 'in userspace mode the fix says the proxy is healing');
});

test('diagnosis in userspace path-manager mode: the in-kernel subflow limit is no cause', () => {
  const rec = oneSubflow().connections.get('aa');
  assert.equal(diagnoseSinglePath(true, rec, pm({ userspace: true, limits: { subflows: 0, addAddrAccepted: 0 }, signals: ['10.0.2.1'] }))?.cause, 'client-never-joined');
});

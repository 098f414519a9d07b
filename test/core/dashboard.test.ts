import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ProxyEvents } from '../../src/core/events';
import { ProxyMetrics } from '../../src/metrics/metrics';
import { SubflowRegistry } from '../../src/registry/registry';

test('every mptcp_proxy_* metric the Grafana dashboard queries is one the proxy exports', async () => {
  const root = path.resolve(__dirname, '../../..');
  const dash = JSON.parse(fs.readFileSync(path.join(root, 'dashboards/grafana-mptcp-proxy.json'), 'utf8')) as { panels: { type: string; title: string; targets?: { expr: string }[] }[] };
  const queried = new Set<string>();
  for (const p of dash.panels) for (const t of p.targets ?? []) for (const m of t.expr.matchAll(/\b(mptcp_proxy_[a-z_]+?)(?:_bucket)?\b/g)) queried.add(m[1]!);
  const metrics = new ProxyMetrics('test');
  metrics.observeConnections(new ProxyEvents());
  metrics.observeSubflows(new SubflowRegistry());
  metrics.observeKernelMptcp(() => new Map(), () => null);
  const exported = new Set((await metrics.registry.getMetricsAsJSON()).map((m) => m.name));
  // Steering registers its own metrics when it runs; they are documented with the engine.
  const steering = new Set(['mptcp_proxy_uplink_up', 'mptcp_proxy_steered_subflows']);
  for (const name of queried) assert.ok(exported.has(name) || steering.has(name), `dashboard queries ${name}, which is not exported`);
  // The MPTCP health row shows the kernel's counters.
  const row = dash.panels.findIndex((p) => p.type === 'row' && /MPTCP health/.test(p.title));
  assert.ok(row >= 0, 'the dashboard has an MPTCP health row');
  const health = dash.panels.slice(row + 1).flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join(' ');
  for (const name of ['mptcp_proxy_kernel_fallbacks_total', 'mptcp_proxy_kernel_join_rejections_total', 'mptcp_proxy_kernel_add_addr_total', 'mptcp_proxy_kernel_blackhole_active']) assert.match(health, new RegExp(name));
  for (const name of ['mptcp_proxy_connections_active', 'mptcp_proxy_connections_total', 'mptcp_proxy_subflows_active', 'mptcp_proxy_subflows_total', 'mptcp_proxy_path_bytes_total', 'mptcp_proxy_relay_bytes_total', 'mptcp_proxy_conversion_seconds', 'mptcp_proxy_subflow_rtt_seconds', 'mptcp_proxy_errors_total']) {
    assert.ok(exported.has(name), `contract metric ${name} missing`);
  }
});

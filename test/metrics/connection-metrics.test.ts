/**
 * Connection, relay and subflow metrics from the events, as a scrape sees them: counts made
 * between two scrapes all show at the next one, a series touched once is exported (at 0 when
 * its connections came and went between scrapes), and growth after a scrape adds to it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { ClientConnection } from '../../src/core/connection';
import { ErrorCode, ProxyError } from '../../src/core/errors';
import { ProxyEvents } from '../../src/core/events';
import { ProxyMetrics } from '../../src/metrics/metrics';
import { SubflowRegistry } from '../../src/registry/registry';

function setup(): { metrics: ProxyMetrics; events: ProxyEvents; subflows: SubflowRegistry; value: (name: string, labels?: Record<string, string>) => Promise<number | undefined> } {
  const metrics = new ProxyMetrics('test');
  const events = new ProxyEvents();
  const subflows = new SubflowRegistry();
  metrics.observeConnections(events);
  metrics.observeSubflows(subflows);
  const value = async (name: string, labels: Record<string, string> = {}): Promise<number | undefined> => {
    const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
    return m?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
  };
  return { metrics, events, subflows, value };
}

const conn = (listener: string, mptcp: boolean | null): ClientConnection => {
  const c = new ClientConnection(new net.Socket(), listener, -1);
  c.mptcp = mptcp;
  return c;
};

test('connections: open and closed counts by listener, MPTCP and result reach the next scrape', async () => {
  const { events, value, metrics } = setup();
  const a = conn('http', true);
  const b = conn('http', true);
  const c = conn('socks', false);
  for (const x of [a, b, c]) events.emit('connection-open', x);
  c.fail(new ProxyError(ErrorCode.DestDenied, 'test'));
  events.emit('connection-close', c);
  assert.equal(await value('mptcp_proxy_connections_active', { listener: 'http', mptcp: 'true' }), 2);
  assert.equal(await value('mptcp_proxy_connections_active', { listener: 'socks', mptcp: 'false' }), 0, 'came and went before the scrape: exported at 0');
  assert.equal(await value('mptcp_proxy_connections_total', { listener: 'socks', mptcp: 'false', result: ErrorCode.DestDenied }), 1);
  assert.equal(await value('mptcp_proxy_connections_total', { listener: 'http', mptcp: 'true', result: 'ok' }), undefined, 'nothing closed ok yet');
  events.emit('connection-close', a);
  events.emit('connection-close', b);
  assert.equal(await value('mptcp_proxy_connections_active', { listener: 'http', mptcp: 'true' }), 0);
  assert.equal(await value('mptcp_proxy_connections_total', { listener: 'http', mptcp: 'true', result: 'ok' }), 2);
  assert.match(await metrics.render(), /mptcp_proxy_connections_total\{listener="http",mptcp="true",result="ok",instance="test"\} 2/);
});

test('relay bytes: progress and the rest at relay-done, each byte once', async () => {
  const { events, value } = setup();
  const a = conn('http', true);
  events.emit('relay-progress', a, 100, 1000);
  assert.equal(await value('mptcp_proxy_relay_bytes_total', { direction: 'up' }), 100);
  events.emit('relay-done', a, { bytesUp: 150, bytesDown: 1000, end: 'done' });
  events.emit('relay-done', conn('http', true), { bytesUp: 0, bytesDown: 0, end: 'done' });
  assert.equal(await value('mptcp_proxy_relay_bytes_total', { direction: 'up' }), 150);
  assert.equal(await value('mptcp_proxy_relay_bytes_total', { direction: 'down' }), 1000);
});

test('subflows: up and down by interface reach the next scrape', async () => {
  const { subflows, value } = setup();
  for (const port of [40000, 40001]) subflows.subflowUp({ token: 'aa', local: { host: '10.0.1.1', port: 1080 }, remote: { host: '10.0.1.2', port }, interface: 'p1', kind: 'initial', backup: false, source: 'kernel' });
  assert.equal(await value('mptcp_proxy_subflows_active', { interface: 'p1' }), 2);
  subflows.connectionClosed('aa');
  assert.equal(await value('mptcp_proxy_subflows_active', { interface: 'p1' }), 0);
  assert.equal(await value('mptcp_proxy_subflows_total', { interface: 'p1' }), 2);
});

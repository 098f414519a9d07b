/**
 * With workers, /metrics merges every worker's figures. A worker too busy to answer a scrape in
 * time (here: stopped with SIGSTOP) must count with its previous answer, or the merged counters
 * dip and a Prometheus reads a counter reset. Real proxy process with two workers, loopback only.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { after, test } from 'node:test';
import { CLI_ENTRY } from '../../testkit/testbed';
import { metricValue } from '../../testkit/metrics';
import { sleep } from '../../testkit/sleep';

async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function fetchText(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/** One forward request on a new connection through the proxy. */
function viaProxy(proxyPort: number, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: proxyPort, path: url, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject);
  });
}

const workerPids = (supervisor: number): number[] =>
  fs.readFileSync(`/proc/${supervisor}/task/${supervisor}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);

const finished = (text: string): number => metricValue(text, 'mptcp_proxy_connections_total', 'result="ok"');

test('a worker that does not answer a scrape in time counts with its previous figures', { timeout: 60_000 }, async () => {
  const origin = http.createServer((_req, res) => res.end('hi')).listen(0, '127.0.0.1');
  await new Promise((r) => origin.once('listening', r));
  const originPort = (origin.address() as net.AddressInfo).port;
  const [httpPort, metricsPort] = [await freePort(), await freePort()];
  const proxy = spawn(process.execPath, [CLI_ENTRY, '--http', `127.0.0.1:${httpPort}`, '--metrics', `127.0.0.1:${metricsPort}`, '--allow-dest', '127.0.0.0/8', '--workers', '2', '--log-level', 'error'], { stdio: 'inherit' });
  let stopped: number[] = [];
  after(() => {
    for (const pid of stopped) process.kill(pid, 'SIGCONT');
    proxy.kill('SIGKILL');
    origin.close();
  });
  for (let i = 0; ; i++) {
    if (await fetchText(metricsPort, '/metrics').then(() => true, () => false)) break;
    assert.ok(i < 150, 'the proxy serves /metrics within 15 s');
    await sleep(100);
  }
  for (let i = 0; i < 20; i++) assert.equal(await viaProxy(httpPort, `http://127.0.0.1:${originPort}/${i}`), 200);
  // The connection counters are updated at close, just after the answer: wait for all 20.
  let before = 0;
  for (let i = 0; i < 50 && before < 20; i++, await sleep(100)) before = finished(await fetchText(metricsPort, '/metrics'));
  assert.equal(before, 20);
  stopped = workerPids(proxy.pid!);
  assert.equal(stopped.length, 2, 'two workers');
  for (const pid of stopped) process.kill(pid, 'SIGSTOP');
  const during = await fetchText(metricsPort, '/metrics');
  assert.equal(finished(during), 20, 'the stopped workers count with their last answer');
  assert.equal(metricValue(during, 'mptcp_proxy_metrics_late_workers_total'), 2);
  for (const pid of stopped) process.kill(pid, 'SIGCONT');
  stopped = [];
  assert.equal(finished(await fetchText(metricsPort, '/metrics')), 20);
});

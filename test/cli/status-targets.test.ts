import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ConnectionStatus } from '../../src/admin/server';
import { ConfigError } from '../../src/config/schema';
import { formatTargets, mergeTargets, parseTarget } from '../../src/cli/status';

const conn = (id: number): ConnectionStatus => ({ id, listener: 'http', protocol: 'connect', client: `10.0.0.2:${4000 + id}`, mptcp: true, token: null, user: null, destination: '10.0.3.2:80', upstream: null, ageMs: 1000, bytesIn: 1, bytesOut: 2, subflows: [] });

test('status --targets: HOST:PORT or http://HOST:PORT, anything else refused', () => {
  assert.deepEqual(parseTarget('10.0.0.1:9464'), { host: '10.0.0.1', port: 9464 });
  assert.deepEqual(parseTarget('http://[2001:db8::1]:9464/'), { host: '2001:db8::1', port: 9464 });
  for (const bad of ['https://10.0.0.1:9464', '10.0.0.1', 'http://10.0.0.1:9464/metrics', '']) assert.throws(() => parseTarget(bad), ConfigError, bad);
});

test('status --targets: connections of every instance, each marked with its target; an unreachable one is named', () => {
  const per = [
    { target: 'a:9464', connections: [conn(1), conn(2)] },
    { target: 'b:9464', connections: [conn(1)] },
    { target: 'c:9464', connections: null, error: 'connect ECONNREFUSED' },
  ];
  const m = mergeTargets(per);
  assert.deepEqual(m.connections.map((c) => `${c.target}#${c.id}`), ['a:9464#1', 'a:9464#2', 'b:9464#1']);
  assert.deepEqual(m.targets, [
    { target: 'a:9464', connections: 2 },
    { target: 'b:9464', connections: 1 },
    { target: 'c:9464', connections: null, error: 'connect ECONNREFUSED' },
  ]);
  const text = formatTargets(per);
  assert.match(text, /^== a:9464: 2 connection\(s\)\n#1 http\/connect/m);
  assert.match(text, /^== c:9464: unreachable: connect ECONNREFUSED$/m);
  assert.match(text, /3 instance\(s\), 1 unreachable, 3 connection\(s\)\n$/);
});

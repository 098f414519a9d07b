/**
 * The registry re-evaluates a connection (client-changed) exactly when a client fact some policy
 * match key reads changes: the list comes from the policy schema, not from the registry.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { POLICY_CLIENT_FIELDS, POLICY_MATCH_FIELDS, validateSteeringConfig } from '../../src/config/steering';
import type { ClientView } from '../../src/core/connection';
import { SubflowRegistry } from '../../src/registry/registry';

const base: ClientView = {
  id: 1,
  listener: 'http',
  protocol: 'http',
  clientAddress: '10.0.0.2',
  clientPort: 40000,
  mptcp: true,
  token: 0x1234,
  user: null,
  destination: null,
  upstreamAddress: null,
  startedAtMs: 0,
  bytesFromClient: 0,
  bytesToClient: 0,
};

/** A value different from `v` of the same kind. */
function changed(v: unknown): unknown {
  if (typeof v === 'number') return v + 1;
  if (typeof v === 'boolean') return !v;
  if (typeof v === 'string') return `${v}-changed`;
  return { host: 'example.com', port: 443 };
}

function clientChanges(next: ClientView): number {
  const reg = new SubflowRegistry();
  let n = 0;
  reg.attachClient('00001234', base);
  reg.on('client-changed', () => n++);
  reg.attachClient('00001234', next);
  return n;
}

test('every match key of the policy schema is a valid config key', () => {
  for (const key of Object.keys(POLICY_MATCH_FIELDS)) {
    const value = key === 'kind' ? 'join' : key === 'client' || key === 'local' ? '10.0.0.0/8' : key === 'destination' ? 'example.com' : 'x';
    const cfg = validateSteeringConfig({ policies: [{ name: 'p', match: { [key]: value } }] });
    assert.deepEqual(Object.keys(cfg.policies[0]!.match), [key]);
  }
});

test('a change of any client fact a policy matches on re-evaluates the connection (listener included)', () => {
  assert.ok(POLICY_CLIENT_FIELDS.includes('listener') && POLICY_CLIENT_FIELDS.includes('user'));
  for (const f of POLICY_CLIENT_FIELDS) {
    assert.equal(clientChanges({ ...base, [f]: changed(base[f]) }), 1, `a change of ${f} must emit client-changed`);
  }
});

test('a change of a client fact no policy reads does not re-evaluate', () => {
  for (const f of Object.keys(base) as (keyof ClientView)[]) {
    if (POLICY_CLIENT_FIELDS.includes(f)) continue;
    assert.equal(clientChanges({ ...base, [f]: changed(base[f]) }), 0, `a change of ${f} must not emit client-changed`);
  }
});

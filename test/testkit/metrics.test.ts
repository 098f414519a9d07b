/** The tests' metric reader: label subsets match whatever other labels a sample carries. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { metricValue } from '../../testkit/metrics';

const TEXT = [
  '# HELP mptcp_proxy_errors_total Refusals.',
  'mptcp_proxy_errors_total{code="MPX_LIMIT_REACHED",instance="a"} 3',
  'mptcp_proxy_errors_total{code="MPX_LIMIT_REACHED",instance="b"} 4',
  'mptcp_proxy_errors_total{code="MPX_DEST_DENIED",instance="a"} 1',
  'mptcp_proxy_errors_total_created{code="MPX_LIMIT_REACHED"} 99',
  'mptcp_proxy_connections_active 12',
].join('\n');

test('sums the samples whose labels include the pairs asked for', () => {
  assert.equal(metricValue(TEXT, 'mptcp_proxy_errors_total', 'code="MPX_LIMIT_REACHED"'), 7);
  assert.equal(metricValue(TEXT, 'mptcp_proxy_errors_total', 'code="MPX_LIMIT_REACHED"', 'instance="b"'), 4);
  assert.equal(metricValue(TEXT, 'mptcp_proxy_errors_total'), 8);
  assert.equal(metricValue(TEXT, 'mptcp_proxy_connections_active'), 12);
  assert.equal(metricValue(TEXT, 'mptcp_proxy_errors_total', 'code="MPX_AUTH_FAILED"'), 0);
});

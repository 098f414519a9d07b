/**
 * Messages between the cluster supervisor and its workers (Node IPC, JSON). Workers own client
 * connections; the supervisor owns the subflow plane, the admin endpoint and kernel state.
 */
import type { ClientView } from '../core/connection';
import type { SubflowSampleData } from '../registry/kernel-feed';
import type { ConnectionBuffers } from '../tuning/tuner';

export type ToSupervisor =
  | { mpx: 'sample'; client: ClientView; samples: SubflowSampleData[] }
  | { mpx: 'client'; client: ClientView }
  | { mpx: 'closed'; client: ClientView }
  | { mpx: 'metrics'; id: number; metrics: object[] }
  /** Answer to sample-req, with the tuner's buffer status of each open connection (for /connections). */
  | { mpx: 'sampled'; id: number; buffers: [id: number, buffers: ConnectionBuffers | null][] }
  | { mpx: 'ready' }
  | { mpx: 'start-failed'; message: string };

export type ToWorker = { mpx: 'metrics-req'; id: number } | { mpx: 'sample-req'; id: number } | { mpx: 'reload' } | { mpx: 'stop'; drainMs: number };

export function isMessage<T extends { mpx: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { mpx?: unknown }).mpx === 'string';
}

/** Worker i numbers its connections from i × this, so ids stay unique across the cluster. */
export const CONNECTION_ID_STRIDE = 1_000_000_000;

/** Set in a worker's environment to its index (1-based). */
export const WORKER_ENV = 'MPTCP_PROXY_WORKER';

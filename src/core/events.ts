/**
 * The proxy's internal event bus: front ends and the listener emit, observers (logging,
 * metrics, registry) subscribe. Data flows one way: nothing that listens here may steer the
 * connection it hears about.
 */
import { EventEmitter } from 'node:events';
import type { ClientConnection } from './connection';
import type { ProxyError } from './errors';
import type { RelayResult } from './relay';

export interface ProxyEventMap {
  'connection-open': [conn: ClientConnection];
  'connection-close': [conn: ClientConnection];
  'upstream-connected': [conn: ClientConnection];
  'relay-done': [conn: ClientConnection, result: RelayResult];
  /** Bytes a relay still running has moved so far, counted as relay-done's (engines that can tell). */
  'relay-progress': [conn: ClientConnection, bytesUp: number, bytesDown: number];
  /** The connection's fd is open and its MPTCP state was just read: observers may sample it now. */
  'connection-sample': [conn: ClientConnection];
  /**
   * Every refusal or failure, counted by code. `conn` is absent for listener-level errors; `peer`
   * then names the client address when known (a connection dropped by limits.maxConnections).
   */
  'proxy-error': [err: ProxyError, conn: ClientConnection | null, peer?: string];
  /** A parent proxy's health (src/upstream): probed or seen at connect; removed by a reload. */
  'parent-health': [parent: string, state: 'up' | 'down' | 'removed', latencyMs: number | null];
  /**
   * A probe of a parent, or a connect through it (ok: tunnel ready; not ok: the parent failed, at
   * connect or in the handshake).
   */
  'parent-check': [parent: string, stage: 'probe' | 'connect', ok: boolean];
}

export class ProxyEvents extends EventEmitter<ProxyEventMap> {}

/**
 * What the subflow sniffer reports. `connection` is always the token (8 hex digits) of the side
 * that receives the joins: the server side of the MPTCP connection. Endpoints are "addr:port"
 * ("[v6]:port"); `src` is the side that sent the subflow's SYN.
 */

export type CloseReason = 'fin' | 'rst' | 'fastclose' | 'idle';

interface Base {
  /** Capture time, milliseconds since the epoch. */
  time: number;
  connection: string;
}

export interface SubflowEvent extends Base {
  event: 'subflow';
  kind: 'initial' | 'join';
  src: string;
  dst: string;
  interface: string;
  backup: boolean;
  /** MP_JOIN SYN only: the initiator's address id. */
  addressId?: number;
}

export interface SubflowClosedEvent extends Base {
  event: 'subflow-closed';
  kind: 'initial' | 'join';
  src: string;
  dst: string;
  interface: string;
  reason: CloseReason;
  /** MP_TCPRST reason code, when the reset carried one. */
  resetReason?: number;
  /** Payload bytes src→dst and dst→src, from sequence numbers (retransmissions not counted twice). */
  bytesSent: number;
  bytesReceived: number;
}

/** A join that never reached the fourth ACK: reset (over the limit, bad HMAC) or refused. */
export interface JoinFailedEvent extends Base {
  event: 'join-failed';
  src: string;
  dst: string;
  interface: string;
  resetReason?: number;
}

export interface AnnounceEvent extends Base {
  event: 'announce';
  /** Endpoint of the subflow's side that sent the ADD_ADDR. */
  by: string;
  addressId: number;
  address: string;
  port?: number;
  interface: string;
}

export interface RemoveEvent extends Base {
  event: 'remove';
  by: string;
  addressIds: number[];
}

export interface PriorityEvent extends Base {
  event: 'priority';
  by: string;
  /** The subflow the MP_PRIO travelled on. */
  src: string;
  dst: string;
  backup: boolean;
  addressId?: number;
}

export interface FailEvent extends Base {
  event: 'fail';
  by: string;
  /** Data sequence number where the checksum failed, decimal. */
  dsn: string;
}

export interface FastcloseEvent extends Base {
  event: 'fastclose';
  by: string;
}

export interface CloseEvent extends Base {
  event: 'close';
  reason: CloseReason;
  /** Subflows established over the connection's life. */
  subflows: number;
}

export type SniffEvent =
  | SubflowEvent
  | SubflowClosedEvent
  | JoinFailedEvent
  | AnnounceEvent
  | RemoveEvent
  | PriorityEvent
  | FailEvent
  | FastcloseEvent
  | CloseEvent;

/** One readable line per event, for the terminal. */
export function formatEventText(e: SniffEvent): string {
  const t = new Date(e.time).toISOString().slice(11, 23);
  const head = `${t} ${e.connection} ${e.event}`;
  switch (e.event) {
    case 'subflow':
      return `${head} ${e.kind} ${e.src} -> ${e.dst} on ${e.interface}${e.backup ? ' backup' : ''}`;
    case 'subflow-closed':
      return `${head} ${e.kind} ${e.src} -> ${e.dst} on ${e.interface} ${e.reason}${e.resetReason !== undefined ? ` (reset reason ${e.resetReason})` : ''} sent=${e.bytesSent} received=${e.bytesReceived}`;
    case 'join-failed':
      return `${head} ${e.src} -> ${e.dst} on ${e.interface}${e.resetReason !== undefined ? ` reset reason ${e.resetReason}` : ''}`;
    case 'announce':
      return `${head} by ${e.by}: id ${e.addressId} ${e.address}${e.port !== undefined ? ` port ${e.port}` : ''}`;
    case 'remove':
      return `${head} by ${e.by}: ids ${e.addressIds.join(',')}`;
    case 'priority':
      return `${head} by ${e.by} on ${e.src} -> ${e.dst}: ${e.backup ? 'backup' : 'regular'}${e.addressId !== undefined ? ` id ${e.addressId}` : ''}`;
    case 'fail':
      return `${head} by ${e.by} at dsn ${e.dsn}`;
    case 'fastclose':
      return `${head} by ${e.by}`;
    case 'close':
      return `${head} ${e.reason} after ${e.subflows} subflow(s)`;
  }
}

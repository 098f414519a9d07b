/**
 * Feeds the registry from the pcap sniffer on the proxy's client-facing interfaces. The sniffer
 * sees what the kernel view may miss (joins that failed, wire-level bytes) and is the only
 * source when the kernel view is unavailable; where both see a subflow the kernel's data wins
 * (the registry enforces that). Subflows are oriented as the sniffer reports them: `src` sent
 * the SYN, which for a proxy is the client.
 */
import { parseHostPort } from '../core/address';
import type { Logger } from '../log/logger';
import { SubflowSniffer } from '../sniffer/capture';
import type { SniffEvent } from '../sniffer/events';
import type { SubflowRegistry } from './registry';

export function startSnifferFeed(interfaces: readonly string[], registry: SubflowRegistry, log: Logger): SubflowSniffer {
  const onEvent = (e: SniffEvent): void => {
    switch (e.event) {
      case 'subflow':
        registry.subflowUp({ token: e.connection, local: parseHostPort(e.dst), remote: parseHostPort(e.src), interface: e.interface, kind: e.kind, backup: e.backup, source: 'sniffer' });
        break;
      case 'subflow-closed': {
        const local = parseHostPort(e.dst);
        const remote = parseHostPort(e.src);
        registry.updateCounters(e.connection, local, remote, { bytesTx: e.bytesReceived, bytesRx: e.bytesSent }, 'sniffer');
        registry.subflowDown(e.connection, local, remote);
        break;
      }
      case 'priority':
        registry.priorityChanged(e.connection, parseHostPort(e.dst), parseHostPort(e.src), e.backup);
        break;
      case 'close':
        registry.connectionClosed(e.connection);
        break;
      case 'join-failed':
        log.info('MPTCP join failed', { connection: e.connection, src: e.src, dst: e.dst, interface: e.interface, resetReason: e.resetReason });
        break;
      default:
        break;
    }
  };
  const sniffer = new SubflowSniffer(onEvent);
  sniffer.start(interfaces);
  log.info('subflow sniffer capturing', { interfaces });
  return sniffer;
}

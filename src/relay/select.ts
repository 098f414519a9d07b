/**
 * Chooses the relay engine: the native splice engine when configured or available, otherwise
 * the JS stream engine (always present).
 */
import type { Logger } from '../log/logger';
import type { RelayEngine } from './relay';
import { StreamRelay } from './stream-relay';

export function selectRelayEngine(wanted: 'auto' | 'splice' | 'stream', log: Logger): RelayEngine {
  if (wanted === 'stream') return new StreamRelay();
  log.debug('splice relay not built yet, using stream relay', { wanted });
  return new StreamRelay();
}

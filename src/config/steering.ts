/**
 * Config schema of the steering engine: policies (ordered, first match wins) and uplinks.
 * Validated here, consumed by src/steering. Defaults: none (no steering without policies).
 */
import { ConfigError } from './config-error';

export interface PolicyConfig {
  name: string;
  match: {
    client?: string;
    local?: string;
    interface?: string;
    kind?: 'initial' | 'join';
    destination?: string;
    user?: string;
    listener?: string;
  };
  /** HTB rate/ceil in bits per second. */
  rate?: number;
  ceil?: number;
  share?: string;
  uplink?: string;
  backup?: boolean;
}

export interface UplinkConfig {
  name: string;
  interface: string;
  source?: string;
  gateway?: string;
  probe?: string;
}

export interface SteeringConfig {
  policies: PolicyConfig[];
  uplinks: UplinkConfig[];
}

export const STEERING_KEYS = ['policies', 'uplinks'] as const;

/** Validate the steering sections of the raw config document. */
export function validateSteeringConfig(raw: Record<string, unknown>): SteeringConfig {
  const policies = raw.policies ?? [];
  const uplinks = raw.uplinks ?? [];
  if (!Array.isArray(policies)) throw new ConfigError('policies: must be a list');
  if (!Array.isArray(uplinks)) throw new ConfigError('uplinks: must be a list');
  return { policies: policies as PolicyConfig[], uplinks: uplinks as UplinkConfig[] };
}

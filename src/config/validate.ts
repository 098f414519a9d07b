/**
 * The validation kit of the config schema (schema.ts) and its steering sections (steering.ts):
 * one reader of raw YAML values, so every section refuses bad input with the same one-line
 * ConfigError shape ("path.key: what is wrong") and the same rules (one interface-name rule).
 */
import net from 'node:net';
import { isInterfaceName, parseCidr } from '../core/address';
import { ConfigError } from './config-error';

export type Raw = Record<string, unknown>;

export function isObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Where in the document a value sits; its errors name that path. */
export class Reader {
  constructor(private readonly path: string) {}
  error(what: string): ConfigError {
    return new ConfigError(`${this.path}: ${what}`);
  }
  fail(what: string): never {
    throw this.error(what);
  }
  at(key: string): Reader {
    return new Reader(this.path ? `${this.path}.${key}` : key);
  }
}

export function section(raw: Raw, key: string, r: Reader): Raw {
  const v = raw[key];
  if (v === undefined) return {};
  if (!isObject(v)) throw r.at(key).error('must be a mapping');
  return v;
}

export function onlyKeys(raw: Raw, allowed: readonly string[], r: Reader): void {
  for (const k of Object.keys(raw)) if (!allowed.includes(k)) throw r.at(k).error(`unknown key (expected one of: ${allowed.join(', ')})`);
}

export function int(raw: Raw, key: string, def: number, r: Reader, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = raw[key];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw r.at(key).error(`must be an integer in ${min}..${max}`);
  return v;
}

export function bool(raw: Raw, key: string, def: boolean, r: Reader): boolean {
  const v = raw[key];
  if (v === undefined) return def;
  if (typeof v !== 'boolean') throw r.at(key).error('must be true or false');
  return v;
}

export function oneOf<T extends string>(raw: Raw, key: string, def: T, choices: readonly T[], r: Reader): T {
  const v = raw[key];
  if (v === undefined) return def;
  if (typeof v !== 'string' || !choices.includes(v as T)) throw r.at(key).error(`must be one of ${choices.join(', ')}`);
  return v as T;
}

/** An optional non-empty string, trimmed. */
export function str(raw: Raw, key: string, r: Reader): string | undefined {
  const v = raw[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.trim() === '') return r.at(key).fail('must be a non-empty string');
  return v.trim();
}

function checkCidr(c: string, r: Reader): string {
  try {
    parseCidr(c);
  } catch (e) {
    throw r.error((e as Error).message);
  }
  return c;
}

export function cidr(raw: Raw, key: string, r: Reader): string | undefined {
  const v = str(raw, key, r);
  return v === undefined ? undefined : checkCidr(v, r.at(key));
}

export function cidrs(raw: Raw, key: string, def: string[], r: Reader): string[] {
  const v = raw[key];
  if (v === undefined) return [...def];
  if (!Array.isArray(v)) throw r.at(key).error('must be a list of CIDR ranges');
  return v.map((c, i) => {
    if (typeof c !== 'string') throw r.at(`${key}[${i}]`).error('must be a CIDR string');
    return checkCidr(c, r.at(`${key}[${i}]`));
  });
}

export function ip(raw: Raw, key: string, r: Reader): string | undefined {
  const v = str(raw, key, r);
  if (v !== undefined && net.isIP(v) === 0) r.at(key).fail(`"${v}" is not an IP address`);
  return v;
}

export function interfaceName(raw: Raw, key: string, r: Reader): string | undefined {
  const v = str(raw, key, r);
  if (v !== undefined && !isInterfaceName(v)) r.at(key).fail(`"${v}" is not an interface name`);
  return v;
}

export function interfaceNames(raw: Raw, key: string, r: Reader): string[] {
  const v = raw[key] ?? [];
  if (!Array.isArray(v) || !v.every(isInterfaceName)) throw r.at(key).error('must be a list of interface names');
  return v;
}

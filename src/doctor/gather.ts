/**
 * Collects the facts the doctor's checks judge, read-only, through the src/sys modules. A fact
 * that cannot be read is recorded with the reason instead of failing the whole run.
 */
import { getLimits, installTproxyRouting, listEndpoints, listRules, removeTproxyRouting, slotTable, TPROXY_SLOT } from '../sys/iproute';
import { effectiveCapabilities, kernelFeature, mptcpSocketProbe, readKernelConfig, toolWorks, transparentSocketProbe, type ProbeResult } from '../sys/kernel-features';
import { buildTproxyProbeScript, nftApply } from '../sys/nft';
import { C_FLAG_SYSCTL, readSysctl, writeSysctl } from '../sys/sysctl';
import os from 'node:os';
import { unmapIPv6 } from '../core/address';
import { SHAPING_FEATURES, rpKey, sysctlKeys, transparentFamilies, type ClusterFacts, type DoctorFacts, type DoctorInput, type ShapingFeature, type TransparentFacts } from './checks';

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const attempt = (fn: () => Promise<unknown>): Promise<ProbeResult> =>
  fn().then(
    () => ({ ok: true }),
    (e: unknown) => ({ ok: false, error: message(e) }),
  );

type RoutingFact = NonNullable<TransparentFacts['routing']>[number];

/** The owned routing slot: when free, installed and removed again; when taken (a running proxy's rule, or another one), only read. */
async function probeTproxyRouting(family: 4 | 6): Promise<RoutingFact> {
  const v6 = family === 6;
  let atSlot;
  try {
    atSlot = (await listRules(v6)).filter((r) => r.priority === slotTable(TPROXY_SLOT));
  } catch (e) {
    return { family, atSlot: [], trial: { ok: false, error: message(e) } };
  }
  if (atSlot.length > 0) return { family, atSlot, trial: null };
  const installed = await attempt(() => installTproxyRouting(v6));
  const removed = await attempt(() => removeTproxyRouting(v6));
  return { family, atSlot, trial: installed.ok ? removed : installed };
}

/** Try what transparent mode needs, leaving nothing behind (the TPROXY probe table is deleted in its own transaction). */
async function gatherTransparent(config: DoctorInput['config']): Promise<TransparentFacts | null> {
  const families = transparentFamilies(config);
  if (families.length === 0) return null;
  const tproxy = await attempt(() => nftApply(buildTproxyProbeScript(families)));
  const ipTransparent = families.map(transparentSocketProbe).find((p) => !p.ok) ?? { ok: true };
  const routing: RoutingFact[] = [];
  if (config.transparent.rules) for (const family of families) routing.push(await probeTproxyRouting(family));
  return { families, tproxy, ipTransparent, routing: config.transparent.rules ? routing : null };
}

/** Cluster mode's facts; the C flag's writability is tried by writing its own value back. */
function gatherCluster(config: DoctorInput['config'], errors: Record<string, string>): ClusterFacts | null {
  const announce = config.cluster.announce;
  if (announce === null) return null;
  const device = Object.entries(os.networkInterfaces()).find(([, list]) => (list ?? []).some((a) => unmapIPv6(a.address) === announce))?.[0] ?? null;
  const read = (key: string): string | null => {
    try {
      return readSysctl(key);
    } catch (e) {
      errors[key] = message(e);
      return null;
    }
  };
  const cFlag = read(C_FLAG_SYSCTL);
  let cFlagWritable: ProbeResult = { ok: false, error: 'no such key' };
  if (cFlag !== null) {
    try {
      writeSysctl(C_FLAG_SYSCTL, cFlag);
      cFlagWritable = { ok: true };
    } catch (e) {
      cFlagWritable = { ok: false, error: message(e) };
    }
  }
  const rp = [read('net.ipv4.conf.all.rp_filter'), device ? read(rpKey(device)) : null].filter((v): v is string => v !== null).map(Number);
  return { device, cFlag, cFlagWritable, rpFilter: rp.length > 0 ? Math.max(...rp) : null };
}

export async function gatherFacts(config: DoctorInput['config']): Promise<DoctorFacts> {
  const errors: Record<string, string> = {};
  const limits = await getLimits().catch((e: unknown) => ((errors.limits = message(e)), null));
  const endpoints = await listEndpoints().catch((e: unknown) => ((errors.endpoints = message(e)), null));
  const sysctl: Record<string, string | null> = {};
  for (const key of sysctlKeys(config, endpoints)) {
    try {
      sysctl[key] = readSysctl(key);
    } catch (e) {
      sysctl[key] = null;
      errors[key] = message(e);
    }
  }
  const kconfig = readKernelConfig();
  const features = Object.fromEntries(
    (Object.keys(SHAPING_FEATURES) as ShapingFeature[]).map((k) => [k, kernelFeature(kconfig, SHAPING_FEATURES[k].symbol, SHAPING_FEATURES[k].module)]),
  ) as Record<ShapingFeature, ReturnType<typeof kernelFeature>>;
  return {
    sysctl,
    limits,
    endpoints,
    features,
    tools: { nft: await toolWorks(['nft', '--version']) },
    mptcpSocket: mptcpSocketProbe(),
    transparent: await gatherTransparent(config),
    cluster: gatherCluster(config, errors),
    capEff: effectiveCapabilities(),
    errors,
  };
}

export interface AppliedSysctl {
  key: string;
  value: string;
  error?: string;
}

/** Apply sysctl fixes one by one; each outcome is reported, none aborts the others. */
export function applySysctls(sysctls: Record<string, string>): AppliedSysctl[] {
  return Object.entries(sysctls).map(([key, value]) => {
    try {
      writeSysctl(key, value);
      return { key, value };
    } catch (e) {
      return { key, value, error: message(e) };
    }
  });
}

/**
 * Collects the facts the doctor's checks judge, read-only, through the src/sys modules. A fact
 * that cannot be read is recorded with the reason instead of failing the whole run.
 */
import { getLimits, listEndpoints } from '../sys/iproute';
import { effectiveCapabilities, kernelFeature, mptcpSocketProbe, readKernelConfig, toolWorks } from '../sys/kernel-features';
import { readSysctl, writeSysctl } from '../sys/sysctl';
import { SHAPING_FEATURES, sysctlKeys, type DoctorFacts, type DoctorInput, type ShapingFeature } from './checks';

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

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
  return { sysctl, limits, endpoints, features, tools: { nft: await toolWorks(['nft', '--version']) }, mptcpSocket: mptcpSocketProbe(), capEff: effectiveCapabilities(), errors };
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

/**
 * Figures from other engineers' bench scripts (policy reaction, failover, registry latency...):
 * every compiled dist/bench/*.js that exports `run(opts)` and only runs itself as a main module.
 * Each runs in its own child process (its testbed and exit hooks stay out of ours) and may return
 * one object or an array of them: { name, unit, p50?, p99?, value?, target?: { op, threshold, met } }.
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../testkit/testbed';
import { run } from '../lib/proc';
import { fmt, type Row, type Target } from '../lib/results';

/** Options known for scripts in this repository, per mode (others get {}). */
const OPTIONS: Record<string, { quick: object; full: object }> = {
  'steering-reaction': { quick: { connections: 8 }, full: { connections: 50 } },
  failover: { quick: { quick: true }, full: { repetitions: 3 } },
  'registry-latency': { quick: { count: 50 }, full: { count: 200 } },
  auth: { quick: { quick: true }, full: {} },
};

/** Targets from the issues for figures whose scripts do not state one. */
const KNOWN_TARGETS: Record<string, { op: Target['op']; threshold: number; what: string }> = {
  'registry-latency.netlinkToRegistryMs': { op: '<', threshold: 50, what: 'registry event within 50 ms of the kernel event (issue 4), p99' },
};

/** Modules in dist/bench that follow the contract. */
export function externalScripts(distBench = path.join(REPO_ROOT, 'dist', 'bench')): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(distBench);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith('.js') && n !== 'run.js')
    .filter((n) => {
      const src = fs.readFileSync(path.join(distBench, n), 'utf8');
      return /exports\.run = run\b/.test(src) && src.includes('require.main === module');
    })
    .map((n) => n.slice(0, -3))
    .sort();
}

interface ExternalFigure {
  name?: string;
  unit?: string;
  value?: number | null;
  p50?: number | null;
  p99?: number | null;
  target?: { op?: string; threshold?: number; met?: boolean | null };
  [k: string]: unknown;
}

export async function external(mode: 'quick' | 'full', log: (s: string) => void): Promise<{ rows: Row[]; targets: Target[]; skipped: Record<string, string> }> {
  const rows: Row[] = [];
  const targets: Target[] = [];
  const skipped: Record<string, string> = {};
  for (const name of externalScripts()) {
    const file = path.join(REPO_ROOT, 'dist', 'bench', `${name}.js`);
    const opts = JSON.stringify(OPTIONS[name]?.[mode] ?? {});
    const code = `require(${JSON.stringify(file)}).run(${opts}).then((r) => { process.stdout.write('BENCH_EXTERNAL ' + JSON.stringify(r) + '\\n'); process.exit(0); }, (e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });`;
    const r = await run([process.execPath, '-e', code], { timeoutMs: mode === 'quick' ? 60_000 : 240_000, cwd: REPO_ROOT });
    const m = /^BENCH_EXTERNAL (.*)$/m.exec(r.stdout);
    if (r.code !== 0 || !m) {
      skipped[name] = `exit ${r.code ?? r.signal}: ${r.stderr.trim().split('\n').slice(-1)[0]?.slice(0, 200) ?? ''}`;
      log(`  external ${name}: failed: ${skipped[name]}`);
      continue;
    }
    const parsed = JSON.parse(m[1]) as ExternalFigure | ExternalFigure[];
    for (const f of (Array.isArray(parsed) ? parsed : [parsed]).flatMap((x) => flatten(x, name))) {
      const extra: Record<string, number | null> = {};
      for (const [k, v] of Object.entries(f)) if (typeof v === 'number' || v === null) extra[k] = v;
      const value = typeof f.value === 'number' ? f.value : typeof f.p99 === 'number' ? f.p99 : null;
      const fig = f.name!;
      rows.push({ workload: `ext:${fig}`, subject: fig, label: fig, kind: 'ours', value, unit: `${f.unit ?? ''}${typeof f.value !== 'number' && typeof f.p99 === 'number' ? ' p99' : ''}`, higherIsBetter: false, runs: [], extra });
      log(`  external ${fig}: ${JSON.stringify(extra)}`);
      const known = KNOWN_TARGETS[fig];
      const t = f.target && typeof f.target.threshold === 'number' ? { op: f.target.op, threshold: f.target.threshold, what: `${fig}${typeof f.value === 'number' ? '' : ' p99'} ${f.target.op ?? '<'} ${f.target.threshold} ${f.unit ?? ''}` } : known;
      if (t) {
        const op: Target['op'] = t.op === '<=' ? '<=' : t.op === '>=' ? '>=' : '<';
        const met = value === null ? null : op === '<' ? value < t.threshold : op === '<=' ? value <= t.threshold : value >= t.threshold;
        targets.push({ name: `${t.what} (bench/${name})`, value, unit: f.unit ?? '', op, threshold: t.threshold, met, detail: `p50 ${fmt(f.p50)}, p99 ${fmt(f.p99)}` });
      }
    }
  }
  return { rows, targets, skipped };
}

/**
 * A script's result as figures: the object itself when it carries p50/p99/value, plus one figure
 * per nested {p50, p99} object (named script.key, unit ms when the key ends in Ms).
 */
function flatten(f: ExternalFigure, script: string): ExternalFigure[] {
  const out: ExternalFigure[] = [];
  if (typeof f.value === 'number' || typeof f.p50 === 'number' || typeof f.p99 === 'number') out.push({ ...f, name: f.name ?? script });
  for (const [k, v] of Object.entries(f)) {
    if (v && typeof v === 'object' && !Array.isArray(v) && ('p50' in v || 'p99' in v)) {
      out.push({ ...(v as ExternalFigure), name: `${f.name ?? script}.${k}`, unit: (v as ExternalFigure).unit ?? (/Ms$/.test(k) ? 'ms' : '') });
    }
  }
  return out;
}

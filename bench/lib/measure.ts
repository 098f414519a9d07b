/**
 * Best-of-N for one subject in one workload: run the measurement `repeats` times, keep every
 * run's headline figure, and report the best run's figures as a Row. A subject that cannot start
 * (not installed, exits at once) is tried once and reported with the reason.
 */
import os from 'node:os';
import { bestOf, type Row } from './results';

export interface Measured {
  value: number;
  extra: Record<string, number | null>;
}

export interface MeasureSpec {
  workload: string;
  unit: string;
  higherIsBetter: boolean;
  repeats: number;
  /** One line for the progress log from the best run. */
  describe: (best: Measured) => string;
}

export async function measure(spec: MeasureSpec, s: Pick<Row, 'label' | 'kind'> & { id: string }, once: () => Promise<Measured>, log: (line: string) => void): Promise<Row> {
  const runs: Measured[] = [];
  let note: string | undefined;
  for (let i = 0; i < spec.repeats; i++) {
    try {
      const m = await once();
      // The machine is shared: each figure carries the 1-minute load average it was taken under.
      m.extra.load1 = os.loadavg()[0]!;
      runs.push(m);
    } catch (e) {
      note = (e as Error).message.split('\n')[0].slice(0, 300);
      if (runs.length === 0 && /not installed|exited before/.test(note)) break;
    }
  }
  return rowFrom(spec, s, runs, note, log);
}

/** The Row for a subject's runs (figures of the best run), logged. */
export function rowFrom(spec: MeasureSpec, s: Pick<Row, 'label' | 'kind'> & { id: string }, runs: readonly Measured[], note: string | undefined, log: (line: string) => void): Row {
  const best = bestOf(runs, spec.higherIsBetter);
  log(`  ${spec.workload} ${s.id}: ${best ? spec.describe(best) : `failed: ${note}`}`);
  return {
    workload: spec.workload,
    subject: s.id,
    label: s.label,
    kind: s.kind,
    value: best?.value ?? null,
    unit: spec.unit,
    higherIsBetter: spec.higherIsBetter,
    runs: runs.map((r) => r.value),
    extra: best?.extra ?? {},
    ...(note ? { note } : {}),
  };
}

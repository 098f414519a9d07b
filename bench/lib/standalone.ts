/**
 * The end of a standalone bench script (failover, cluster-scale): the summary on stderr, one JSON
 * object on stdout, saved as bench/results/NAME.json unless `save` is false; a failure exits 1.
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../testkit/testbed';

export function finishStandalone<T extends object>(name: string, result: Promise<T>, summary: (r: T) => string, save: boolean): void {
  result.then(
    (r) => {
      process.stderr.write(summary(r) + '\n');
      const json = JSON.stringify({ ...r, date: new Date().toISOString() }, null, 2) + '\n';
      process.stdout.write(json);
      if (save) {
        const dir = path.join(REPO_ROOT, 'bench', 'results');
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, `${name}.json`), json);
      }
    },
    (e: unknown) => {
      process.stderr.write(`${name}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}

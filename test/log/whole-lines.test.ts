import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { wholeLines } from '../../src/log/whole-lines';

/** What comes out of the transform for these input chunks, chunk by chunk. */
async function through(chunks: string[]): Promise<string[]> {
  const t = wholeLines();
  const out: string[] = [];
  t.on('data', (c: Buffer) => out.push(c.toString()));
  const ended = new Promise((r) => t.on('end', r));
  for (const c of chunks) t.write(Buffer.from(c));
  t.end();
  await ended;
  return out;
}

test('only whole lines pass; a last line without newline is ended at the end', async () => {
  assert.deepEqual(await through(['{"a":1}\n{"b"', ':2}\n{"c":', '3}']), ['{"a":1}\n', '{"b":2}\n', '{"c":3}\n']);
  assert.deepEqual(await through(['x', 'y', 'z\n']), ['xyz\n']);
});

test('any split of any text: every chunk out ends a line, and together they are the text', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.string({ unit: fc.constantFrom('a', 'b', '{', '"', '\n') }), { maxLength: 20 }), async (chunks) => {
      const out = await through(chunks);
      const text = chunks.join('');
      for (const c of out) assert.ok(c.endsWith('\n'), JSON.stringify(c));
      assert.equal(out.join(''), text === '' || text.endsWith('\n') ? text : `${text}\n`);
    }),
  );
});

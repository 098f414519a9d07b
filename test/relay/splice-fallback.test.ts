/** The loader's refusals: a missing or broken addon gives null and a reason, never a throw. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { SPLICE_ADDON_ENV, defaultAddonPath } from '../../src/relay/native';
import { loadSpliceRelay, spliceUnavailableReason } from '../../src/relay/splice-relay';

describe('loadSpliceRelay fallback', () => {
  it('returns null with the reason when the .node file is absent (parameter)', () => {
    const missing = path.join(os.tmpdir(), `no-such-dir-${process.pid}`, 'splice_relay.node');
    assert.equal(loadSpliceRelay({ addonPath: missing }), null);
    assert.match(spliceUnavailableReason() ?? '', /not built/);
    assert.ok(spliceUnavailableReason()!.includes(missing));
  });

  it('returns null when the environment points at a missing file', () => {
    const missing = path.join(os.tmpdir(), `no-such-env-${process.pid}.node`);
    const saved = process.env[SPLICE_ADDON_ENV];
    process.env[SPLICE_ADDON_ENV] = missing;
    try {
      assert.equal(loadSpliceRelay(), null);
      assert.ok(spliceUnavailableReason()!.includes(missing));
    } finally {
      if (saved === undefined) delete process.env[SPLICE_ADDON_ENV];
      else process.env[SPLICE_ADDON_ENV] = saved;
    }
  });

  it('returns null when the file is not a loadable addon', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'splice-fallback-'));
    const bogus = path.join(dir, 'splice_relay.node');
    fs.writeFileSync(bogus, 'not an ELF object');
    try {
      assert.equal(loadSpliceRelay({ addonPath: bogus }), null);
      assert.match(spliceUnavailableReason() ?? '', /failed to load/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loads the built addon from the default path and clears the reason', { skip: !fs.existsSync(defaultAddonPath()) && 'addon not built' }, () => {
    const relay = loadSpliceRelay();
    assert.ok(relay);
    assert.equal(relay.name, 'splice');
    assert.equal(spliceUnavailableReason(), null);
  });
});

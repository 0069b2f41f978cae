/* docs/config.md must match what scripts/gen-config-doc.ts renders from the tables, and name every setting and key. */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DOC_PATH, renderConfigDoc } from '../../scripts/gen-config-doc.js';
import { DATABASE_KEYS, USER_KEYS } from '../../src/config/connstring.js';
import { AREAS, PARAMS } from '../../src/config/params.js';

describe('docs/config.md', () => {
  const onDisk = readFileSync(DOC_PATH, 'utf8');

  it('is up to date with the tables (run `npm run docs:config` if this fails)', () => {
    assert.equal(onDisk, renderConfigDoc());
  });

  it('names every setting in its own table row', () => {
    for (const p of PARAMS) assert.ok(onDisk.includes(`| \`${p.name}\` |`), p.name);
  });

  it('names every [databases] and [users] key', () => {
    for (const k of [...DATABASE_KEYS, ...USER_KEYS]) assert.ok(onDisk.includes(`| \`${k.name}\` |`), k.name);
  });

  it('has a heading per area and every setting belongs to one', () => {
    for (const a of AREAS) assert.ok(onDisk.includes(`### ${a.title}\n`), a.title);
    const areas = new Set(AREAS.map((a) => a.area));
    for (const p of PARAMS) assert.ok(areas.has(p.area), p.name);
  });
});

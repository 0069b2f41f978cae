/* PgBouncer-compatible command-line parsing. */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs, UsageError } from '../../src/cli/args.js';

test('short flags combine and repeat like PgBouncer', () => {
  const a = parseArgs(['-dqvv', 'pgbouncer.ini']);
  assert.equal(a.daemon, true);
  assert.equal(a.quiet, true);
  assert.equal(a.verbose, 2);
  assert.equal(a.configFile, 'pgbouncer.ini');
});

test('long flags and -u forms', () => {
  const a = parseArgs(['--verbose', '--quiet', '--user=postgres', 'x.ini']);
  assert.equal(a.verbose, 1);
  assert.equal(a.quiet, true);
  assert.equal(a.user, 'postgres');
  assert.equal(parseArgs(['-u', 'bob', 'x.ini']).user, 'bob');
  assert.equal(parseArgs(['-ubob', 'x.ini']).user, 'bob');
  assert.equal(parseArgs(['-V']).version, true);
  assert.equal(parseArgs(['--help']).help, true);
});

test('bad usage is reported, not guessed', () => {
  assert.throws(() => parseArgs(['-x', 'a.ini']), UsageError);
  assert.throws(() => parseArgs(['--nope']), UsageError);
  assert.throws(() => parseArgs(['a.ini', 'b.ini']), UsageError);
  assert.throws(() => parseArgs(['-u']), UsageError);
});

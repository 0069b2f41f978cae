/*
 * The settings table, docs/config.md and examples/pgtide.ini agree: every setting documented and listed with its
 * default, nothing documented or listed that does not exist; the ini examples of README.md, docs/ and examples/ load
 * without warnings. The last group shows each check failing on a broken copy.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DOC_PATH, renderConfigDoc } from '../../scripts/gen-config-doc.js';
import {
  EXAMPLE_INI_PATH,
  checkConfigDoc,
  checkExampleIni,
  checkIniSnippet,
  documentationIniSnippets,
  isTemplate,
  markdownIniBlocks,
  readExampleSettings,
  yamlIniBlocks,
} from '../../scripts/check-config-docs.js';
import { DATABASE_KEYS, USER_KEYS } from '../../src/config/connstring.js';
import { parseConfigText } from '../../src/config/loader.js';
import { AREAS, PARAMS, type ParamDef } from '../../src/config/params.js';

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

  it('documents no setting or key that does not exist, and each once', () => {
    assert.deepEqual(checkConfigDoc(onDisk), []);
  });
});

describe('examples/pgtide.ini', () => {
  const text = readFileSync(EXAMPLE_INI_PATH, 'utf8');

  it('lists every setting once, commented out with its default unless in force, and nothing else', () => {
    assert.deepEqual(checkExampleIni(text), []);
    assert.equal(readExampleSettings(text).length, PARAMS.length);
  });

  it('is a working configuration: it loads without warnings and its lines in force take effect', () => {
    const cfg = parseConfigText(text, 'examples/pgtide.ini');
    assert.deepEqual(cfg.warnings.map((w) => w.message), []);
    assert.equal(cfg.settings.pool_mode, 'transaction');
    assert.equal(cfg.settings.auth_type, 'scram-sha-256');
    assert.deepEqual(cfg.settings.admin_users, ['pgbouncer']);
    assert.equal(cfg.databases.get('app')?.dbname, 'app');
    assert.ok(cfg.authFile.has('app') && cfg.authFile.has('pgbouncer'), 'examples/userlist.txt has app and pgbouncer');
  });
});

describe('ini examples in README.md, docs/ and examples/', () => {
  const snippets = documentationIniSnippets();

  // Shown on purpose: the PgBouncer guide's own file, with the two PostgreSQL settings PgBouncer does not have.
  const expected = (msg: string): boolean =>
    msg.startsWith('README.md:') && /unknown setting "(timeout|idle_in_transaction_session_timeout)"/.test(msg);

  it('are found (README, docs, examples/*.ini, the Kubernetes ConfigMap)', () => {
    const files = new Set(snippets.map((s) => s.file));
    for (const f of ['README.md', 'docs/getting-started.md', 'examples/pgtide.ini', 'examples/pgbouncer.ini',
      'examples/docker/pgbouncer.ini', 'examples/systemd/pgbouncer.ini', 'examples/kubernetes/configmap.yaml']) {
      assert.ok(files.has(f), `${f} (found: ${[...files].join(', ')})`);
    }
  });

  it('load with no error and no warning: every setting and key named exists and every value is valid', () => {
    const problems = snippets.flatMap((s) => checkIniSnippet(s)).filter((m) => !expected(m));
    assert.deepEqual(problems, []);
  });

  it("the README's copy of the guide's file still warns about its two PostgreSQL-isms", () => {
    const seen = snippets.filter((s) => s.file === 'README.md').flatMap((s) => checkIniSnippet(s)).filter(expected);
    assert.equal(seen.length, 2, seen.join('\n'));
  });
});

describe('the checks fail when they should', () => {
  const ini = readFileSync(EXAMPLE_INI_PATH, 'utf8');
  const doc = readFileSync(DOC_PATH, 'utf8');

  it('a setting missing from examples/pgtide.ini', () => {
    const broken = ini.replace(/^;server_lifetime = 3600\n/m, '');
    assert.notEqual(broken, ini);
    assert.deepEqual(checkExampleIni(broken), ['examples/pgtide.ini: setting server_lifetime is missing']);
  });

  it('a setting in the table that the example does not know (a new setting added without documenting it)', () => {
    const extra: ParamDef = { name: 'brand_new_setting', kind: 'int', default: '1', reloadable: true, status: 'supported', area: 'generic', doc: 'x' };
    assert.deepEqual(checkExampleIni(ini, 'examples/pgtide.ini', [...PARAMS, extra]), ['examples/pgtide.ini: setting brand_new_setting is missing']);
    const problems = checkConfigDoc(doc, [...PARAMS, extra]);
    assert.deepEqual(problems, ['docs/config.md ([pgbouncer] settings): brand_new_setting is not documented']);
  });

  it('a setting that does not exist, commented out or in force, and one listed twice', () => {
    const broken = ini.replace(/^;server_lifetime = 3600$/m, ';server_lifetime = 3600\n;server_life_time = 3600\nserver_lifetime = 10');
    const problems = checkExampleIni(broken);
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0]!, /^examples\/pgtide\.ini:\d+: "server_life_time" is not a pgtide setting$/);
    assert.match(problems[1]!, /^examples\/pgtide\.ini:\d+: "server_lifetime" is already listed at line \d+$/);
  });

  it('a commented-out value that is not the default, an invalid value in force', () => {
    const broken = ini.replace(/^;server_lifetime = 3600$/m, ';server_lifetime = 3000').replace(/^max_client_conn = 1000$/m, 'max_client_conn = many');
    const problems = checkExampleIni(broken);
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0]!, /max_client_conn.*expected an integer/);
    assert.match(problems[1]!, /commented-out server_lifetime must show its default "3600", not "3000"/);
  });

  it('a setting implemented since, or a PgBouncer setting called pgtide-only, in the explanations', () => {
    const implemented = PARAMS.map((p) => (p.name === 'syslog' ? { ...p, status: 'supported' as const } : p));
    assert.deepEqual(checkExampleIni(ini, 'examples/pgtide.ini', implemented).map((m) => m.replace(/:\d+:/, ':N:')), [
      'examples/pgtide.ini:N: syslog is implemented, so its explanation must not say "not yet implemented"',
    ]);
    const own = PARAMS.map((p) => (p.name === 'pool_mode' ? { ...p, pgtide: true } : p));
    assert.deepEqual(checkExampleIni(ini, 'examples/pgtide.ini', own).map((m) => m.replace(/:\d+:/, ':N:')), [
      'examples/pgtide.ini:N: pool_mode is pgtide\'s own, so its explanation must say "pgtide only"',
    ]);
  });

  it('docs/config.md documenting a setting or key that does not exist, or one twice', () => {
    const row = doc.split('\n').find((l) => l.startsWith('| `server_lifetime` |'))!;
    const broken = doc.replace(row, `${row}\n${row.replace('server_lifetime', 'server_life_time')}\n${row}`);
    assert.deepEqual(checkConfigDoc(broken), [
      'docs/config.md ([pgbouncer] settings): "server_lifetime" has 2 rows',
      'docs/config.md ([pgbouncer] settings): "server_life_time" is documented but does not exist',
    ]);
    const keyRow = doc.split('\n').find((l) => l.startsWith('| `pool_size` |'))!;
    assert.deepEqual(checkConfigDoc(doc.replace(keyRow, '')), ['docs/config.md ([databases] connection string keys): pool_size is not documented']);
  });

  it('an ini snippet in the docs with a wrong setting, key or value, reported at its line', () => {
    const md = 'intro\n\n```ini\n[databases]\napp = host=db prot=5432\n\n[pgbouncer]\npool_mode = transactional\nmax_clients = 10\n```\n';
    const [snippet] = markdownIniBlocks('docs/x.md', md);
    // an invalid value stops the loader: its errors come alone, the warnings once the errors are mended
    const problems = checkIniSnippet(snippet!);
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0]!, /^docs\/x\.md:8: invalid value "transactional" for pool_mode/);
    const warned = checkIniSnippet(markdownIniBlocks('docs/x.md', md.replace('transactional', 'transaction'))[0]!);
    assert.equal(warned.length, 2, warned.join('\n'));
    assert.match(warned[0]!, /^docs\/x\.md:5: .*"prot"/);
    assert.match(warned[1]!, /^docs\/x\.md:9: unknown setting "max_clients"/);
    assert.ok(isTemplate(markdownIniBlocks('docs/x.md', md.replace('host=db', 'host=<your host>'))[0]!));
    assert.ok(!isTemplate({ file: 'x', line: 1, text: 'server_check_query = <empty>' }));
    const bare = checkIniSnippet({ file: 'docs/y.md', line: 20, text: 'auth_type = scram-sha-256\nauth_fiel = users.txt' });
    assert.equal(bare.length, 1);
    assert.match(bare[0]!, /^docs\/y\.md:21: unknown setting "auth_fiel"/);
    const yaml = 'data:\n  pgbouncer.ini: |\n    [pgbouncer]\n    pool_mod = session\n  userlist.txt: |\n    "a" "b"\n';
    const [y] = yamlIniBlocks('examples/k.yaml', yaml);
    assert.match(checkIniSnippet(y!)[0]!, /^examples\/k\.yaml:4: unknown setting "pool_mod"/);
  });
});

/* The before/after report of `pgtide bench`: the seed's six rows from measured steps, and the Markdown around them. */

export type Mode = 'direct' | 'pooled';

/** One pgbench run at one concurrency, direct or through the pooler, with what was sampled during it. */
export interface StepResult {
  mode: Mode;
  clients: number;
  seconds: number;
  /** Completed with no aborted client, no failed request and exit code 0. */
  ok: boolean;
  /** Why not ok. */
  problem?: string;
  /** Requests (connect, the script's transactions, disconnect) per second. */
  requestsPerSec?: number;
  /** SQL transactions per second (requests × transactions per request). */
  xactPerSec?: number;
  /** pgbench's average connection time, ms. */
  avgConnMs?: number;
  /** Per-request latency (the script's transactions, connection excluded), ms. */
  p50Ms?: number;
  p99Ms?: number;
  /** Most PostgreSQL backends for the database seen at once (not counting those there before the bench, nor the monitor). */
  backendsPeak?: number;
  /** Samples taken during the run. */
  samples: number;
  /** Server-side memory at its sampled peak: backends' PSS (+ pooler RSS growth), kB. */
  memoryKb?: number;
  /** The parts of memoryKb: the backends counted at that sample, their PSS, the pooler's RSS growth. */
  memoryBackends?: number;
  backendPssKb?: number;
  poolerGrowthKb?: number;
  /** Why memory is n/a. */
  memoryNote?: string;
}

export interface Row {
  metric: string;
  before: string;
  after: string;
  gain: string;
}

/** The highest tested concurrency at which `mode` completed without errors. */
export function servedUsers(steps: StepResult[], mode: Mode): number | undefined {
  const ok = steps.filter((s) => s.mode === mode && s.ok).map((s) => s.clients);
  return ok.length ? Math.max(...ok) : undefined;
}

/** The highest concurrency that both direct and pooled served without errors. */
export function comparisonPoint(steps: StepResult[]): number | undefined {
  const direct = new Set(steps.filter((s) => s.mode === 'direct' && s.ok).map((s) => s.clients));
  const both = steps.filter((s) => s.mode === 'pooled' && s.ok && direct.has(s.clients)).map((s) => s.clients);
  return both.length ? Math.max(...both) : undefined;
}

/** A number with about three significant digits and thousands separators. */
export function fmt(n: number): string {
  const abs = Math.abs(n);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "-96%" for a value that should go down (before → after); "+2.7x" (the seed's style) for one that should go up. */
export function gain(before: number | undefined, after: number | undefined, better: 'lower' | 'higher'): string {
  if (before === undefined || after === undefined || !Number.isFinite(before) || !Number.isFinite(after) || before <= 0) return 'n/a';
  if (better === 'lower' || after < before) {
    const pct = ((after - before) / before) * 100;
    return `${pct > 0 ? '+' : ''}${pct.toFixed(Math.abs(pct) < 10 ? 1 : 0)}%`;
  }
  const r = after / before;
  return `+${r.toFixed(r < 10 ? 1 : 0)}x`;
}

function find(steps: StepResult[], mode: Mode, clients: number): StepResult | undefined {
  return steps.find((s) => s.mode === mode && s.clients === clients);
}

/**
 * The seed's six rows with both sides at `clients`. A side whose run had errors gets a dagger (†) on its values;
 * `notes` receives the footnotes (errors, n/a reasons).
 */
export function seedRows(steps: StepResult[], clients: number, levels: number[], notes: string[]): Row[] {
  const d = find(steps, 'direct', clients);
  const p = find(steps, 'pooled', clients);
  const mark = (s: StepResult | undefined) => (s && !s.ok ? ' †' : '');
  const val = (s: StepResult | undefined, v: number | undefined, unit: string) =>
    !s ? 'not run' : v === undefined ? 'n/a' : `${fmt(v)}${unit}${mark(s)}`;
  const per = (s: StepResult | undefined, v: number | undefined) => (s && v !== undefined ? v / clients : undefined);
  const rows: Row[] = [];

  const dConn = per(d, d?.backendsPeak);
  const pConn = per(p, p?.backendsPeak);
  rows.push({ metric: 'Connections per user', before: val(d, dConn, ''), after: val(p, pConn, ''), gain: gain(dConn, pConn, 'lower') });
  rows.push({ metric: 'Connection setup time', before: val(d, d?.avgConnMs, ' ms'), after: val(p, p?.avgConnMs, ' ms'), gain: gain(d?.avgConnMs, p?.avgConnMs, 'lower') });

  const top = Math.max(...levels);
  const du = servedUsers(steps, 'direct');
  const pu = servedUsers(steps, 'pooled');
  const users = (u: number | undefined, mode: Mode) => {
    if (u === undefined) {
      const failed = steps.filter((s) => s.mode === mode).map((s) => s.clients);
      return failed.length ? `none (errors from ${Math.min(...failed)})` : 'not run';
    }
    return u === top ? `${u} (highest tested)` : String(u);
  };
  rows.push({ metric: 'Concurrent users', before: users(du, 'direct'), after: users(pu, 'pooled'), gain: gain(du, pu, 'higher') });

  const mb = (s: StepResult | undefined) => (s?.memoryKb !== undefined ? s.memoryKb / 1024 / clients : undefined);
  const dMem = mb(d);
  const pMem = mb(p);
  rows.push({ metric: 'Memory per connection', before: val(d, dMem, ' MB'), after: val(p, pMem, ' MB'), gain: gain(dMem, pMem, 'lower') });
  for (const s of [d, p]) {
    if (!s) continue;
    const side = s.mode === 'direct' ? 'before' : 'after';
    if (s.memoryKb === undefined) {
      if (s.memoryNote) notes.push(`memory ${side}: n/a: ${s.memoryNote}`);
    } else if (s.backendPssKb !== undefined) {
      const growth = s.poolerGrowthKb !== undefined ? ` + the pooler's RSS growth ${fmt(s.poolerGrowthKb / 1024)} MB` : '';
      notes.push(`memory ${side}: ${s.memoryBackends ?? '?'} backends' PSS ${fmt(s.backendPssKb / 1024)} MB${growth}, ÷ ${clients} clients`);
    }
  }

  rows.push({ metric: 'Query latency p99', before: val(d, d?.p99Ms, ' ms'), after: val(p, p?.p99Ms, ' ms'), gain: gain(d?.p99Ms, p?.p99Ms, 'lower') });
  rows.push({ metric: 'Throughput', before: val(d, d?.xactPerSec, '/sec'), after: val(p, p?.xactPerSec, '/sec'), gain: gain(d?.xactPerSec, p?.xactPerSec, 'higher') });

  for (const s of [d, p]) if (s && !s.ok) notes.push(`† ${s.mode === 'direct' ? 'before (direct)' : 'after (through the pooler)'} at ${clients} clients did not complete without errors: ${s.problem ?? 'errors'}`);
  return rows;
}

/** Rows as a Markdown table in the seed's layout (metric in bold, gain in bold). */
export function markdownTable(rows: Row[]): string {
  const lines = ['| Metric | Before | After | Gain |', '| --- | --- | --- | --- |'];
  for (const r of rows) lines.push(`| **${r.metric}** | ${r.before} | ${r.after} | ${r.gain === 'n/a' ? 'n/a' : `**${r.gain}**`} |`);
  return lines.join('\n');
}

/** Every step, for the details section. */
export function stepsTable(steps: StepResult[]): string {
  const lines = [
    '| Clients | Target | Errors | Requests/s | Transactions/s | Connection setup | Latency p50 | Latency p99 | Backends (peak) | Memory per connection |',
    '| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const o = (v: number | undefined, unit = '') => (v === undefined ? 'n/a' : `${fmt(v)}${unit}`);
  const sorted = [...steps].sort((a, b) => a.clients - b.clients || (a.mode === 'direct' ? -1 : 1));
  for (const s of sorted) {
    lines.push(`| ${s.clients} | ${s.mode === 'direct' ? 'direct' : 'pooled'} | ${s.ok ? 'none' : (s.problem ?? 'yes').replace(/\|/g, '\\|')} | ${o(s.requestsPerSec)} | ${o(s.xactPerSec)} | ` +
      `${o(s.avgConnMs, ' ms')} | ${o(s.p50Ms, ' ms')} | ${o(s.p99Ms, ' ms')} | ${s.backendsPeak ?? 'n/a'} | ${o(s.memoryKb === undefined ? undefined : s.memoryKb / 1024 / s.clients, ' MB')} |`);
  }
  return lines.join('\n');
}

export interface ReportMeta {
  date: string;
  pgtide: string;
  /** Redacted URLs / description of what was measured. */
  direct: string;
  pooled: string;
  postgres?: string;
  maxConnections?: number;
  levels: number[];
  seconds: number;
  afterClients: number;
  transactionsPerRequest: number;
  protocol: string;
  notes: string[];
}

export interface Report {
  comparisonClients?: number;
  markdown: string;
}

/** The whole Markdown report: the seed's table at the comparison point and at the seed's "after" load, then every step. */
export function renderReport(steps: StepResult[], m: ReportMeta): Report {
  const cmp = comparisonPoint(steps);
  const out: string[] = [`# pgtide bench --before-after (${m.date})`, ''];
  out.push(`Before: ${m.direct}. After: ${m.pooled}.`);
  out.push(`${m.postgres ?? 'PostgreSQL'}${m.maxConnections !== undefined ? `, max_connections = ${m.maxConnections}` : ''}; ${m.pgtide}. ` +
    `Load: pgbench -C (a new connection per request), each request ${m.transactionsPerRequest} short transactions, -M ${m.protocol}, ` +
    `${m.seconds} s per step at ${m.levels.join(', ')} clients.`);
  out.push('');
  const section = (title: string, clients: number, intro: string) => {
    const notes: string[] = [];
    const rows = seedRows(steps, clients, m.levels, notes);
    out.push(`## ${title}`, '', intro, '', markdownTable(rows), '');
    if (notes.length) out.push(...notes.map((n) => `- ${n}`), '');
  };
  if (cmp !== undefined) {
    section(`At ${cmp} clients (the highest concurrency both served without errors)`, cmp,
      `Both sides under the same load: ${cmp} concurrent clients ("users"), each opening a connection per request.`);
  } else {
    out.push('## No common concurrency', '', 'No concurrency level completed without errors both directly and through the pooler; see the steps below.', '');
  }
  if (m.afterClients !== cmp && steps.some((s) => s.clients === m.afterClients)) {
    section(`At ${m.afterClients} clients (the seed's "after" load)`, m.afterClients,
      `Both sides at the seed's "100+ users"; a side marked † had errors there (failed requests are not counted in its throughput).`);
  }
  out.push('## Every step', '', stepsTable(steps), '');
  out.push('## How each row is measured', '',
    '- **Connections per user**: the most PostgreSQL backends for the database seen at once in pg_stat_activity (sampled during the run; backends that existed before the bench and the monitoring connection not counted), divided by the clients. With -C a client holds one connection while a request runs and none between requests, so direct is close to 1.',
    '- **Connection setup time**: pgbench\'s "average connection time" with -C: from starting a connection until it is ready for queries, averaged over every connection of the run.',
    '- **Concurrent users**: the highest tested concurrency whose run completed with no aborted client and no failed request.',
    '- **Memory per connection**: server-side memory at its sampled peak divided by the clients: the PSS (/proc/<pid>/smaps_rollup) of the PostgreSQL backends, plus, through the pooler, the growth of the pooler\'s RSS since it started.',
    `- **Query latency p99**: 99th percentile of pgbench's per-request latency (-l logs): the request's ${m.transactionsPerRequest} transactions, from the first query to the last answer; connecting is in its own row.`,
    `- **Throughput**: SQL transactions per second = pgbench's requests per second (connection time included) × ${m.transactionsPerRequest}.`,
    '');
  if (m.notes.length) out.push('## Notes', '', ...m.notes.map((n) => `- ${n}`), '');
  return { comparisonClients: cmp, markdown: out.join('\n') };
}

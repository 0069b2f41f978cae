/* `pgtide bench …`: the subcommand's entry: arguments, help, the mode, and errors as one line with exit code 1. */

import { subcommandArgs } from './args.js';
import { BENCH_USAGE, parseBenchArgs } from './bench-args.js';

/** Run `pgtide bench` with the arguments after "bench"; resolves to the exit code. */
export async function benchMain(argv: string[]): Promise<number> {
  const args = subcommandArgs('bench', argv, parseBenchArgs, BENCH_USAGE);
  if (typeof args === 'number') return args;
  if (!args.beforeAfter && !args.compare) {
    process.stderr.write(`pgtide bench: no mode given (--before-after or --compare)\n\n${BENCH_USAGE}`);
    return 1;
  }
  const { BenchError, runBeforeAfter } = await import('../bench/before-after.js');
  try {
    if (args.compare) return await (await import('../bench/compare.js')).runCompare(args);
    return await runBeforeAfter(args);
  } catch (err) {
    if (err instanceof BenchError) {
      process.stderr.write(`pgtide bench: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

/* `pgtide demo …`: the subcommand's entry: arguments, help, and a problem before the demo is up as one line with exit
 * code 1. */

import { subcommandArgs } from './args.js';
import { DEMO_USAGE, parseDemoArgs } from './demo-args.js';

/** Run `pgtide demo` with the arguments after "demo"; resolves to the exit code once the demo has stopped. */
export async function demoMain(argv: string[]): Promise<number> {
  const args = subcommandArgs('demo', argv, parseDemoArgs, DEMO_USAGE);
  if (typeof args === 'number') return args;
  const { Interrupted, runDemo } = await import('../demo/demo.js');
  try {
    return await runDemo(args);
  } catch (err) {
    if (err instanceof Interrupted) {
      process.stdout.write('pgtide demo: stopped before it was up; what it had started is stopped and deleted\n');
      return 130;
    }
    process.stderr.write(`pgtide demo: ${(err as Error).message}\n`);
    return 1;
  }
}

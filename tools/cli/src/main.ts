#!/usr/bin/env node
/** Entry point of the `flywheel` command (package bin). */
import { run } from './cli.ts';

const code = await run(process.argv.slice(2), {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  env: process.env,
  tty: process.stdout.isTTY === true,
});
process.exitCode = code;

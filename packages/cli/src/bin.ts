#!/usr/bin/env node
/** The `disco` binary. Errors print one clear line and exit with status 1. */
import { buildProgram } from './commands.js';

buildProgram()
  .parseAsync(process.argv)
  .catch((err: Error) => {
    process.stderr.write(`disco: ${err.message}\n`);
    process.exit(1);
  });

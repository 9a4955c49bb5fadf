#!/usr/bin/env node
/** The `disco` binary. Errors print one clear line and exit with status 1. */
import { main } from './commands.js';

await main(process.argv);

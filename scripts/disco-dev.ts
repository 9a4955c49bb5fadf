// Runs the disco CLI from source (tsx resolves @disco/* through tsconfig paths): for development.
import { buildProgram } from '../packages/cli/src/commands.js';

await buildProgram().parseAsync(process.argv);

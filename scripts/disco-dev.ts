// Runs the disco CLI from source (tsx resolves @disco/* through tsconfig paths): for development.
import { main } from '../packages/cli/src/commands.js';

await main(process.argv);

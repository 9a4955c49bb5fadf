// Copies a trained encoder file into packages/cli/assets/teacher/ in half precision, with
// its training log, for `disco pipeline` to use by default.
// Usage: npx tsx scripts/ship-teacher.ts <run folder> "<the exact command that trained it>"
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../packages/core/src/index.js';
import { loadModelFile, saveModelFile } from '../packages/cli/src/model-file.js';

const [runDir, command] = process.argv.slice(2);
if (!runDir || !command) throw new Error('usage: ship-teacher.ts <run folder> "<command>"');
await initBackend({ backend: 'cpu' });
const m = loadModelFile(join(runDir, 'encoder.safetensors'));
const out = 'packages/cli/assets/teacher';
mkdirSync(out, { recursive: true });
saveModelFile(
  join(out, 'encoder.safetensors'),
  m.encoder,
  { ...m.info, notes: { ...m.info.notes, command } },
  'F16',
);
copyFileSync(join(runDir, 'config.json'), join(out, 'config.json'));
const metrics = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n');
writeFileSync(
  join(out, 'metrics-epochs.jsonl'),
  `${metrics.filter((l) => !l.includes('"kind":"step"')).join('\n')}\n`,
);
console.log(`wrote ${out}/encoder.safetensors (F16) with notes ${JSON.stringify(m.info.notes)}`);

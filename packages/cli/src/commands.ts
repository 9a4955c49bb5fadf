/**
 * The `disco` command line: `pretrain`, `distill`, `eval`, `pipeline`, `experiment`, and the
 * model tools `inspect`, `import`, `export` and `embed`, each with `--help`. Settings come from
 * defaults, then `--config FILE` (JSON), then flags.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { defaultWasmThreads, initBackend, tf, wasmThreads, type BackendName } from '@disco/core';
import {
  BENCH_CASES,
  formatProfile,
  peakRssMiB,
  profileDiscoStep,
  soakDiscoStep,
  timeDiscoStep,
  torchImgPerSec,
  wasmHeapMiB,
} from './bench.js';
import {
  defaultTeacherBn,
  TRAIN_DEFAULTS,
  TRAIN_METHODS,
  type TrainConfig,
  type TrainMethod,
} from './config.js';
import {
  EXPERIMENT_GRIDS,
  EXPERIMENT_METHODS,
  EXPERIMENT_STUDENTS,
  runExperiment,
} from './experiment.js';
import { evaluateBackbone } from './evaluate.js';
import { loadModelFile } from './model-file.js';
import { describeWeights, embed, exportModel, importModel, readWeights } from './model-io.js';
import { runTfjsExport } from './tfjs-export.js';
import { PIPELINE_STUDENT, PIPELINE_TEACHER, runPipeline } from './pipeline.js';
import { writeReport } from './report.js';
import { openTrainData } from './datasets.js';
import { train } from './train.js';

type Numeric = keyof TrainConfig;

const DATA_HELP =
  'data folder: Fashion-MNIST (IDX), CIFAR-10/100 or STL-10 (binary), or a folder of images ' +
  '(default: the shipped Fashion-MNIST subset)';

const NUMERIC_FLAGS: [string, Numeric, string][] = [
  ['--epochs <n>', 'epochs', 'training epochs'],
  ['--batch-size <n>', 'batchSize', 'images per step'],
  ['--lr <x>', 'lr', 'base learning rate (cosine schedule)'],
  ['--weight-decay <x>', 'weightDecay', 'L2 weight decay'],
  ['--queue-size <n>', 'queueSize', 'MoCo queue length K (a multiple of the batch size)'],
  ['--temperature <x>', 'temperature', 'InfoNCE temperature'],
  ['--moco-momentum <x>', 'mocoMomentum', 'key encoder EMA momentum'],
  ['--bn-group-size <n>', 'bnGroupSize', 'ghost-BN group size (per-device batch)'],
  ['--hidden-dim <n>', 'hiddenDim', 'projection head hidden width (0: one linear layer)'],
  ['--dim <n>', 'dim', 'embedding width (the projection head output)'],
  ['--width-multiplier <x>', 'widthMultiplier', 'backbone width multiplier'],
  ['--image-size <n>', 'imageSize', 'side of the training crops'],
  ['--seed <n>', 'seed', 'random seed'],
  ['--limit <n>', 'limit', 'use only the first N training images'],
  ['--distill-weight <x>', 'distillWeight', "weight of each view's consistency term"],
  ['--knn-every <n>', 'knnEvery', 'kNN monitor every N epochs (0: only at the end)'],
  ['--keep-checkpoints <n>', 'keepCheckpoints', 'checkpoints kept'],
  [
    '--checkpoint-every <n>',
    'checkpointEvery',
    'also checkpoint every N steps inside an epoch (0: only at epoch ends)',
  ],
  [
    '--micro-batch <n>',
    'microBatch',
    'run each batch as micro-batches of N images (whole BN groups), gradients summed',
  ],
];

/** Numeric settings of the distillation objectives: `disco distill` only. */
const DISTILL_NUMERIC_FLAGS: [string, Numeric, string][] = [
  [
    '--seed-queue-size <n>',
    'seedQueueSize',
    'SEED: queue of teacher embeddings K (0: --queue-size)',
  ],
  ['--seed-student-temperature <x>', 'seedStudentTemperature', 'SEED: student temperature (0.2)'],
  ['--seed-teacher-temperature <x>', 'seedTeacherTemperature', 'SEED: teacher temperature (1e-4)'],
  [
    '--compress-queue-size <n>',
    'compressQueueSize',
    'CompRess: bank size K (0: --queue-size; 2q: must be --queue-size)',
  ],
  [
    '--compress-student-temperature <x>',
    'compressStudentTemperature',
    'CompRess: student temperature (0.04)',
  ],
  [
    '--compress-teacher-temperature <x>',
    'compressTeacherTemperature',
    'CompRess: teacher temperature (0.04)',
  ],
];

function parseNumber(flag: string) {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) {
      throw new Error(`option ${flag}: '${value}' is not a number`);
    }
    return n;
  };
}

function addTrainFlags(cmd: Command): Command {
  cmd
    .option('--data <dir>', DATA_HELP)
    .option('--arch <name>', 'backbone (see disco pretrain --help)')
    .option('--small-stem', 'small-image stem (CIFAR-style ResNet stem)')
    .addOption(
      new Option('--output <kind>', 'backbone feature: pooled, or head (MobileNetV3)').choices([
        'pooled',
        'head',
      ]),
    )
    .option('--config <file>', 'JSON file of settings (flags override it)')
    .option('--out <dir>', 'run folder', undefined)
    .option('--resume', 'continue from the newest valid checkpoint in the run folder')
    .option('--quiet', 'no progress bars');
  for (const [flag, , help] of NUMERIC_FLAGS)
    cmd.option(flag, help, parseNumber(flag.split(' ')[0]!));
  return cmd;
}

function addDistillFlags(cmd: Command): Command {
  for (const [flag, , help] of DISTILL_NUMERIC_FLAGS)
    cmd.option(flag, help, parseNumber(flag.split(' ')[0]!));
  return cmd;
}

function backendOption(): Option {
  return new Option('--backend <name>', 'force a backend (also DISCO_BACKEND)').choices([
    'tensorflow-gpu',
    'tensorflow',
    'wasm',
    'cpu',
  ]);
}

/** Fields a config file may set that have no default: their JSON types. */
const OPTIONAL_FIELDS: Record<string, 'string' | 'number'> = {
  // A run's own config.json can be given back: its method is the command's anyway.
  method: 'string',
  arch: 'string',
  data: 'string',
  limit: 'number',
  teacher: 'string',
};

/**
 * Reads a `--config` JSON file: an object whose fields are `TrainConfig`'s, each of its type
 * (ranges are checked later with the rest of the config).
 * @throws naming the file, and the field and value where one is wrong.
 */
function readConfigFile(path: string): Partial<TrainConfig> {
  if (!existsSync(path)) throw new Error(`--config ${path}: file not found`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`--config ${path}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(
      `--config ${path}: must be a JSON object of settings, got ${JSON.stringify(parsed)}`,
    );
  }
  const types: Record<string, string> = { ...OPTIONAL_FIELDS };
  for (const [k, v] of Object.entries(TRAIN_DEFAULTS)) types[k] = typeof v;
  for (const [field, value] of Object.entries(parsed)) {
    const want = types[field];
    if (want === undefined) {
      throw new Error(
        `--config ${path}: unknown field '${field}'; the fields are ${Object.keys(types).sort().join(', ')}`,
      );
    }
    if (typeof value !== want) {
      throw new Error(
        `--config ${path}: field '${field}' is ${JSON.stringify(value)}: must be a ${want}`,
      );
    }
  }
  return parsed as Partial<TrainConfig>;
}

function resolveConfig(
  method: TrainConfig['method'],
  flags: Record<string, unknown>,
  base: Partial<TrainConfig>,
): TrainConfig {
  const fromFile = typeof flags.config === 'string' ? readConfigFile(flags.config) : {};
  const fromFlags: Partial<TrainConfig> = {};
  for (const [, key] of [...NUMERIC_FLAGS, ...DISTILL_NUMERIC_FLAGS])
    if (flags[key] !== undefined) (fromFlags as Record<string, unknown>)[key] = flags[key];
  if (flags.arch !== undefined) fromFlags.arch = flags.arch as string;
  if (flags.data !== undefined) fromFlags.data = flags.data as string;
  if (flags.smallStem) fromFlags.smallStem = true;
  if (flags.output !== undefined) fromFlags.output = flags.output as 'pooled' | 'head';
  if (flags.teacher !== undefined) fromFlags.teacher = flags.teacher as string;
  if (flags.teacherBn !== undefined) fromFlags.teacherBn = flags.teacherBn as 'train' | 'eval';
  if (flags.mseViews !== undefined) fromFlags.mseViews = flags.mseViews as 'both' | 'first';
  if (flags.onlyMse) fromFlags.onlyMse = true;
  // distill: --method, else a distillation method the config file names, else DisCo.
  const chosen =
    method === 'moco'
      ? method
      : ((flags.method as TrainMethod | undefined) ??
        (fromFile.method !== undefined && fromFile.method !== 'moco' ? fromFile.method : method));
  // The teacher's BatchNorm mode follows the method unless it is set (defaultTeacherBn).
  const teacherBn = fromFlags.teacherBn ?? fromFile.teacherBn ?? defaultTeacherBn(chosen);
  return {
    ...TRAIN_DEFAULTS,
    ...base,
    ...fromFile,
    ...fromFlags,
    method: chosen,
    teacherBn,
  } as TrainConfig;
}

function parseList(flag: string) {
  return (value: string) =>
    value.split(',').map((part) => {
      const n = Number(part);
      if (part.trim() === '' || !Number.isFinite(n)) {
        throw new Error(`option ${flag}: '${part}' in '${value}' is not a number`);
      }
      return n;
    });
}

async function startBackend(flags: Record<string, unknown>): Promise<void> {
  const name = await initBackend({
    backend: flags.backend as BackendName | undefined,
    ...(typeof flags.threads === 'number' ? { threads: flags.threads } : {}),
  });
  const threads = name === 'wasm' ? wasmThreads() : 0;
  process.stderr.write(
    `backend: ${name}${threads > 0 ? ` (${threads} thread${threads > 1 ? 's' : ''})` : ''}\n`,
  );
}

/** Runs the `disco` program on `argv`; an error prints one line and exits with status 1. */
export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    process.stderr.write(`disco: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

/** Builds the `disco` program. */
export function buildProgram(): Command {
  const program = new Command('disco')
    .description(
      'Self-supervised distillation of small image models (MoCo v2 + DisCo) on TensorFlow.js',
    )
    .showHelpAfterError();

  addTrainFlags(
    program
      .command('pretrain')
      .description('train an encoder with MoCo v2 alone (a teacher or a baseline student)'),
  )
    .addOption(backendOption())
    .action(async (flags) => {
      await startBackend(flags);
      const cfg = resolveConfig('moco', flags, PIPELINE_TEACHER);
      await train(cfg, {
        runDir: flags.out ?? join('runs', `pretrain-${cfg.arch}`),
        resume: flags.resume,
        quiet: flags.quiet,
      });
    });

  addDistillFlags(
    addTrainFlags(
      program
        .command('distill')
        .description(
          'train a student from a frozen teacher: DisCo (MoCo v2 plus consistency), SEED or CompRess',
        ),
    ),
  )
    .requiredOption('--teacher <file>', 'teacher encoder file (written by disco pretrain)')
    .addOption(
      new Option(
        '--method <name>',
        'disco (MoCo v2 + consistency), seed (SEED), compress-1q / compress-2q (CompRess); ' +
          'SEED and CompRess train without InfoNCE (default: disco)',
      ).choices(TRAIN_METHODS.filter((m) => m !== 'moco')),
    )
    .addOption(
      new Option(
        '--teacher-bn <mode>',
        'teacher BatchNorm mode (default: train for disco, as the official DisCo code; ' +
          'eval for seed and compress, as their papers)',
      ).choices(['train', 'eval']),
    )
    .addOption(
      new Option(
        '--mse-views <which>',
        'DisCo: consistency loss on both views (the paper) or the first only (default: both)',
      ).choices(['both', 'first']),
    )
    .option(
      '--only-mse',
      "DisCo's only-mse ablation: the consistency loss alone (InfoNCE weight 0)",
    )
    .addOption(backendOption())
    .action(async (flags) => {
      await startBackend(flags);
      const cfg = resolveConfig('disco', flags, PIPELINE_STUDENT);
      const name = cfg.method === 'disco' ? 'distill' : cfg.method;
      await train(cfg, {
        runDir: flags.out ?? join('runs', `${name}-${cfg.arch}`),
        resume: flags.resume,
        quiet: flags.quiet,
      });
    });

  program
    .command('eval')
    .description('kNN and linear-probe top-1 of an encoder file on Fashion-MNIST')
    .argument('<model>', 'encoder file (encoder.safetensors of a run)')
    .option('--data <dir>', DATA_HELP)
    .option('--seed <n>', 'seed of the linear probe', parseNumber('--seed'), 0)
    .addOption(backendOption())
    .action(async (model: string, flags) => {
      await startBackend(flags);
      const m = loadModelFile(model);
      const inChannels = (m.backbone.net as { inChannels?: number }).inChannels;
      const d = await openTrainData({
        data: flags.data,
        imageSize: m.info.imageSize,
        ...(inChannels === 1 || inChannels === 3 ? { channels: inChannels } : {}),
      });
      if (!d.test) throw new Error(`eval: ${d.describe}; unlabelled data cannot be scored`);
      const { evalTrain: tr, test } = d;
      // The model's own normalisation, the one it was trained with.
      const r = await evaluateBackbone(m.backbone, tr, test, {
        imageSize: m.info.imageSize,
        mean: m.info.mean,
        std: m.info.std,
        seed: flags.seed,
      });
      process.stdout.write(
        `${model}: ${m.info.spec.arch}, kNN top-1 ${(100 * r.knnTop1).toFixed(2)}%, ` +
          `linear top-1 ${(100 * r.linearTop1).toFixed(2)}% (${tr.count} train / ${test.count} test)\n`,
      );
    });

  program
    .command('inspect')
    .description('list the tensors of a checkpoint and recognise its architecture')
    .argument('<file>', 'safetensors, or a PyTorch .pth / .pth.tar checkpoint')
    .option('--prefix <p>', "prefix to strip instead of detecting one ('' keeps names)")
    .option('--arch <name>', 'compare with this architecture only')
    .addOption(backendOption())
    .action(async (file: string, flags) => {
      await startBackend(flags);
      const w = readWeights(file, flags.prefix !== undefined ? { prefix: flags.prefix } : {});
      process.stdout.write(`${describeWeights(w, { arch: flags.arch })}\n`);
    });

  program
    .command('import')
    .description('import a PyTorch or safetensors checkpoint as a model folder')
    .argument('<file>', 'safetensors, or a PyTorch .pth / .pth.tar checkpoint')
    .requiredOption('--out <dir>', 'model folder to write')
    .option('--arch <name>', 'architecture (default: detected)')
    .option('--prefix <p>', "prefix to strip instead of detecting one ('' keeps names)")
    .option('--image-size <n>', 'image side the model expects', parseNumber('--image-size'), 224)
    .option(
      '--mean <list>',
      'per-channel mean of [0, 1] images, comma-separated',
      parseList('--mean'),
    )
    .option('--std <list>', 'per-channel std of [0, 1] images, comma-separated', parseList('--std'))
    .addOption(
      new Option('--output <kind>', 'backbone feature: pooled, or head (MobileNetV3)').choices([
        'pooled',
        'head',
      ]),
    )
    .addOption(backendOption())
    .action(async (file: string, flags) => {
      await startBackend(flags);
      const r = importModel(file, {
        out: flags.out,
        arch: flags.arch,
        prefix: flags.prefix,
        imageSize: flags.imageSize,
        mean: flags.mean,
        std: flags.std,
        output: flags.output,
      });
      const head = r.match.head
        ? `projection head ${r.match.head.hiddenDim} -> ${r.match.head.dim}`
        : 'no projection head';
      const dropped =
        (r.match.classifier ? `; dropped the ${r.match.classifier.classes}-class classifier` : '') +
        (r.match.unexpected.length > 0
          ? `; left out ${r.match.unexpected.length} other tensors (${r.match.unexpected.slice(0, 3).join(', ')}${r.match.unexpected.length > 3 ? ', ...' : ''})`
          : '');
      process.stdout.write(
        `imported ${file} as ${r.spec.arch} ${JSON.stringify(r.spec.backbone)} ` +
          `(prefix '${r.weights.prefix}', ${r.match.matched} backbone tensors, ${head}${dropped}) ` +
          `-> ${r.file}\n`,
      );
    });

  program
    .command('export')
    .description(
      'write a model as a plain safetensors state dict with torchvision names, or as a ' +
        'TensorFlow.js model for web pages (--format tfjs)',
    )
    .argument('<model>', 'model folder or encoder file')
    .requiredOption('--out <path>', 'safetensors file to write; with --format tfjs, a folder')
    .addOption(
      new Option('--format <kind>', 'safetensors, or tfjs (tf.loadLayersModel + disco.json)')
        .choices(['safetensors', 'tfjs'])
        .default('safetensors'),
    )
    .option('--with-head', 'include the projection head (head.0, head.2)')
    .addOption(new Option('--dtype <type>', 'stored float type').choices(['F32', 'F16']))
    .option(
      '--fit-head [dir]',
      'tfjs: fit a linear probe on the labelled data in dir (default: the shipped ' +
        'Fashion-MNIST subset) and export class probabilities',
    )
    .addOption(backendOption())
    .action(async (model: string, flags) => {
      await startBackend(flags);
      if (flags.format === 'tfjs') {
        if (flags.withHead || flags.dtype) {
          throw new Error('export --format tfjs: --with-head and --dtype apply to safetensors');
        }
        const line = await runTfjsExport(model, flags.out, { fitHead: flags.fitHead });
        process.stdout.write(`${line}\n`);
        return;
      }
      if (flags.fitHead !== undefined) throw new Error('export: --fit-head needs --format tfjs');
      const r = exportModel(model, flags.out, { withHead: flags.withHead, dtype: flags.dtype });
      process.stdout.write(`exported ${r.arch}: ${r.names.length} tensors -> ${flags.out}\n`);
    });

  program
    .command('embed')
    .description('features of images with a model (eval mode) into a safetensors file')
    .requiredOption('--model <dir>', 'model folder or encoder file')
    .requiredOption(
      '--input <path>',
      'a folder of images, or a safetensors file with an NHWC float tensor of images',
    )
    .requiredOption('--out <file>', 'safetensors file to write (features, head_features)')
    .option('--key <name>', 'the input tensor, when the file holds several')
    .option('--batch-size <n>', 'images per forward pass', parseNumber('--batch-size'), 64)
    .option('--as-is', 'feed the tensor unchanged (no resize, no normalisation)')
    .addOption(backendOption())
    .action(async (flags) => {
      await startBackend(flags);
      const r = await embed({
        model: flags.model,
        input: flags.input,
        out: flags.out,
        key: flags.key,
        batchSize: flags.batchSize,
        asIs: flags.asIs,
      });
      const shapes = Object.entries(r.outputs)
        .map(([k, v]) => `${k} [${v.join(', ')}]`)
        .join(', ');
      process.stdout.write(`embedded ${r.count} images: ${shapes} -> ${flags.out}\n`);
    });

  program
    .command('bench')
    .description(
      'images/s of one DisCo step, ours vs PyTorch (bench/torch_step.py) vs stock tfjs cpu',
    )
    .option(
      '--cases <list>',
      'settings: a (resnet18 @32), b (mobilenet_v3_large @64), p (the pipeline)',
      'a,b',
    )
    .option('--batches <list>', 'batch sizes', parseList('--batches'), [64, 256])
    .option('--steps <n>', 'timed steps per setting (after one warm-up)', parseNumber('--steps'), 2)
    .option(
      '--micro-batch <n>',
      'micro-batch for batches above it (bounds the wasm heap: ResNet-18 at 32 px does not fit 64)',
      parseNumber('--micro-batch'),
      32,
    )
    .option(
      '--threads <n>',
      'threads of both sides: our wasm backend and PyTorch (default: every core)',
      parseNumber('--threads'),
    )
    .option(
      '--cpu-batch <n>',
      'batch of the stock tfjs cpu step (0: skip)',
      parseNumber('--cpu-batch'),
      4,
    )
    .option('--no-torch', 'skip the PyTorch side')
    .option('--torch-script <file>', 'the PyTorch step', join('bench', 'torch_step.py'))
    .option('--profile', 'also print a per-kernel profile of one step at the first batch size')
    .option('--top <n>', 'kernels listed per phase with --profile', parseNumber('--top'), 12)
    .option(
      '--soak <steps>',
      'instead of timing, run this many steps and sample tensors, RSS and heap (a leak check)',
      parseNumber('--soak'),
    )
    .addOption(backendOption())
    .action(async (flags) => {
      await startBackend(flags);
      const ours = tf.getBackend();
      const threads: number = flags.threads ?? defaultWasmThreads();
      const names = String(flags.cases).split(',');
      for (const c of BENCH_CASES.filter((k) => names.includes(k.name[0]!))) {
        process.stdout.write(`== ${c.name}\n`);
        if (flags.soak !== undefined) {
          const batch = (flags.batches as number[])[0]!;
          const micro = batch > flags.microBatch ? flags.microBatch : undefined;
          const warmup = Math.min(20, flags.soak);
          const samples = soakDiscoStep(
            c,
            { batch, steps: flags.soak, warmup, every: 100, microBatch: micro },
            (x) =>
              process.stdout.write(
                `step ${x.step}: ${x.numTensors} tensors, RSS ${x.rssMiB.toFixed(0)} MiB` +
                  (x.heapMiB !== null ? `, wasm heap ${x.heapMiB.toFixed(0)} MiB` : '') +
                  '\n',
              ),
          );
          const first = samples[0]!;
          const last = samples[samples.length - 1]!;
          process.stdout.write(
            `soak, batch ${batch}, steps ${first.step}..${last.step}: tensors ` +
              `${first.numTensors} -> ${last.numTensors} (${last.numTensors - first.numTensors >= 0 ? '+' : ''}${last.numTensors - first.numTensors}), ` +
              `RSS ${first.rssMiB.toFixed(0)} -> ${last.rssMiB.toFixed(0)} MiB ` +
              `(${((100 * (last.rssMiB - first.rssMiB)) / first.rssMiB).toFixed(2)}%)\n`,
          );
          continue;
        }
        let oursB64: number | null = null;
        for (const batch of flags.batches as number[]) {
          const micro = batch > flags.microBatch ? flags.microBatch : undefined;
          const r = timeDiscoStep(c, { batch, steps: flags.steps, microBatch: micro });
          if (batch === 64) oursB64 = r.imgPerSec;
          const heap = wasmHeapMiB();
          let line =
            `batch ${batch}${micro ? ` (micro-batches of ${micro})` : ''}: ours (${ours}) ` +
            `${r.imgPerSec.toFixed(2)} img/s, peak RSS ${peakRssMiB().toFixed(0)} MiB` +
            (heap !== null ? `, wasm heap ${heap.toFixed(0)} MiB` : '');
          if (flags.torch) {
            const t = torchImgPerSec(flags.torchScript, c, {
              batch,
              steps: flags.steps,
              threads,
            });
            line +=
              typeof t === 'number'
                ? `; PyTorch ${threads} threads ${t.toFixed(2)} img/s; ours / PyTorch ${(r.imgPerSec / t).toFixed(3)}`
                : `; PyTorch: ${t}`;
          }
          process.stdout.write(`${line}\n`);
        }
        if (flags.profile) {
          const batch = (flags.batches as number[])[0]!;
          const micro = batch > flags.microBatch ? flags.microBatch : undefined;
          const phases = await profileDiscoStep(c, { batch, microBatch: micro });
          process.stdout.write(formatProfile(phases, batch, flags.top));
        }
        if (flags.cpuBatch > 0) {
          await tf.setBackend('cpu');
          // No warm-up: a step on stock cpu takes minutes, and it compiles nothing.
          const r = timeDiscoStep(c, { batch: flags.cpuBatch, steps: 1, warmup: false });
          await tf.setBackend(ours);
          const ratio =
            oursB64 !== null
              ? `; ours (batch 64) / stock cpu ${(oursB64 / r.imgPerSec).toFixed(0)}`
              : '';
          process.stdout.write(
            `stock tfjs cpu, batch ${flags.cpuBatch}: ${r.imgPerSec.toFixed(4)} img/s${ratio}\n`,
          );
        }
      }
    });

  program
    .command('pipeline')
    .description(
      'train the student with MoCo v2 alone and with DisCo from the teacher, then print one table',
    )
    .option('--data <dir>', 'Fashion-MNIST IDX folder (default: the shipped subset)')
    .option('--teacher <file>', 'teacher encoder file (default: the shipped MoCo v2 ResNet-18)')
    .option('--pretrain-teacher', 'train the teacher with MoCo v2 first instead')
    .option('--arch <name>', 'student backbone', PIPELINE_STUDENT.arch)
    .option('--epochs <n>', 'student epochs', parseNumber('--epochs'))
    .option(
      '--teacher-epochs <n>',
      'teacher epochs with --pretrain-teacher',
      parseNumber('--teacher-epochs'),
    )
    .option('--seed <n>', 'random seed', parseNumber('--seed'), 0)
    .option('--out <dir>', 'run folder', join('runs', 'pipeline'))
    .option('--quiet', 'no progress bars')
    .addOption(backendOption())
    .action(async (flags) => {
      await startBackend(flags);
      await runPipeline({
        data: flags.data,
        teacher: flags.teacher,
        pretrainTeacher: flags.pretrainTeacher,
        student: {
          arch: flags.arch,
          ...(flags.epochs !== undefined ? { epochs: flags.epochs } : {}),
        },
        teacherConfig: flags.teacherEpochs !== undefined ? { epochs: flags.teacherEpochs } : {},
        seed: flags.seed,
        out: flags.out,
        quiet: flags.quiet,
      });
    });

  program
    .command('report')
    .description('write a self-contained report.html (charts, tables, embedding map) of a run')
    .argument('<run>', 'run folder (config.json, metrics.jsonl) or disco pipeline folder')
    .option('--out <file>', 'HTML file to write (default: <run>/report.html)')
    .addOption(
      new Option('--map <method>', 'layout of the embedding map (default: tsne)').choices([
        'tsne',
        'pca',
      ]),
    )
    .action((run: string, flags) => {
      const path = writeReport(run, { out: flags.out, map: flags.map });
      process.stdout.write(`report: ${path}\n`);
    });
  program
    .command('experiment')
    .description(
      'a named grid of runs (students x methods x seeds), then one table of mean ± std and a plot',
    )
    .argument(
      '<name>',
      Object.values(EXPERIMENT_GRIDS)
        .map((g) => `${g.name} (${g.about})`)
        .join('; '),
    )
    .option(
      '--seeds <list>',
      'a count (3: seeds 0, 1, 2) or a comma-separated list (1,2; one seed: 4,)',
      '3',
    )
    .option('--data <dir>', DATA_HELP)
    .option('--epochs <n>', "epochs of each cell (default: the grid's)", parseNumber('--epochs'))
    .option(
      '--limit <n>',
      "training images of each cell (default: the grid's; evaluation uses all)",
      parseNumber('--limit'),
    )
    .option('--students <list>', `students: ${Object.keys(EXPERIMENT_STUDENTS).join(', ')}`)
    .option('--methods <list>', `methods: ${Object.keys(EXPERIMENT_METHODS).join(', ')}`)
    .option(
      '--teachers <list>',
      "teacher files instead of the grid's, comma-separated NAME=FILE (or FILE: named by its folder)",
    )
    .option('--out <dir>', 'experiment folder (default: runs/experiment-<name>)')
    .option(
      '--dry-run',
      'print the cells, which are finished, and the estimated time; train nothing',
    )
    .option('--quiet', 'no progress bars')
    .addOption(backendOption())
    .action(async (name: string, flags) => {
      await startBackend(flags);
      const list = (v: unknown) =>
        typeof v === 'string' ? v.split(',').filter((x) => x.trim() !== '') : undefined;
      await runExperiment({
        grid: name,
        out: flags.out,
        seeds: parseSeeds(String(flags.seeds)),
        data: flags.data,
        epochs: flags.epochs,
        limit: flags.limit,
        students: list(flags.students),
        methods: list(flags.methods),
        teachers: flags.teachers !== undefined ? parseTeachers(String(flags.teachers)) : undefined,
        dryRun: flags.dryRun,
        quiet: flags.quiet,
        command: `disco ${process.argv.slice(2).join(' ')}`,
      });
    });
  return program;
}

/** `--seeds`: a count n (seeds 0..n-1), or a list with at least one comma. */
function parseSeeds(value: string): number[] {
  const parts = value.includes(',') ? value.split(',').filter((p) => p.trim() !== '') : [value];
  const numbers = parts.map((p) => {
    const n = Number(p);
    if (p.trim() === '' || !Number.isInteger(n) || n < 0) {
      throw new Error(`option --seeds: '${p}' in '${value}' is not an integer >= 0`);
    }
    return n;
  });
  if (value.includes(',')) return numbers;
  if (numbers[0]! < 1) throw new Error(`option --seeds: a count must be >= 1, got '${value}'`);
  return Array.from({ length: numbers[0]! }, (_, i) => i);
}

/** `--teachers`: NAME=FILE pairs (or FILE, named by its folder), comma-separated. */
function parseTeachers(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(',').filter((p) => p.trim() !== '')) {
    const eq = part.indexOf('=');
    const file = eq >= 0 ? part.slice(eq + 1) : part;
    const name = eq >= 0 ? part.slice(0, eq) : basename(dirname(resolve(file)));
    if (!existsSync(file))
      throw new Error(`option --teachers: ${file} (teacher '${name}') not found`);
    if (name in out) throw new Error(`option --teachers: two teachers named '${name}'`);
    out[name] = file;
  }
  return out;
}

/**
 * `disco pipeline`: the whole DisCo story on one data set. It trains the student with
 * MoCo v2 alone, then the same student (same backbone, epochs and seed) with DisCo from a
 * pre-trained teacher, evaluates the teacher, both students and each backbone with its
 * random initial weights, and prints one table.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Encoder, Rng } from '@disco/core';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD } from '@disco/data';
import { cliAssetPath, SHIPPED_TEACHER } from './assets.js';
import { TRAIN_DEFAULTS, type TrainConfig } from './config.js';
import { evaluateBackbone } from './evaluate.js';
import { buildEncoder, loadModelFile } from './model-file.js';
import { writeReportOrWarn } from './report.js';
import { formatTable, type ResultRow } from './table.js';
import { loadData, specOf, train } from './train.js';

/** The student and schedule of the default pipeline (sized for ~30 min on 2 cores). */
export const PIPELINE_STUDENT: Pick<
  TrainConfig,
  | 'arch'
  | 'widthMultiplier'
  | 'smallStem'
  | 'output'
  | 'hiddenDim'
  | 'epochs'
  | 'batchSize'
  | 'queueSize'
> = {
  arch: 'mobilenet_v3_small',
  widthMultiplier: 1,
  smallStem: false,
  output: 'head',
  hiddenDim: 2048,
  epochs: 12,
  batchSize: 64,
  // The subset has 5000 images: a queue of 4096 would hold most of the images' own earlier
  // keys as negatives. 512 keeps that near 10%, as K = 4096 does on 60000 images.
  queueSize: 512,
};

/** The teacher recipe `--pretrain-teacher` uses, and the one the shipped teacher came from. */
export const PIPELINE_TEACHER: Pick<
  TrainConfig,
  'arch' | 'widthMultiplier' | 'smallStem' | 'hiddenDim' | 'epochs' | 'batchSize' | 'queueSize'
> = {
  arch: 'resnet18',
  widthMultiplier: 1,
  smallStem: false,
  hiddenDim: 2048,
  epochs: 3,
  batchSize: 128,
  queueSize: 4096,
};

/** What `runPipeline` trains from and where it writes. */
export interface PipelineOptions {
  /** Fashion-MNIST folder; unset: the shipped subset. */
  data?: string;
  /** Teacher encoder file; unset: the shipped one (unless `pretrainTeacher`). */
  teacher?: string;
  /**
   * Train the teacher first with MoCo v2 (`PIPELINE_TEACHER`, in `out/teacher`) instead of
   * loading one; `teacher` is then ignored. Default false.
   */
  pretrainTeacher?: boolean;
  /** Overrides of the student's config (arch, epochs...). */
  student?: Partial<TrainConfig>;
  /** Overrides of the teacher's config when pre-training it. */
  teacherConfig?: Partial<TrainConfig>;
  /** Seed of every run, initialisation and linear probe (default 0). */
  seed?: number;
  /**
   * Output folder, created if missing: the run folders (`teacher/` with `pretrainTeacher`,
   * `student-moco/`, `student-disco/`), `results.md`, `results.json` and `report.html`.
   */
  out: string;
  /** Hide the per-batch progress bars. */
  quiet?: boolean;
  /** Progress lines and the final table go here (default: stdout). */
  log?: (line: string) => void;
}

/** Parameters of an encoder without its projection head (`head.*`): what is deployed. */
export function backboneParameters(encoder: Encoder): number {
  return encoder.params
    .parameterNames()
    .filter((n) => !n.startsWith('head.'))
    .reduce((s, n) => s + encoder.params.get(n).size, 0);
}

/** Runs the pipeline and returns its table rows (also written to `out/results.{md,json}`). */
export async function runPipeline(opts: PipelineOptions): Promise<ResultRow[]> {
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const seed = opts.seed ?? 0;
  mkdirSync(opts.out, { recursive: true });
  const { train: trainSet, test: testSet } = loadData({ data: opts.data });
  log(
    `data: ${trainSet.count} train / ${testSet.count} test images from ${opts.data ?? 'the shipped Fashion-MNIST subset'}`,
  );
  const norm = { mean: [...FASHION_MNIST_MEAN], std: [...FASHION_MNIST_STD] };
  const base = { ...TRAIN_DEFAULTS, data: opts.data, seed };
  const studentCfg: TrainConfig = { ...base, ...PIPELINE_STUDENT, method: 'moco', ...opts.student };
  const sets = { train: trainSet, test: testSet };
  const rows: ResultRow[] = [];

  // The teacher: shipped, given, or trained first.
  let teacherFile = opts.teacher ?? cliAssetPath(SHIPPED_TEACHER);
  let teacherSeconds: number | null = null;
  if (opts.pretrainTeacher) {
    log('== pre-training the teacher (MoCo v2)');
    const teacherCfg: TrainConfig = {
      ...base,
      ...PIPELINE_TEACHER,
      method: 'moco',
      ...opts.teacherConfig,
    };
    // A queue of at most a tenth of the training images, so few of an image's own earlier
    // keys sit among its negatives (K = 4096 on the full 60000; 384 on the 5000 subset).
    const b = teacherCfg.batchSize;
    teacherCfg.queueSize = Math.max(
      b,
      Math.min(teacherCfg.queueSize, Math.floor(trainSet.count / 10 / b) * b),
    );
    const t = await train(teacherCfg, {
      runDir: join(opts.out, 'teacher'),
      quiet: opts.quiet,
      log,
      ...sets,
    });
    teacherFile = t.encoderFile;
    teacherSeconds = t.trainSeconds;
    t.built.encoder.params.dispose();
  }
  const teacher = loadModelFile(teacherFile);
  const evalOpts = { imageSize: teacher.info.imageSize, ...norm, seed };
  if (teacher.info.imageSize !== studentCfg.imageSize) {
    throw new Error(
      `pipeline: teacher ${teacherFile} was trained at imageSize ${teacher.info.imageSize}, ` +
        `the student uses ${studentCfg.imageSize}`,
    );
  }

  // Each backbone with its random initial weights: what training must beat.
  for (const [label, spec] of [
    [`${studentCfg.arch} (random init)`, specOf(studentCfg, trainSet.channels)],
    [`${teacher.info.spec.arch} (random init)`, teacher.info.spec],
  ] as const) {
    const built = buildEncoder(spec, new Rng(seed).fork('init'));
    const r = await evaluateBackbone(built.backbone, trainSet, testSet, evalOpts);
    rows.push({
      model: label,
      parameters: backboneParameters(built.encoder),
      knnTop1: r.knnTop1,
      linearTop1: r.linearTop1,
      trainSeconds: null,
    });
    log(
      `${label}: kNN ${(100 * r.knnTop1).toFixed(2)}%  linear ${(100 * r.linearTop1).toFixed(2)}%`,
    );
    built.encoder.params.dispose();
  }

  log(`== teacher ${teacher.info.spec.arch} from ${teacherFile}`);
  const t = await evaluateBackbone(teacher.backbone, trainSet, testSet, evalOpts);
  rows.push({
    model: `${teacher.info.spec.arch} teacher (MoCo v2)`,
    parameters: backboneParameters(teacher.encoder),
    knnTop1: t.knnTop1,
    linearTop1: t.linearTop1,
    trainSeconds: teacherSeconds,
  });
  teacher.encoder.params.dispose();

  log(`== student ${studentCfg.arch}, MoCo v2 only`);
  const moco = await train(studentCfg, {
    runDir: join(opts.out, 'student-moco'),
    quiet: opts.quiet,
    log,
    ...sets,
  });
  rows.push({
    model: `${studentCfg.arch} MoCo v2`,
    parameters: backboneParameters(moco.built.encoder),
    knnTop1: moco.eval.knnTop1,
    linearTop1: moco.eval.linearTop1,
    trainSeconds: moco.trainSeconds,
  });
  moco.built.encoder.params.dispose();

  log(`== student ${studentCfg.arch}, DisCo from the teacher`);
  const disco = await train(
    { ...studentCfg, method: 'disco', teacher: teacherFile },
    { runDir: join(opts.out, 'student-disco'), quiet: opts.quiet, log, ...sets },
  );
  rows.push({
    model: `${studentCfg.arch} DisCo`,
    parameters: backboneParameters(disco.built.encoder),
    knnTop1: disco.eval.knnTop1,
    linearTop1: disco.eval.linearTop1,
    trainSeconds: disco.trainSeconds,
  });
  disco.built.encoder.params.dispose();

  const table = formatTable(rows);
  writeFileSync(join(opts.out, 'results.md'), `${table}\n`);
  writeFileSync(join(opts.out, 'results.json'), `${JSON.stringify({ seed, rows }, null, 2)}\n`);
  log('');
  log(table);

  // Reports: the students' again, now that results.json holds the teacher's figures on the
  // same images; then one at the root with the table and links to the runs' reports.
  writeReportOrWarn(join(opts.out, 'student-moco'), {}, log);
  writeReportOrWarn(join(opts.out, 'student-disco'), {}, log);
  writeReportOrWarn(opts.out, {}, log);
  return rows;
}

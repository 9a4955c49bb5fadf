/**
 * `disco experiment <name>`: the comparisons of the DisCo paper (Gao et al., ECCV 2022, arXiv
 * 2104.09124) at small scale. A named grid of cells, student x method x teacher x seed, runs
 * one cell after the other with `train()` in this process, as `disco pipeline` does; each cell
 * has its own run folder, with `result.json` once it is finished. A finished cell is skipped
 * when the grid runs again; an unfinished one resumes from its checkpoint. Then one table
 * (mean and sample standard deviation over seeds of kNN and linear top-1, the evaluation
 * `train()` ends with, parameters, training time) as `results.md` and `results.json`, and a
 * plot, `results.svg`.
 *
 * Every method of a grid trains the same student, head (hidden 2048 unless the method sets
 * it), schedule, data and seeds: only the objective changes. SEED and CompRess run their
 * teacher with eval-mode BatchNorm, as their papers; DisCo with train mode, as its code.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '@disco/core';
import { cliAssetPath, SHIPPED_TEACHER } from './assets.js';
import { listCheckpoints } from './checkpoint.js';
import {
  defaultTeacherBn,
  RESUME_FREE_FIELDS,
  TRAIN_DEFAULTS,
  type TrainConfig,
  validateTrainConfig,
} from './config.js';
import { openTrainData } from './datasets.js';
import { evaluateBackbone } from './evaluate.js';
import {
  type CellFigures,
  formatExperimentTable,
  formatTeacherTable,
  resultsChart,
  type TeacherFigures,
  type ResultRow,
  summarise,
} from './experiment-plot.js';
import { fileSha256, loadModelFile } from './model-file.js';
import { backboneParameters, PIPELINE_STUDENT, PIPELINE_TEACHER } from './pipeline.js';
import { train } from './train.js';

/** Some fields of a `TrainConfig`, applied over the defaults (a student, a method, a teacher). */
export type Settings = Partial<TrainConfig>;

/** Students of the grids: a backbone and the feature its head takes. */
export const EXPERIMENT_STUDENTS: Record<string, Settings> = {
  // The pipeline's student: the 1024-d head feature, as DisCo's MobileNetV3 students.
  mobilenet_v3_small: { arch: 'mobilenet_v3_small', widthMultiplier: 1, output: 'head' },
  mobilenet_v3_large: { arch: 'mobilenet_v3_large', widthMultiplier: 1, output: 'head' },
  // ResNet-18, a paper student, at half width (256-d pooled feature) to fit the time budget.
  'resnet18-half': { arch: 'resnet18', widthMultiplier: 0.5, output: 'pooled' },
  resnet18: { arch: 'resnet18', widthMultiplier: 1, output: 'pooled' },
  efficientnet_b0: { arch: 'efficientnet_b0', widthMultiplier: 1, output: 'pooled' },
};

/** A method of a grid: how it is named in tables and what it sets. */
export interface MethodPreset {
  /** Its name in tables and plots ('MoCo v2', 'DisCo, hidden 512', ...). */
  label: string;
  /** The fields it sets on each cell: `method`, its teacher BN mode, any ablation setting. */
  config: Settings;
}

const distill = (method: TrainConfig['method'], more: Settings = {}): Settings => ({
  method,
  teacherBn: defaultTeacherBn(method),
  ...more,
});

/** The methods and DisCo ablations a grid can hold. */
export const EXPERIMENT_METHODS: Record<string, MethodPreset> = {
  moco: { label: 'MoCo v2', config: { method: 'moco' } },
  seed: { label: 'SEED', config: distill('seed') },
  'compress-1q': { label: 'CompRess-1q', config: distill('compress-1q') },
  'compress-2q': { label: 'CompRess-2q', config: distill('compress-2q') },
  disco: { label: 'DisCo', config: distill('disco') },
  'disco-first': { label: 'DisCo, MSE on view 1', config: distill('disco', { mseViews: 'first' }) },
  'only-mse': { label: 'DisCo only-MSE', config: distill('disco', { onlyMse: true }) },
  'disco-h0': { label: 'DisCo, linear head', config: distill('disco', { hiddenDim: 0 }) },
  'disco-h512': { label: 'DisCo, hidden 512', config: distill('disco', { hiddenDim: 512 }) },
  'disco-h2048': { label: 'DisCo, hidden 2048', config: distill('disco', { hiddenDim: 2048 }) },
  'disco-bn-eval': {
    label: 'DisCo, teacher BN eval',
    config: distill('disco', { teacherBn: 'eval' }),
  },
};

/** A teacher: the shipped file, or a MoCo v2 run the experiment trains first. */
export interface TeacherPreset {
  /** A readable name ('ResNet-18 (shipped)', ...); tables and logs use its key instead. */
  label: string;
  /** Settings of the MoCo v2 run that makes it (on the experiment's data, seed 0). */
  train?: Settings;
}

/** The teachers a grid can name. */
export const EXPERIMENT_TEACHERS: Record<string, TeacherPreset> = {
  resnet18: { label: 'ResNet-18 (shipped)' },
  // A smaller, shorter-trained teacher for `teacher-size`. Size and training time both
  // differ from the shipped one (8 epochs on 60000 images); `--teachers` takes others.
  'resnet18-half': {
    label: 'ResNet-18 x0.5 (trained here)',
    train: { ...PIPELINE_TEACHER, widthMultiplier: 0.5, epochs: 8 },
  },
};

/** A named grid and the schedule its cells train with. */
export interface ExperimentGrid {
  /** Its key in `EXPERIMENT_GRIDS`, also the default output folder's suffix. */
  name: string;
  /** One sentence on what it compares, printed first and written into `results.md`. */
  about: string;
  /** Student names, keys of `EXPERIMENT_STUDENTS`. */
  students: string[];
  /** Method names, keys of `EXPERIMENT_METHODS`. */
  methods: string[];
  /** Teacher names, keys of `EXPERIMENT_TEACHERS` (MoCo v2 cells use none). */
  teachers: string[];
  /** Epochs of each cell. */
  epochs: number;
  /** Training images of each cell (unset: all). */
  limit?: number;
}

/**
 * The named grids. Each cell trains 2 epochs on all the shipped data's 5000 images, so that
 * `paper-table` (24 cells) runs in about an hour on 2 cores; see the time estimates below.
 */
export const EXPERIMENT_GRIDS: Record<string, ExperimentGrid> = {
  'paper-table': {
    name: 'paper-table',
    about: 'MoCo v2, SEED, CompRess-2q and DisCo for two students, one teacher',
    students: ['mobilenet_v3_small', 'resnet18-half'],
    methods: ['moco', 'seed', 'compress-2q', 'disco'],
    teachers: ['resnet18'],
    epochs: 2,
  },
  bottleneck: {
    name: 'bottleneck',
    about: "DisCo's distilling bottleneck: student head hidden width 512 vs 2048",
    students: ['mobilenet_v3_small'],
    methods: ['disco-h512', 'disco-h2048'],
    teachers: ['resnet18'],
    epochs: 2,
  },
  'teacher-size': {
    name: 'teacher-size',
    about: 'DisCo from two teachers: the shipped ResNet-18 and a half-width one',
    students: ['mobilenet_v3_small'],
    methods: ['disco'],
    teachers: ['resnet18', 'resnet18-half'],
    epochs: 2,
  },
};

/** One run of a grid. */
export interface ExperimentCell {
  /** The folder name: `<student>.<method>.<teacher>.seed<n>` (teacher '-' for MoCo v2). */
  id: string;
  /** Student name, a key of `EXPERIMENT_STUDENTS`. */
  student: string;
  /** Method name, a key of `EXPERIMENT_METHODS`. */
  method: string;
  /** Teacher name; '-' for MoCo v2. */
  teacher: string;
  /** The seed of the cell's run. */
  seed: number;
  /** The cell's run folder, `<out>/cells/<id>`. */
  dir: string;
  /** The full config the cell trains with. */
  config: TrainConfig;
}

/** What a finished cell wrote to its `result.json`. */
export interface CellResult extends CellFigures {
  /** 'disco-experiment-cell/1'; a file with another value is trained again. */
  format: typeof CELL_FORMAT;
  /** The cell's `ExperimentCell.id`. */
  id: string;
  /** The config the cell trained with; a result from other settings is trained again. */
  config: TrainConfig;
  /** sha256 of the teacher file (unset for MoCo v2); another teacher's result is not reused. */
  teacherSha256?: string;
}

const CELL_FORMAT = 'disco-experiment-cell/1';

/** Which grid `runExperiment` runs, narrowed or changed how, and where it writes. */
export interface ExperimentOptions {
  /** A grid name of `EXPERIMENT_GRIDS`, or a grid (tests). */
  grid: string | ExperimentGrid;
  /** Default `runs/experiment-<name>`. */
  out?: string;
  /** Default 0, 1, 2. */
  seeds?: number[];
  /** Data folder of every cell (any format `--data` takes); unset: the shipped Fashion-MNIST. */
  data?: string;
  /** Epochs of each cell, instead of the grid's. */
  epochs?: number;
  /** Training images of each cell, instead of the grid's (unset there too: all). */
  limit?: number;
  /** Narrow the grid to these students (names of `EXPERIMENT_STUDENTS`). */
  students?: string[];
  /** Narrow the grid to these methods (names of `EXPERIMENT_METHODS`). */
  methods?: string[];
  /** Teacher files by name, instead of the grid's teachers. */
  teachers?: Record<string, string>;
  /** Settings applied to every cell after the student's (tests: tiny networks). */
  config?: Settings;
  /** Print the cells and the estimated time; train nothing. */
  dryRun?: boolean;
  /** The command line, written into the results. */
  command?: string;
  /** Hide the per-batch progress bars. */
  quiet?: boolean;
  /** Progress lines and the final table go here (default: stdout). */
  log?: (line: string) => void;
}

function listOf(kind: string, names: string[], known: Record<string, unknown>): string[] {
  for (const n of names) {
    if (!(n in known)) {
      throw new Error(
        `experiment: unknown ${kind} '${n}'; known: ${Object.keys(known).join(', ')}`,
      );
    }
  }
  return names;
}

/** K for `images` training images: about a tenth of them in whole batches, at most 4096. */
export function queueSizeFor(images: number, batch: number): number {
  return Math.max(batch, Math.min(4096, Math.round(images / 10 / batch) * batch));
}

/** Config fields a finished cell's result must match (the free ones and `teacher` aside). */
function comparable(cfg: TrainConfig): string {
  const rest: Record<string, unknown> = { ...cfg };
  for (const f of RESUME_FREE_FIELDS) delete rest[f];
  return JSON.stringify(Object.fromEntries(Object.entries(rest).sort()));
}

/** The cell's result when `result.json` is whole and from the same settings; else why not. */
function readCellResult(
  cell: ExperimentCell,
  teacherSha256: string | undefined,
): { result: CellResult } | { why: string | null } {
  const file = join(cell.dir, 'result.json');
  if (!existsSync(file)) return { why: null };
  let r: CellResult;
  try {
    r = JSON.parse(readFileSync(file, 'utf8')) as CellResult;
  } catch (err) {
    return { why: `${file} is not JSON (${(err as Error).message})` };
  }
  if (r.format !== CELL_FORMAT) return { why: `${file}: format is ${JSON.stringify(r.format)}` };
  for (const f of ['knnTop1', 'linearTop1', 'parameters', 'trainSeconds'] as const) {
    if (typeof r[f] !== 'number' || !Number.isFinite(r[f])) {
      return { why: `${file}: field '${f}' is ${JSON.stringify(r[f])}` };
    }
  }
  if (comparable(r.config) !== comparable(cell.config)) {
    return { why: `${file} was written with other settings` };
  }
  if (r.teacherSha256 !== teacherSha256) return { why: `${file} used another teacher` };
  return { result: r };
}

/*
 * Time estimates, from one epoch of 2560 shipped images per cell (batch 64, 28 px) on the
 * 2-core development machine, wasm backend with DISCO_WASM_THREADS=1, while other jobs kept
 * its load near 4: seconds per training image of whole cells, and of the model's parts for
 * other pairs (a MoCo v2 step of the student; one forward of the teacher, 3.2 to 3.7 ms per
 * image for the shipped ResNet-18 in either BN mode).
 */
const CELL_SECONDS_PER_IMAGE: Record<string, number> = {
  'mobilenet_v3_small.moco': 0.0086,
  'mobilenet_v3_small.seed': 0.0188,
  'mobilenet_v3_small.compress-2q': 0.0266,
  'mobilenet_v3_small.disco': 0.0195,
  'resnet18-half.moco': 0.0094,
  'resnet18-half.seed': 0.0227,
  'resnet18-half.compress-2q': 0.0207,
  'resnet18-half.disco': 0.0234,
};
const STEP_SECONDS_PER_IMAGE: Record<string, number> = {
  mobilenet_v3_small: 0.0086,
  'resnet18-half': 0.0094,
};
const TEACHER_SECONDS_PER_IMAGE: Record<string, number> = {
  resnet18: 0.0035,
  // About a quarter of the full width's multiply-adds, plus overheads.
  'resnet18-half': 0.0012,
};
/** Seconds of the end of a cell (precise BN, features, kNN, probe, report) per image scored. */
const EVAL_SECONDS_PER_IMAGE = 0.0035;

/** The estimated seconds of a cell (wasm backend, 1 thread, at the costs measured above). */
function estimateSeconds(cell: ExperimentCell, trainImages: number, evalImages: number): number {
  const c = cell.config;
  const steps = Math.floor(trainImages / c.batchSize) * c.batchSize;
  const end = evalImages * EVAL_SECONDS_PER_IMAGE;
  const measured = CELL_SECONDS_PER_IMAGE[`${cell.student}.${cell.method}`];
  if (measured !== undefined && cell.teacher !== 'resnet18-half') {
    return c.epochs * steps * measured + end;
  }
  const step = STEP_SECONDS_PER_IMAGE[cell.student] ?? 0.01;
  const teacher = TEACHER_SECONDS_PER_IMAGE[cell.teacher] ?? 0.0035;
  // DisCo's second student pass on view 2 costs about three quarters of a MoCo step.
  const both = c.method === 'disco' && c.mseViews === 'both';
  const forwards = c.method === 'moco' ? 0 : c.method === 'compress-2q' || both ? 2 : 1;
  return c.epochs * steps * ((both ? 1.75 : 1) * step + forwards * teacher) + end;
}

function minutes(s: number): string {
  return s >= 3600 ? `${(s / 3600).toFixed(1)} h` : `${(s / 60).toFixed(1)} min`;
}

/** What the grid resolves to: its cells and the teachers to train first. */
interface Plan {
  grid: ExperimentGrid;
  out: string;
  cells: ExperimentCell[];
  teachers: { name: string; file: string; train?: TrainConfig; dir?: string }[];
  trainImages: number;
  /** The whole train split (kNN and the probe fit on it; a teacher trained here trains on it). */
  evalTrainImages: number;
  evalImages: number;
  describe: string;
}

async function plan(opts: ExperimentOptions): Promise<Plan> {
  const grid =
    typeof opts.grid === 'string'
      ? (EXPERIMENT_GRIDS[opts.grid] ??
        (() => {
          throw new Error(
            `experiment: unknown grid '${opts.grid}'; known: ${Object.keys(EXPERIMENT_GRIDS).join(', ')}`,
          );
        })())
      : opts.grid;
  const out = opts.out ?? join('runs', `experiment-${grid.name}`);
  const seeds = opts.seeds ?? [0, 1, 2];
  for (const s of seeds) {
    if (!Number.isInteger(s) || s < 0) {
      throw new Error(`experiment: --seeds holds ${s}; seeds are integers >= 0`);
    }
  }
  const students = listOf('student', opts.students ?? grid.students, EXPERIMENT_STUDENTS);
  const methods = listOf('method', opts.methods ?? grid.methods, EXPERIMENT_METHODS);
  const epochs = opts.epochs ?? grid.epochs;
  const limit = opts.limit ?? grid.limit;

  // The data, once, for its size (the queue is sized to it) and the time estimate.
  const first = { ...TRAIN_DEFAULTS, ...PIPELINE_STUDENT, ...opts.config };
  const data = await openTrainData({
    ...(opts.data !== undefined ? { data: opts.data } : {}),
    ...(limit !== undefined ? { limit } : {}),
    imageSize: first.imageSize,
  });
  if (!data.test) {
    throw new Error(`experiment: ${data.describe}; the table needs labelled test images`);
  }
  const trainImages = data.train.count;
  const evalImages = data.evalTrain.count + data.test.count;

  const given = Object.entries(opts.teachers ?? {});
  for (const [name, file] of given) {
    if (!existsSync(file)) throw new Error(`experiment: teacher '${name}': ${file} not found`);
  }
  const teachers: Plan['teachers'] = opts.teachers
    ? given.map(([name, file]) => ({ name, file }))
    : listOf('teacher', grid.teachers, EXPERIMENT_TEACHERS).map((name) => {
        const preset = EXPERIMENT_TEACHERS[name]!;
        if (!preset.train) return { name, file: cliAssetPath(SHIPPED_TEACHER) };
        const dir = join(out, 'teachers', name);
        const cfg: TrainConfig = {
          ...TRAIN_DEFAULTS,
          ...preset.train,
          method: 'moco',
          arch: preset.train.arch ?? 'resnet18',
          ...(opts.data !== undefined ? { data: opts.data } : {}),
          seed: 0,
          checkpointEvery: 50,
        };
        cfg.queueSize = queueSizeFor(data.evalTrain.count, cfg.batchSize);
        return { name, file: join(dir, 'encoder.safetensors'), train: cfg, dir };
      });

  // A teacher's input must fit the data: a grayscale teacher cannot take RGB views.
  for (const t of teachers.filter((x) => !x.train)) {
    const m = loadModelFile(t.file);
    const channels = (m.backbone.net as { inChannels?: number }).inChannels ?? 1;
    m.encoder.params.dispose();
    if (channels !== data.train.channels && channels !== 3) {
      throw new Error(
        `experiment: teacher '${t.name}' (${t.file}) takes ${channels}-channel images, the ` +
          `data has ${data.train.channels}; give one trained on such images with --teachers`,
      );
    }
  }

  const cells: ExperimentCell[] = [];
  for (const student of students) {
    for (const method of methods) {
      const m = EXPERIMENT_METHODS[method]!;
      // MoCo v2 has no teacher: one cell per seed, whatever the teachers.
      const ts = m.config.method === 'moco' ? [{ name: '-', file: undefined }] : teachers;
      for (const t of ts) {
        for (const seed of seeds) {
          const config: TrainConfig = {
            ...TRAIN_DEFAULTS,
            ...PIPELINE_STUDENT,
            ...EXPERIMENT_STUDENTS[student],
            ...opts.config,
            ...m.config,
            method: m.config.method!,
            arch: EXPERIMENT_STUDENTS[student]!.arch!,
            seed,
            epochs,
            ...(opts.data !== undefined ? { data: opts.data } : {}),
            ...(limit !== undefined ? { limit } : {}),
            ...(t.file !== undefined ? { teacher: t.file } : {}),
          };
          if (opts.config?.queueSize === undefined) {
            config.queueSize = queueSizeFor(trainImages, config.batchSize);
          }
          if (opts.config?.checkpointEvery === undefined) config.checkpointEvery = 25;
          if (opts.config?.keepCheckpoints === undefined) config.keepCheckpoints = 1;
          const id = `${student}.${method}.${t.name}.seed${seed}`;
          cells.push({
            id,
            student,
            method,
            teacher: t.name,
            seed,
            dir: join(out, 'cells', id),
            config,
          });
        }
      }
    }
  }
  return {
    grid,
    out,
    cells,
    teachers,
    trainImages,
    evalTrainImages: data.evalTrain.count,
    evalImages,
    describe: data.describe,
  };
}

/** Trains (or resumes, or skips) a teacher the grid makes itself. */
async function trainTeacher(
  t: Plan['teachers'][number],
  opts: ExperimentOptions,
  log: (line: string) => void,
): Promise<void> {
  if (!t.train || !t.dir) return;
  const done = join(t.dir, 'result.json');
  if (existsSync(done) && existsSync(t.file)) {
    try {
      const prior = JSON.parse(readFileSync(done, 'utf8')) as { config?: TrainConfig };
      if (prior.config && comparable(prior.config) === comparable(t.train)) {
        log(`teacher ${t.name}: finished (${done}), not trained again`);
        return;
      }
    } catch {
      // Not JSON: trained (or resumed) again below.
    }
  }
  log(`== teacher ${t.name}: MoCo v2 ${t.train.arch} x${t.train.widthMultiplier}`);
  const r = await train(t.train, {
    runDir: t.dir,
    resume: listCheckpoints(t.dir).length > 0,
    quiet: opts.quiet,
    log,
  });
  r.built.encoder.params.dispose();
  const result = { ...r.eval, trainSeconds: r.trainSeconds, config: t.train };
  writeFileAtomic(done, `${JSON.stringify(result, null, 2)}\n`);
}

/** kNN and linear top-1 of each teacher on the experiment's data, as the pipeline does. */
async function evaluateTeachers(
  p: Plan,
  opts: ExperimentOptions,
  log: (line: string) => void,
): Promise<TeacherFigures[]> {
  const rows = [];
  for (const t of p.teachers) {
    const cache = join(p.out, 'teachers', `${t.name}.eval.json`);
    const sha = fileSha256(t.file);
    if (existsSync(cache)) {
      const c = JSON.parse(readFileSync(cache, 'utf8'));
      if (c.sha256 === sha) {
        rows.push(c);
        continue;
      }
    }
    const m = loadModelFile(t.file);
    try {
      const inChannels = (m.backbone.net as { inChannels?: number }).inChannels;
      const d = await openTrainData({
        ...(opts.data !== undefined ? { data: opts.data } : {}),
        imageSize: m.info.imageSize,
        ...(inChannels === 1 || inChannels === 3 ? { channels: inChannels } : {}),
      });
      if (!d.test || d.train.channels !== inChannels) {
        log(`teacher ${t.name}: not evaluated (${d.describe}; it takes ${inChannels} channels)`);
        continue;
      }
      log(`== teacher ${t.name}: evaluating ${t.file}`);
      const r = await evaluateBackbone(m.backbone, d.evalTrain, d.test, {
        imageSize: m.info.imageSize,
        mean: m.info.mean,
        std: m.info.std,
        seed: 0,
      });
      const row = {
        name: t.name,
        file: t.file,
        sha256: sha,
        parameters: backboneParameters(m.encoder),
        knnTop1: r.knnTop1,
        linearTop1: r.linearTop1,
      };
      mkdirSync(dirname(cache), { recursive: true });
      writeFileAtomic(cache, `${JSON.stringify(row, null, 2)}\n`);
      rows.push(row);
    } finally {
      m.encoder.params.dispose();
    }
  }
  return rows;
}

/**
 * Runs a grid (see the module comment) and writes `results.md`, `results.json` and
 * `results.svg` in its folder. With `dryRun`, prints the cells, which are finished, and the
 * estimated time, and trains nothing.
 * @returns the table's rows (empty for a dry run).
 * @throws before any training when a name or a setting is wrong, naming it.
 */
export async function runExperiment(opts: ExperimentOptions): Promise<ResultRow[]> {
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const p = await plan(opts);
  const { grid, cells } = p;

  // Every setting is checked before the first cell starts.
  for (const c of cells) validateTrainConfig(c.config, `experiment ${grid.name}, cell ${c.id}`);

  const estimates = cells.map((c) => estimateSeconds(c, p.trainImages, p.evalImages));
  log(
    `experiment ${grid.name}: ${grid.about}. ${p.describe}; ${cells.length} cells, each ` +
      `${cells[0]?.config.epochs} epoch(s) on ${p.trainImages} images, in ${p.out}`,
  );
  const shas = new Map(
    p.teachers.filter((t) => existsSync(t.file)).map((t) => [t.file, fileSha256(t.file)]),
  );
  const teacherSha = (c: ExperimentCell) =>
    c.config.teacher ? shas.get(c.config.teacher) : undefined;
  if (opts.dryRun) {
    cells.forEach((c, i) => {
      const state =
        'result' in readCellResult(c, teacherSha(c))
          ? 'finished'
          : listCheckpoints(c.dir).length > 0
            ? 'unfinished'
            : 'to run';
      log(`  ${c.id}  ${state}  ~${minutes(estimates[i]!)}`);
    });
    let total = estimates.reduce((s, v) => s + v, 0);
    for (const t of p.teachers.filter((x) => x.train)) {
      const c = t.train!;
      const done = existsSync(join(t.dir!, 'result.json'));
      const seconds = done
        ? 0
        : c.epochs *
            Math.floor(p.evalTrainImages / c.batchSize) *
            c.batchSize *
            (STEP_SECONDS_PER_IMAGE[t.name] ?? 0.01) +
          p.evalImages * EVAL_SECONDS_PER_IMAGE;
      total += seconds;
      log(
        `  teacher ${t.name}: MoCo v2 ${c.arch} x${c.widthMultiplier}, ${c.epochs} epochs, ` +
          `trained first  ${done ? 'finished' : `~${minutes(seconds)}`}`,
      );
    }
    log(
      `estimated ${minutes(total)} at the costs measured on the wasm backend with 1 thread on ` +
        'a loaded 2-core machine (2 threads, or an idle machine, take less)',
    );
    return [];
  }

  mkdirSync(p.out, { recursive: true });
  for (const t of p.teachers) {
    await trainTeacher(t, opts, log);
    shas.set(t.file, fileSha256(t.file));
  }

  const results: CellResult[] = [];
  for (const [i, cell] of cells.entries()) {
    const teacherSha256 = teacherSha(cell);
    const prior = readCellResult(cell, teacherSha256);
    if ('result' in prior) {
      log(`[${i + 1}/${cells.length}] ${cell.id}: finished, skipped`);
      results.push(prior.result);
      continue;
    }
    const resume = listCheckpoints(cell.dir).length > 0;
    log(
      `[${i + 1}/${cells.length}] ${cell.id}: ${resume ? 'resuming' : 'training'}` +
        `${prior.why ? ` (${prior.why})` : ''}, about ${minutes(estimates[i]!)}`,
    );
    let r;
    try {
      r = await train(cell.config, { runDir: cell.dir, resume, quiet: opts.quiet, log });
    } catch (err) {
      throw new Error(
        `experiment ${grid.name}, cell ${cell.id} (${cell.dir}): ${(err as Error).message}`,
      );
    }
    const result: CellResult = {
      format: CELL_FORMAT,
      id: cell.id,
      student: cell.student,
      method: cell.method,
      teacher: cell.teacher,
      seed: cell.seed,
      knnTop1: r.eval.knnTop1,
      linearTop1: r.eval.linearTop1,
      parameters: backboneParameters(r.built.encoder),
      trainSeconds: r.trainSeconds,
      config: cell.config,
      ...(teacherSha256 ? { teacherSha256 } : {}),
    };
    r.built.encoder.params.dispose();
    writeFileAtomic(join(cell.dir, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);
    results.push(result);
  }

  const teacherRows = await evaluateTeachers(p, opts, log);
  const labelOf = (method: string) => EXPERIMENT_METHODS[method]?.label ?? method;
  const rows = summarise(results, labelOf, p.teachers.length > 1);
  writeResults(p, rows, results, teacherRows, opts.command);
  log('');
  log(formatExperimentTable(rows));
  return rows;
}

function writeResults(
  p: Plan,
  rows: ResultRow[],
  cells: CellResult[],
  teachers: TeacherFigures[],
  command: string | undefined,
): void {
  const { grid } = p;
  const md = [
    `# Experiment ${grid.name}`,
    '',
    `${grid.about}. ${p.describe}; each cell trains ${cells[0]?.config.epochs} epoch(s) on ` +
      `${p.trainImages} of them. Accuracies: mean ± sample standard deviation over seeds; ` +
      'training time: mean per cell.',
    ...(command ? ['', `Command: \`${command}\``] : []),
    '',
    formatExperimentTable(rows),
    ...(teachers.length
      ? ['', 'Teachers, evaluated the same way:', '', formatTeacherTable(teachers)]
      : []),
    '',
  ].join('\n');
  writeFileAtomic(join(p.out, 'results.md'), md);
  writeFileAtomic(
    join(p.out, 'results.json'),
    `${JSON.stringify({ grid: grid.name, command, data: p.describe, rows, teachers, cells }, null, 2)}\n`,
  );
  writeFileAtomic(
    join(p.out, 'results.svg'),
    resultsChart(
      rows,
      `experiment ${grid.name}: kNN and linear top-1, mean and standard deviation over seeds`,
    ),
  );
}

/**
 * The resolved configuration of a training run, its defaults, and its validation. A wrong
 * setting fails here, naming the field and the value, before any work starts.
 */
import { listBackbones } from '@disco/backbones';

/** Everything a `pretrain` (MoCo v2) or `distill` (DisCo) run needs. */
export interface TrainConfig {
  /** 'moco': MoCo v2 alone; 'disco': MoCo v2 plus the consistency loss to `teacher`. */
  method: 'moco' | 'disco';
  /** Folder of Fashion-MNIST IDX files; unset: the subset shipped in @disco/data. */
  data?: string;
  /** Use only the first N training images. */
  limit?: number;
  arch: string;
  widthMultiplier: number;
  smallStem: boolean;
  /**
   * Backbone output fed to the projection head and used for evaluation: the pooled feature,
   * or for MobileNetV3 the head feature after pooling (1024/1280-d), as DisCo's students use.
   */
  output: 'pooled' | 'head';
  /** Projection head hidden width (DisCo's student: 2048; MoCo v2 ResNet-50: 2048). */
  hiddenDim: number;
  /** Embedding width. */
  dim: number;
  /** Side of the square training crops and evaluation inputs. */
  imageSize: number;
  epochs: number;
  batchSize: number;
  /** Base learning rate (cosine schedule per epoch, no warm-up). */
  lr: number;
  weightDecay: number;
  sgdMomentum: number;
  /** Queue length K (a multiple of batchSize). */
  queueSize: number;
  temperature: number;
  /** Key encoder EMA momentum m. */
  mocoMomentum: number;
  /** Ghost-BN group size (per-"device" batch). */
  bnGroupSize: number;
  seed: number;
  /** Teacher encoder file (method 'disco'). */
  teacher?: string;
  /** Weight of each view's consistency term on the per-sample mean. */
  distillWeight: number;
  teacherBn: 'train' | 'eval';
  /** Evaluate with kNN every this many epochs (0: only at the end). */
  knnEvery: number;
  /** Checkpoints kept (at least 1). */
  keepCheckpoints: number;
  /**
   * Also write a checkpoint every this many optimizer steps inside an epoch (0: only at
   * epoch ends). A run resumed from one continues from the exact batch.
   */
  checkpointEvery: number;
  /**
   * Run each batch as micro-batches of this many images (whole BN groups) with summed
   * gradients: the same step in less memory (0: the whole batch at once).
   */
  microBatch: number;
}

export const TRAIN_DEFAULTS: Omit<TrainConfig, 'method' | 'arch'> = {
  widthMultiplier: 1,
  smallStem: false,
  output: 'pooled',
  hiddenDim: 2048,
  dim: 128,
  imageSize: 28,
  epochs: 10,
  batchSize: 64,
  lr: 0.06,
  weightDecay: 1e-4,
  sgdMomentum: 0.9,
  queueSize: 4096,
  temperature: 0.2,
  mocoMomentum: 0.99,
  bnGroupSize: 32,
  seed: 0,
  distillWeight: 32,
  teacherBn: 'train',
  knnEvery: 0,
  keepCheckpoints: 2,
  checkpointEvery: 0,
  microBatch: 0,
};

function fail(where: string, field: string, value: unknown, rule: string): never {
  throw new Error(`${where}: field '${field}' is ${JSON.stringify(value)}: ${rule}`);
}

/** Checks a config; `where` names its source (a file or 'command line') in errors. */
export function validateTrainConfig(cfg: TrainConfig, where = 'config'): TrainConfig {
  const posInt = ['epochs', 'batchSize', 'dim', 'imageSize', 'queueSize', 'bnGroupSize'] as const;
  for (const f of posInt) {
    if (!Number.isInteger(cfg[f]) || cfg[f] <= 0)
      fail(where, f, cfg[f], 'must be a positive integer');
  }
  for (const f of ['knnEvery', 'hiddenDim', 'seed', 'checkpointEvery', 'microBatch'] as const) {
    if (!Number.isInteger(cfg[f]) || cfg[f] < 0) fail(where, f, cfg[f], 'must be an integer >= 0');
  }
  if (!Number.isInteger(cfg.keepCheckpoints) || cfg.keepCheckpoints < 1) {
    fail(where, 'keepCheckpoints', cfg.keepCheckpoints, 'must be an integer >= 1');
  }
  for (const f of ['lr', 'temperature', 'widthMultiplier'] as const) {
    if (!(cfg[f] > 0) || !Number.isFinite(cfg[f])) fail(where, f, cfg[f], 'must be a number > 0');
  }
  for (const f of ['weightDecay', 'distillWeight'] as const) {
    if (!(cfg[f] >= 0) || !Number.isFinite(cfg[f])) fail(where, f, cfg[f], 'must be a number >= 0');
  }
  for (const f of ['sgdMomentum', 'mocoMomentum'] as const) {
    if (!(cfg[f] >= 0 && cfg[f] < 1)) fail(where, f, cfg[f], 'must be in [0, 1)');
  }
  if (!listBackbones().includes(cfg.arch)) {
    fail(where, 'arch', cfg.arch, `unknown backbone; known: ${listBackbones().join(', ')}`);
  }
  if (cfg.method !== 'moco' && cfg.method !== 'disco') {
    fail(where, 'method', cfg.method, "must be 'moco' or 'disco'");
  }
  if (cfg.queueSize % cfg.batchSize !== 0) {
    fail(
      where,
      'queueSize',
      cfg.queueSize,
      `must be a multiple of batchSize ${cfg.batchSize} (MoCo enqueues whole batches)`,
    );
  }
  if (cfg.batchSize % cfg.bnGroupSize !== 0 && cfg.batchSize > cfg.bnGroupSize) {
    fail(where, 'bnGroupSize', cfg.bnGroupSize, `must divide batchSize ${cfg.batchSize}`);
  }
  if (cfg.microBatch > 0) {
    if (cfg.batchSize % cfg.microBatch !== 0) {
      fail(where, 'microBatch', cfg.microBatch, `must divide batchSize ${cfg.batchSize}`);
    }
    if (cfg.bnGroupSize < cfg.batchSize && cfg.microBatch % cfg.bnGroupSize !== 0) {
      fail(
        where,
        'microBatch',
        cfg.microBatch,
        `must be a multiple of bnGroupSize ${cfg.bnGroupSize} (whole BN groups)`,
      );
    }
  }
  if (cfg.method === 'disco' && !cfg.teacher) {
    fail(where, 'teacher', cfg.teacher, 'a teacher encoder file is required for DisCo');
  }
  if (cfg.output !== 'pooled' && cfg.output !== 'head') {
    fail(where, 'output', cfg.output, "must be 'pooled' or 'head'");
  }
  if (cfg.teacherBn !== 'train' && cfg.teacherBn !== 'eval') {
    fail(where, 'teacherBn', cfg.teacherBn, "must be 'train' or 'eval'");
  }
  if (cfg.limit !== undefined && (!Number.isInteger(cfg.limit) || cfg.limit < cfg.batchSize)) {
    fail(where, 'limit', cfg.limit, `must be an integer >= batchSize ${cfg.batchSize}`);
  }
  return cfg;
}

/**
 * Fields that may differ between the config stored in a checkpoint and the config of the run
 * that resumes it. They decide what is logged, monitored or kept on disk, never a number
 * training computes: `knnEvery` (the kNN monitor's precise BN rewrites only BN running
 * statistics, which training-mode steps do not read and the final evaluation re-estimates
 * from scratch), `keepCheckpoints`, `checkpointEvery`, `microBatch` (the same step up to
 * float rounding, so a run that ran out of memory can resume in smaller pieces), and
 * `teacher`, a path: the teacher's identity is its sha256, compared on its own. `epochs` is allowed to change too, with the
 * cosine schedule re-computed (see `compareResumeConfig`). `quiet` is a run option, not a
 * config field. Every other field must match.
 */
export const RESUME_FREE_FIELDS: readonly (keyof TrainConfig)[] = [
  'knnEvery',
  'keepCheckpoints',
  'checkpointEvery',
  'microBatch',
  'teacher',
];

/** How the config of a resumed run relates to the checkpoint's. */
export interface ResumeConfigCheck {
  /** The checkpoint's `epochs` when the new config changes it, else null. */
  oldEpochs: number | null;
}

/**
 * Compares the config stored in a checkpoint with the config of the run resuming it. Fields
 * the stored config lacks (written before they existed) count as their defaults.
 * @param source the checkpoint file, named in the error.
 * @throws naming each differing field with its old and new value, unless all differences are
 *   in `RESUME_FREE_FIELDS` or `epochs`.
 */
export function compareResumeConfig(
  saved: Partial<TrainConfig>,
  now: TrainConfig,
  source: string,
): ResumeConfigCheck {
  const old = { ...TRAIN_DEFAULTS, ...saved } as Record<string, unknown>;
  const cur = now as unknown as Record<string, unknown>;
  const fields = [...new Set([...Object.keys(old), ...Object.keys(cur)])];
  const changes = fields
    .filter((f) => f !== 'epochs' && !(RESUME_FREE_FIELDS as readonly string[]).includes(f))
    .filter((f) => JSON.stringify(old[f]) !== JSON.stringify(cur[f]))
    .map((f) => `'${f}' was ${JSON.stringify(old[f])}, now ${JSON.stringify(cur[f])}`);
  if (changes.length > 0) {
    throw new Error(
      `resume ${source}: the config differs from the checkpoint's: ${changes.join('; ')}. ` +
        'Resume with the same settings (only epochs, ' +
        `${RESUME_FREE_FIELDS.join(', ')} may change), or train in a new run folder`,
    );
  }
  return { oldEpochs: old.epochs === now.epochs ? null : (old.epochs as number) };
}

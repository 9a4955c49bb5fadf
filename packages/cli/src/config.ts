/**
 * The resolved configuration of a training run, its defaults, and its validation. A wrong
 * setting fails here, naming the field and the value, before any work starts.
 */
import { listBackbones } from '@disco/backbones';

/**
 * What trains the student: 'moco' (MoCo v2 alone), 'disco' (MoCo v2 plus the consistency
 * loss to `teacher`), 'seed' (SEED's soft cross-entropy over a queue of teacher embeddings),
 * 'compress-1q' / 'compress-2q' (CompRess's KL over one bank, or a teacher and a student
 * bank). The last three train without MoCo's InfoNCE (weight 0).
 */
export type TrainMethod = 'moco' | 'disco' | 'seed' | 'compress-1q' | 'compress-2q';

/** Every method, in the order help texts list them. */
export const TRAIN_METHODS: readonly TrainMethod[] = [
  'moco',
  'disco',
  'seed',
  'compress-1q',
  'compress-2q',
];

/**
 * The teacher BatchNorm mode a method runs with unless told otherwise: DisCo's official code
 * runs the teacher in train mode (batch statistics; `model.train()` on the whole wrapper),
 * SEED's and CompRess's code put it in eval mode (running statistics).
 */
export function defaultTeacherBn(method: TrainMethod): 'train' | 'eval' {
  return method === 'seed' || method === 'compress-1q' || method === 'compress-2q'
    ? 'eval'
    : 'train';
}

/** Everything a `pretrain` (MoCo v2) or `distill` (DisCo, SEED, CompRess) run needs. */
export interface TrainConfig {
  /** What trains the student (see `TrainMethod`). */
  method: TrainMethod;
  /** Folder of Fashion-MNIST IDX files; unset: the subset shipped in @disco/data. */
  data?: string;
  /** Use only the first N training images. */
  limit?: number;
  /** Student backbone, a name from the @disco/backbones registry (`listBackbones()`). */
  arch: string;
  /** Scales the backbone's stem and stage widths (default 1; must be > 0). */
  widthMultiplier: number;
  /** The backbone stem for 32x32-class inputs, which keeps more resolution (default false). */
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
  /** Passes over the training images (default 10). */
  epochs: number;
  /** Images per optimizer step (default 64). */
  batchSize: number;
  /** Base learning rate (cosine schedule per epoch, no warm-up). */
  lr: number;
  /** SGD weight decay (L2 penalty; default 1e-4). */
  weightDecay: number;
  /** SGD momentum, in [0, 1) (default 0.9). */
  sgdMomentum: number;
  /** Queue length K (a multiple of batchSize). */
  queueSize: number;
  /** InfoNCE temperature tau (default 0.2, MoCo v2). */
  temperature: number;
  /** Key encoder EMA momentum m. */
  mocoMomentum: number;
  /** Ghost-BN group size (per-"device" batch). */
  bnGroupSize: number;
  /** Seed of every random stream: initialisation, shuffling, augmentation, queues (default 0). */
  seed: number;
  /** Teacher encoder file (every method but 'moco'). */
  teacher?: string;
  /** Weight of each view's consistency term on the per-sample mean (DisCo). */
  distillWeight: number;
  /**
   * The teacher's BatchNorm: batch statistics ('train', DisCo's official code) or running
   * statistics ('eval', SEED and CompRess). The command line picks `defaultTeacherBn`.
   */
  teacherBn: 'train' | 'eval';
  /** DisCo: the consistency loss on both views (the paper) or on view 1 only (ablation). */
  mseViews: 'both' | 'first';
  /** DisCo's `--only-mse` ablation: the consistency loss alone, InfoNCE weight 0. */
  onlyMse: boolean;
  /**
   * SEED's queue of teacher embeddings, K (a multiple of batchSize); 0: `queueSize`. SEED
   * uses MoCo's K (65536 on ImageNet), so it follows `queueSize`, sized to the data.
   */
  seedQueueSize: number;
  /** SEED's student temperature tau_S (0.2, SEED's code). */
  seedStudentTemperature: number;
  /** SEED's teacher temperature tau_T (1e-4, SEED's code: nearly one-hot on t_i). */
  seedTeacherTemperature: number;
  /**
   * CompRess-1q's bank of teacher embeddings, K (a multiple of batchSize); 0: `queueSize`.
   * CompRess-2q pairs its teacher bank with MoCo's queue, so its K is `queueSize` and this
   * must be 0 or equal to it. The paper's 128000 on ImageNet is about twice MoCo's K.
   */
  compressQueueSize: number;
  /** CompRess's student temperature (0.04, the paper). */
  compressStudentTemperature: number;
  /** CompRess's teacher temperature (0.04, the paper). */
  compressTeacherTemperature: number;
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

/**
 * The value of every field but `method` and `arch` when neither the command line nor a config
 * file sets it: a MoCo v2 run sized for 28x28 Fashion-MNIST on a CPU.
 */
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
  mseViews: 'both',
  onlyMse: false,
  seedQueueSize: 0,
  seedStudentTemperature: 0.2,
  seedTeacherTemperature: 1e-4,
  compressQueueSize: 0,
  compressStudentTemperature: 0.04,
  compressTeacherTemperature: 0.04,
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
  const nonNegInt = [
    'knnEvery',
    'hiddenDim',
    'seed',
    'checkpointEvery',
    'microBatch',
    'seedQueueSize',
    'compressQueueSize',
  ] as const;
  for (const f of nonNegInt) {
    if (!Number.isInteger(cfg[f]) || cfg[f] < 0) fail(where, f, cfg[f], 'must be an integer >= 0');
  }
  if (!Number.isInteger(cfg.keepCheckpoints) || cfg.keepCheckpoints < 1) {
    fail(where, 'keepCheckpoints', cfg.keepCheckpoints, 'must be an integer >= 1');
  }
  const positive = [
    'lr',
    'temperature',
    'widthMultiplier',
    'seedStudentTemperature',
    'seedTeacherTemperature',
    'compressStudentTemperature',
    'compressTeacherTemperature',
  ] as const;
  for (const f of positive) {
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
  if (!TRAIN_METHODS.includes(cfg.method)) {
    fail(where, 'method', cfg.method, `must be one of ${TRAIN_METHODS.join(', ')}`);
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
  if (cfg.method !== 'moco' && !cfg.teacher) {
    fail(where, 'teacher', cfg.teacher, `a teacher encoder file is required for ${cfg.method}`);
  }
  checkMethodFields(cfg, where);
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

/** The fields that belong to one method: set for another, they fail instead of doing nothing. */
function checkMethodFields(cfg: TrainConfig, where: string): void {
  if (cfg.mseViews !== 'both' && cfg.mseViews !== 'first') {
    fail(where, 'mseViews', cfg.mseViews, "must be 'both' or 'first'");
  }
  if (typeof cfg.onlyMse !== 'boolean') fail(where, 'onlyMse', cfg.onlyMse, 'must be a boolean');
  const own: [keyof TrainConfig, TrainMethod[]][] = [
    ['mseViews', ['disco']],
    ['onlyMse', ['disco']],
    ['seedQueueSize', ['seed']],
    ['seedStudentTemperature', ['seed']],
    ['seedTeacherTemperature', ['seed']],
    ['compressQueueSize', ['compress-1q', 'compress-2q']],
    ['compressStudentTemperature', ['compress-1q', 'compress-2q']],
    ['compressTeacherTemperature', ['compress-1q', 'compress-2q']],
  ];
  for (const [field, methods] of own) {
    if (
      cfg[field] !== TRAIN_DEFAULTS[field as keyof typeof TRAIN_DEFAULTS] &&
      !methods.includes(cfg.method)
    ) {
      fail(
        where,
        field,
        cfg[field],
        `applies to method ${methods.map((m) => `'${m}'`).join(' or ')} only, not '${cfg.method}'`,
      );
    }
  }
  for (const field of ['seedQueueSize', 'compressQueueSize'] as const) {
    if (cfg[field] % cfg.batchSize !== 0) {
      fail(
        where,
        field,
        cfg[field],
        `must be a multiple of batchSize ${cfg.batchSize} (whole batches are enqueued)`,
      );
    }
  }
  if (
    cfg.method === 'compress-2q' &&
    cfg.compressQueueSize !== 0 &&
    cfg.compressQueueSize !== cfg.queueSize
  ) {
    fail(
      where,
      'compressQueueSize',
      cfg.compressQueueSize,
      `must be 0 or queueSize ${cfg.queueSize}: CompRess-2q pairs its teacher bank with ` +
        "MoCo's queue column by column",
    );
  }
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

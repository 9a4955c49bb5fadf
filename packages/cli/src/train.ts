/**
 * One self-supervised training run: MoCo v2 alone (`disco pretrain`), or a student distilled
 * from a frozen teacher (`disco distill`): DisCo (MoCo v2 plus the consistency loss), SEED or
 * CompRess (their own loss over a queue of teacher embeddings, InfoNCE off). Per epoch:
 * cosine learning rate, shuffled batches, two augmented views, a step, one log line, a
 * checkpoint (and, with `checkpointEvery`, more inside the epoch); at the end an encoder
 * file. A run folder holds `config.json`, `metrics.jsonl`, `checkpoints/` and
 * `encoder.safetensors`.
 *
 * A run survives being stopped: `--resume` continues from the newest checkpoint that reads
 * back whole, at the exact batch, with every random stream, the queue, the optimizer and both
 * encoders restored, so on the cpu backend the resumed run computes the same numbers as an
 * unbroken one. SIGINT or SIGTERM finish the current step, write a checkpoint and exit.
 */
import { appendFileSync, mkdirSync, renameSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { cosineLr, Rng, writeFileAtomic } from '@disco/core';
import {
  BatchLoader,
  FASHION_MNIST_MEAN,
  FASHION_MNIST_STD,
  type ImageSet,
  loadFashionMnist,
  mocoV2Augment,
  toFloatTensor,
} from '@disco/data';
import {
  CompRess,
  discoExtraLoss,
  type Objective,
  type ObjectiveStep,
  Seed,
  Teacher,
  type TeacherInput,
} from '@disco/distill';
import { loadMocoState, MoCo, mocoStateTensors, NonFiniteLossError } from '@disco/moco';
import {
  type EpochSums,
  findResumePoint,
  removeStaleTemporaries,
  rewindMetrics,
  type RunState,
  saveCheckpoint,
} from './checkpoint.js';
import { compareResumeConfig, type TrainConfig, validateTrainConfig } from './config.js';
import { openTrainData, type TrainData } from './datasets.js';
import { evaluateBackbone, preprocessFor, type EvalResult } from './evaluate.js';
import { preciseBatchNorm } from './precise-bn.js';
import {
  buildEncoder,
  type BuiltEncoder,
  type EncoderSpec,
  fileSha256,
  loadModelFile,
  saveModelFile,
} from './model-file.js';
import { Progress } from './progress.js';
import { finishRunReport } from './report.js';

/** How `train` runs: where it writes, whether it resumes, where its lines go. */
export interface TrainOptions {
  /** The run folder. */
  runDir: string;
  /**
   * Continue from the newest valid checkpoint in `runDir`. The config must match the
   * checkpoint's, except `epochs` and the fields in `RESUME_FREE_FIELDS`.
   */
  resume?: boolean;
  /** One line per epoch and notices go here (default: stdout). */
  log?: (line: string) => void;
  /** Hide the per-batch progress bar (the epoch lines are still logged). */
  quiet?: boolean;
  /**
   * Image sets to use instead of loading `cfg.data` (tests, the pipeline); used only when
   * `test` is given too. Evaluation then fits kNN and the probe on this set.
   */
  train?: ImageSet;
  /** The labelled test split that goes with `train`. */
  test?: ImageSet;
}

/** What a finished `train` run returns. */
export interface TrainResult {
  /** The trained student encoder (backbone and projection head), still in memory. */
  built: BuiltEncoder;
  /** Seconds spent in training epochs, summed over resumed runs; evaluation not included. */
  trainSeconds: number;
  /** Mean loss over the batches of the last epoch. */
  finalLoss: number;
  /** The final kNN and linear-probe scores (NaN on unlabelled data). */
  eval: EvalResult;
  /** Path of the written `encoder.safetensors`. */
  encoderFile: string;
}

/** The encoder spec a config describes. */
export function specOf(cfg: TrainConfig, channels: number): EncoderSpec {
  return {
    arch: cfg.arch,
    backbone: {
      widthMultiplier: cfg.widthMultiplier,
      smallStem: cfg.smallStem,
      inChannels: channels,
      ...(cfg.output === 'head' ? { output: 'head' as const } : {}),
    },
    hiddenDim: cfg.hiddenDim,
    dim: cfg.dim,
  };
}

/**
 * Loads the splits a config names: `train` (the first `limit` images, for training) and
 * `test`; evaluation fits kNN and the probe on `evalTrain`, the whole train split.
 */
export function loadData(cfg: Pick<TrainConfig, 'data' | 'limit'>): {
  /** The training images: the first `limit` of the train split, or all of it. */
  train: ImageSet;
  /** The test split. */
  test: ImageSet;
  /** The whole train split, for fitting kNN and the linear probe. */
  evalTrain: ImageSet;
} {
  const full = loadFashionMnist({ dir: cfg.data, split: 'train' });
  const train =
    cfg.limit === undefined || cfg.limit >= full.count
      ? full
      : loadFashionMnist({ dir: cfg.data, split: 'train', limit: cfg.limit });
  return { train, test: loadFashionMnist({ dir: cfg.data, split: 'test' }), evalTrain: full };
}

/** Exit status after a signal: 128 + its number (SIGINT 130, SIGTERM 143), as shells report. */
function exitStatusOf(signal: NodeJS.Signals): number {
  return 128 + osConstants.signals[signal];
}

/**
 * SIGINT and SIGTERM while training. The first one asks the loop to stop after the current
 * step, write a checkpoint and exit with `exitStatusOf(signal)`. A step is synchronous, so a
 * signal is seen only once the step under way has finished (and two signals inside one step
 * count as one); once the first is seen, the listeners are removed, so a second signal gets
 * the system's default action and ends the process at once, also while the checkpoint is
 * being written (atomically: the older files stay whole).
 *
 * A wrapper process that re-sends a signal, then kills, when its child does not answer within
 * milliseconds defeats this: the `tsx` command does so, so run the sources with
 * `node --import tsx` (or run the built `disco`) to stop gracefully.
 */
class StopOnSignal {
  signal: NodeJS.Signals | null = null;
  private readonly onSignal = (signal: NodeJS.Signals) => {
    // A second signal that reached the listener before it was removed quits as well.
    if (this.signal !== null) process.exit(exitStatusOf(signal));
    this.signal = signal;
    this.remove();
    this.log(
      `${signal}: finishing the current step, then writing a checkpoint ` +
        `(send ${signal} again to quit at once)`,
    );
  };

  constructor(
    private readonly log: (line: string) => void,
    private readonly runDir: string,
  ) {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  /** Lets signals queued during a (synchronous) step reach the listener. */
  async poll(): Promise<NodeJS.Signals | null> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    return this.signal;
  }

  /** Reports the checkpoint written after the signal and exits. */
  exit(checkpoint: string, where: string): never {
    this.log(
      `${this.signal}: stopped ${where}; checkpoint written to ${checkpoint}. To continue, ` +
        `run the same command with --resume (run folder ${this.runDir}).`,
    );
    process.exit(exitStatusOf(this.signal!));
  }

  remove(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}

/**
 * DisCo's consistency loss as an `Objective`: no state of its own (its queue is MoCo's), the
 * teacher's targets of one or both views, InfoNCE at weight 1 (0 for `onlyMse`).
 */
function discoObjective(teacher: Teacher, cfg: TrainConfig): Objective {
  return {
    contrastiveWeight: cfg.onlyMse ? 0 : 1,
    prepare: (v1, v2): ObjectiveStep => {
      const d = discoExtraLoss(teacher, v1, v2, { weight: cfg.distillWeight, views: cfg.mseViews });
      return { extraLoss: d.extraLoss, enqueue: () => {}, dispose: d.dispose };
    },
    state: () => new Map(),
    load: () => {},
    dispose: () => {},
  };
}

/**
 * What a distillation method adds to MoCo's step, built on the run's teacher: DisCo's
 * consistency loss, SEED, or CompRess (1q: one bank of teacher embeddings; 2q: a teacher
 * bank paired with MoCo's queue of momentum keys). `rng` seeds the queues' first contents.
 */
function buildObjective(cfg: TrainConfig, teacher: Teacher, moco: MoCo, rng: Rng): Objective {
  switch (cfg.method) {
    case 'seed':
      return new Seed(teacher, rng, {
        queueSize: cfg.seedQueueSize || cfg.queueSize,
        studentTemperature: cfg.seedStudentTemperature,
        teacherTemperature: cfg.seedTeacherTemperature,
      });
    case 'compress-1q':
    case 'compress-2q':
      return new CompRess(
        teacher,
        rng,
        {
          variant: cfg.method === 'compress-1q' ? '1q' : '2q',
          queueSize: cfg.compressQueueSize || cfg.queueSize,
          studentTemperature: cfg.compressStudentTemperature,
          teacherTemperature: cfg.compressTeacherTemperature,
        },
        moco.queue,
      );
    default:
      return discoObjective(teacher, cfg);
  }
}

/** Where a resumed run starts, read from its checkpoint. */
interface ResumedPosition {
  checkpoint: string;
  /** Epochs completed. */
  epoch: number;
  /** Batches done in the next epoch. */
  batch: number;
  step: number;
  trainSeconds: number;
  sums: EpochSums | null;
  lastEpochLoss: number;
}

/**
 * Restores `moco`, the objective's state (its queues) and `augRng` from the newest checkpoint
 * of `runDir` that reads back whole and was written with the same config; null when the
 * folder has no checkpoint. Damaged newer files are reported and renamed `*.damaged`, so they
 * are never picked (or kept instead of good ones) later. `metrics.jsonl` is rewound to the
 * checkpoint's step.
 */
function resumeRun(args: {
  runDir: string;
  cfg: TrainConfig;
  moco: MoCo;
  objective: Objective | null;
  augRng: Rng;
  teacherSha256: string | undefined;
  metricsPath: string;
  log: (line: string) => void;
}): ResumedPosition | null {
  const { runDir, cfg, moco, log } = args;
  removeStaleTemporaries(runDir);
  const { checkpoint: ckpt, damaged } = findResumePoint(runDir);
  for (const d of damaged) {
    renameSync(d.path, `${d.path}.damaged`);
    log(
      `${d.message}; ${ckpt ? `resuming from ${ckpt.path}` : 'no older checkpoint reads back'} ` +
        '(the damaged file is renamed *.damaged)',
    );
  }
  if (!ckpt) {
    if (damaged.length > 0) {
      throw new Error(
        `resume ${runDir}: none of its ${damaged.length} checkpoint(s) reads back whole; ` +
          'run without --resume to start again',
      );
    }
    log(`no checkpoint in ${runDir}; starting from scratch`);
    return null;
  }

  const { state } = ckpt;
  const batch = state.batch ?? 0;
  try {
    const { oldEpochs } = compareResumeConfig(state.config, cfg, ckpt.path);
    if (batch > 0 ? cfg.epochs <= state.epoch : cfg.epochs < state.epoch) {
      throw new Error(
        `resume ${ckpt.path}: field 'epochs' is ${cfg.epochs}, but the checkpoint is past ` +
          `${state.epoch} epoch(s)${batch > 0 ? ` and ${batch} batch(es)` : ''}`,
      );
    }
    if (args.teacherSha256 !== state.teacherSha256) {
      throw new Error(
        `resume ${ckpt.path}: the run used teacher sha256 ${state.teacherSha256}, ` +
          `${cfg.teacher} has ${args.teacherSha256}`,
      );
    }
    loadMocoState(moco, ckpt.tensors, state.queuePtr, ckpt.path);
    args.objective?.load(ckpt.tensors, ckpt.path);
    moco.setRngState(state.rng.moco);
    args.augRng.setState(state.rng.augment);
    if (oldEpochs !== null) {
      log(
        `epochs ${oldEpochs} -> ${cfg.epochs}: the cosine learning-rate schedule is ` +
          `re-computed for ${cfg.epochs} epochs (epoch ${state.epoch + 1} runs at lr ` +
          `${cosineLr(cfg.lr, state.epoch, cfg.epochs).toFixed(4)})`,
      );
    }
  } finally {
    for (const t of ckpt.tensors.values()) t.dispose();
  }

  const dropped = rewindMetrics(args.metricsPath, state);
  const where =
    batch > 0
      ? `epoch ${state.epoch + 1} batch ${batch}, step ${state.step}`
      : `epoch ${state.epoch}, step ${state.step}`;
  log(
    `resumed from ${ckpt.path} (${where})` +
      (dropped > 0 ? `; ${dropped} later line(s) of metrics.jsonl dropped` : ''),
  );
  return {
    checkpoint: ckpt.path,
    epoch: state.epoch,
    batch,
    step: state.step,
    trainSeconds: state.trainSeconds - (batch > 0 ? (state.epochSums?.seconds ?? 0) : 0),
    sums: batch > 0 ? (state.epochSums ?? null) : null,
    lastEpochLoss: state.lastEpochLoss ?? NaN,
  };
}

/** True when a model's normalisation equals the data's, channel by channel. */
function sameNormalisation(
  a: { mean: readonly number[]; std: readonly number[] },
  b: { mean: readonly number[]; std: readonly number[] },
  channels: number,
): boolean {
  const at = (v: readonly number[], i: number) => (v.length === 1 ? v[0] : v[i]);
  for (let i = 0; i < channels; i++) {
    if (at(a.mean, i) !== at(b.mean, i) || at(a.std, i) !== at(b.std, i)) return false;
  }
  return true;
}

/**
 * Runs training to the configured number of epochs and evaluates the result.
 *
 * While it trains, SIGINT and SIGTERM finish the current step, write a checkpoint and end
 * the process with status 130 or 143 (see `StopOnSignal`); a second signal ends it at once.
 * @throws before any step when the config is invalid or, on resume, differs from the
 *   checkpoint's; during training when a loss is not finite (naming the epoch, step and loss
 *   parts; the checkpoints written so far are kept).
 */
export async function train(config: TrainConfig, opts: TrainOptions): Promise<TrainResult> {
  const cfg = validateTrainConfig(config);
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const data: Pick<TrainData, 'train' | 'test' | 'evalTrain' | 'mean' | 'std'> =
    opts.train && opts.test
      ? {
          train: opts.train,
          test: opts.test,
          evalTrain: opts.train,
          mean: [...FASHION_MNIST_MEAN],
          std: [...FASHION_MNIST_STD],
        }
      : await openTrainData({
          ...(cfg.data !== undefined ? { data: cfg.data } : {}),
          ...(cfg.limit !== undefined ? { limit: cfg.limit } : {}),
          imageSize: cfg.imageSize,
          seed: cfg.seed,
        }).then((d) => {
          log(`data: ${d.describe}`);
          return d;
        });
  const { train: trainSet, test: testSet, evalTrain } = data;
  const norm = { mean: data.mean, std: data.std };
  mkdirSync(opts.runDir, { recursive: true });
  const metricsPath = join(opts.runDir, 'metrics.jsonl');

  // Models: the student (query) encoder, its momentum copy inside MoCo, the teacher.
  const root = new Rng(cfg.seed);
  const built = buildEncoder(specOf(cfg, trainSet.channels), root.fork('init'));
  const moco = new MoCo(built.encoder, root.fork('moco'), {
    dim: cfg.dim,
    queueSize: cfg.queueSize,
    momentum: cfg.mocoMomentum,
    temperature: cfg.temperature,
    bnGroupSize: cfg.bnGroupSize,
    sgdMomentum: cfg.sgdMomentum,
    weightDecay: cfg.weightDecay,
  });
  let teacher: Teacher | null = null;
  let teacherSha256: string | undefined;
  if (cfg.method !== 'moco') {
    const file = loadModelFile(cfg.teacher!);
    if (file.encoder.outDim !== cfg.dim) {
      file.encoder.params.dispose();
      throw new Error(
        `teacher ${cfg.teacher}: its embedding has ${file.encoder.outDim} dimensions, the ` +
          `student's field 'dim' is ${cfg.dim}; ${cfg.method} compares the two, so they must ` +
          'be equal',
      );
    }
    const teacherChannels = (file.backbone.net as { inChannels?: number }).inChannels ?? 1;
    const same =
      file.info.imageSize === cfg.imageSize &&
      teacherChannels === trainSet.channels &&
      sameNormalisation(file.info, norm, trainSet.channels);
    const input: TeacherInput | undefined = same
      ? undefined
      : {
          from: norm,
          to: {
            mean: file.info.mean,
            std: file.info.std,
            channels: teacherChannels,
            size: file.info.imageSize,
          },
        };
    if (input) {
      log(
        `teacher input: views (${trainSet.channels} channel, ${cfg.imageSize} px) converted to the ` +
          `teacher's (${teacherChannels} channel, ${file.info.imageSize} px, its mean/std)`,
      );
    }
    teacher = new Teacher(file.encoder, cfg.teacherBn, cfg.bnGroupSize, input);
    file.encoder.params.dispose();
    teacherSha256 = fileSha256(cfg.teacher!);
  }
  // What the method adds to MoCo's step (none for MoCo v2 alone), with its own state.
  const objective = teacher ? buildObjective(cfg, teacher, moco, root.fork('objective')) : null;
  const infonceWeight = objective?.contrastiveWeight ?? 1;
  const augRng = root.fork('augment');
  const loader = new BatchLoader(trainSet, {
    batchSize: cfg.batchSize,
    shuffle: true,
    dropLast: true,
    rng: root.fork('loader'),
  });

  // Resume, or start at step 0. config.json is written once the config is known to fit.
  const resumed = opts.resume
    ? resumeRun({
        runDir: opts.runDir,
        cfg,
        moco,
        objective,
        augRng,
        teacherSha256,
        metricsPath,
        log,
      })
    : null;
  writeFileAtomic(join(opts.runDir, 'config.json'), `${JSON.stringify(cfg, null, 2)}\n`);
  const startEpoch = resumed?.epoch ?? 0;
  let step = resumed?.step ?? 0;
  let trainSeconds = resumed?.trainSeconds ?? 0;
  let finalLoss = resumed?.lastEpochLoss ?? NaN;
  let lastCheckpoint = resumed?.checkpoint ?? null;

  // The encoder file is rewritten after every epoch, so a long run can be used at any point.
  const encoderFile = join(opts.runDir, 'encoder.safetensors');
  const saveEncoder = (epochs: number, evalResult?: EvalResult) => {
    saveModelFile(encoderFile, built.encoder, {
      spec: specOf(cfg, trainSet.channels),
      imageSize: cfg.imageSize,
      ...norm,
      notes: {
        method: cfg.method,
        epochsCompleted: epochs,
        epochs: cfg.epochs,
        trainImages: trainSet.count,
        ...(evalResult ? { knnTop1: evalResult.knnTop1, linearTop1: evalResult.linearTop1 } : {}),
      },
    });
    return encoderFile;
  };

  // Why a run stopped, with where it stopped and what is left of it.
  const stoppedAt = (where: string, why: string) =>
    new Error(
      `training stopped at ${where}: ${why}. ` +
        (lastCheckpoint
          ? `The last good checkpoint, ${lastCheckpoint}, is kept.`
          : 'No checkpoint had been written yet.'),
    );
  const save = (
    epoch: number,
    position: Pick<RunState, 'epoch' | 'batch' | 'trainSeconds' | 'epochSums' | 'lastEpochLoss'>,
  ): string => {
    const state: RunState = {
      ...position,
      step,
      queuePtr: moco.queue.ptr,
      rng: { moco: moco.rngState(), augment: augRng.getState() },
      config: cfg,
      teacherSha256,
    };
    try {
      lastCheckpoint = saveCheckpoint(
        opts.runDir,
        new Map([...mocoStateTensors(moco), ...(objective?.state() ?? [])]),
        state,
        cfg.keepCheckpoints,
      );
    } catch (err) {
      throw stoppedAt(`epoch ${epoch + 1}, step ${step}`, (err as Error).message);
    }
    return lastCheckpoint;
  };

  const augment = { size: cfg.imageSize, ...norm };
  // Metrics lines say when InfoNCE is reported but not counted in the loss (weight 0).
  const weightNote = infonceWeight !== 1 ? { infonceWeight } : {};
  const weightText = infonceWeight !== 1 ? ` (weight ${infonceWeight})` : '';
  const stop = new StopOnSignal(log, opts.runDir);
  try {
    for (let epoch = startEpoch; epoch < cfg.epochs; epoch++) {
      const lr = cosineLr(cfg.lr, epoch, cfg.epochs);
      const first = epoch === startEpoch ? (resumed?.batch ?? 0) : 0;
      const sums: EpochSums = (epoch === startEpoch ? resumed?.sums : null) ?? {
        loss: 0,
        parts: {},
        seconds: 0,
      };
      const bar = new Progress({
        label: `${cfg.method} epoch ${epoch + 1}/${cfg.epochs}`,
        total: loader.batchesPerEpoch,
        quiet: opts.quiet,
      });
      const started = Date.now();
      const elapsed = () => (Date.now() - started) / 1000;
      for (const batch of loader.epoch(epoch, first)) {
        const done = batch.batchIndex + 1;

        // Views: two augmentations of the batch.
        const x = toFloatTensor(
          batch.images,
          batch.size,
          trainSet.height,
          trainSet.width,
          trainSet.channels,
        );
        const v1 = mocoV2Augment(x, augRng, augment);
        const v2 = mocoV2Augment(x, augRng, augment);
        x.dispose();

        // Forward, losses and update, inside MoCo's step; the objective's queue takes the
        // batch only once the step has been applied.
        let s: ObjectiveStep | undefined;
        let metrics;
        try {
          s = objective?.prepare(v1, v2);
          metrics = moco.step(v1, v2, lr, {
            ...(s ? { extraLoss: s.extraLoss, contrastiveWeight: infonceWeight } : {}),
            ...(cfg.microBatch > 0 ? { microBatch: cfg.microBatch } : {}),
          });
          s?.enqueue();
        } catch (err) {
          if (err instanceof NonFiniteLossError) {
            throw stoppedAt(
              `epoch ${epoch + 1} batch ${done}/${loader.batchesPerEpoch}, step ${step + 1}`,
              `${err.message}; the step was not applied`,
            );
          }
          throw err;
        } finally {
          s?.dispose();
          v1.dispose();
          v2.dispose();
        }

        // Bookkeeping: sums for the epoch line, the progress bar, one metrics line.
        step++;
        sums.loss += metrics.loss;
        for (const [k, v] of Object.entries(metrics.parts))
          sums.parts[k] = (sums.parts[k] ?? 0) + v;
        bar.tick(done, {
          loss: metrics.loss,
          'img/s': ((done - first) * cfg.batchSize) / elapsed(),
        });
        appendFileSync(
          metricsPath,
          `${JSON.stringify({ kind: 'step', epoch: epoch + 1, step, lr, loss: metrics.loss, ...metrics.parts, ...weightNote })}\n`,
        );

        // Between steps: a checkpoint when one is due or a signal asked to stop. The last
        // batch of an epoch is covered by the epoch-end checkpoint below.
        const signal = await stop.poll();
        const due = cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0;
        if ((signal || due) && done < loader.batchesPerEpoch) {
          const seconds = sums.seconds + elapsed();
          const path = save(epoch, {
            epoch,
            batch: done,
            trainSeconds: trainSeconds + seconds,
            epochSums: { ...sums, seconds },
          });
          if (signal) stop.exit(path, `at epoch ${epoch + 1} batch ${done}, step ${step}`);
        }
      }
      bar.end();

      // End of the epoch: its figures, the kNN monitor, a checkpoint and the encoder file.
      const batches = loader.batchesPerEpoch;
      const seconds = sums.seconds + elapsed();
      const imgPerSec = ((batches - first) * cfg.batchSize) / elapsed();
      trainSeconds += seconds;
      finalLoss = sums.loss / batches;
      const parts = Object.fromEntries(
        Object.entries(sums.parts).map(([k, v]) => [k, v / batches]),
      );

      let knn: number | undefined;
      if (
        testSet &&
        cfg.knnEvery > 0 &&
        (epoch + 1) % cfg.knnEvery === 0 &&
        epoch + 1 < cfg.epochs
      ) {
        const r = await evaluateBackbone(built.backbone, evalTrain, testSet, {
          imageSize: cfg.imageSize,
          ...norm,
          linearEpochs: 0,
          preciseBn: { bnGroupSize: cfg.bnGroupSize },
        });
        knn = r.knnTop1;
      }
      log(
        `epoch ${epoch + 1}/${cfg.epochs}  loss ${finalLoss.toFixed(4)}  ` +
          Object.entries(parts)
            .map(([k, v]) => `${k} ${v.toFixed(4)}${k === 'infonce' ? weightText : ''}`)
            .join('  ') +
          `  lr ${lr.toFixed(4)}  ${imgPerSec.toFixed(1)} img/s` +
          (knn !== undefined ? `  kNN top-1 ${(100 * knn).toFixed(2)}%` : ''),
      );
      appendFileSync(
        metricsPath,
        `${JSON.stringify({ kind: 'epoch', epoch: epoch + 1, step, lr, loss: finalLoss, ...parts, ...weightNote, imgPerSec, seconds, knnTop1: knn })}\n`,
      );
      const path = save(epoch, {
        epoch: epoch + 1,
        batch: 0,
        trainSeconds,
        lastEpochLoss: finalLoss,
      });
      saveEncoder(epoch + 1);
      if ((await stop.poll()) !== null) stop.exit(path, `at the end of epoch ${epoch + 1}`);
    }
  } finally {
    stop.remove();
  }

  // Evaluation re-estimates the BN running statistics with the final weights (precise BN);
  // the encoder file is written after it, with those statistics.
  let evalResult: EvalResult;
  if (testSet) {
    evalResult = await evaluateBackbone(built.backbone, evalTrain, testSet, {
      imageSize: cfg.imageSize,
      ...norm,
      seed: cfg.seed,
      preciseBn: { bnGroupSize: cfg.bnGroupSize },
    });
    log(
      `final: kNN top-1 ${(100 * evalResult.knnTop1).toFixed(2)}%  ` +
        `linear top-1 ${(100 * evalResult.linearTop1).toFixed(2)}%  train ${trainSeconds.toFixed(0)} s`,
    );
  } else {
    // Unlabelled data: nothing to score; the BN statistics are still re-estimated.
    preciseBatchNorm(built.backbone, evalTrain, {
      bnGroupSize: cfg.bnGroupSize,
      preprocess: preprocessFor({ imageSize: cfg.imageSize, ...norm }),
    });
    evalResult = { knnTop1: NaN, linearTop1: NaN, featureDim: built.backbone.outDim };
    log(`final: unlabelled data, no evaluation  train ${trainSeconds.toFixed(0)} s`);
  }
  appendFileSync(
    metricsPath,
    `${JSON.stringify({ kind: 'final', ...evalResult, trainSeconds })}\n`,
  );
  saveEncoder(cfg.epochs, evalResult);

  // The run report, with a map of a sample of the test features (a failure only warns).
  await finishRunReport({
    runDir: opts.runDir,
    backbone: built.backbone,
    test: testSet,
    preprocess: preprocessFor({ imageSize: cfg.imageSize, ...norm }),
    seed: cfg.seed,
    log,
  });
  objective?.dispose();
  teacher?.dispose();
  moco.dispose();
  return { built, trainSeconds, finalLoss, eval: evalResult, encoderFile };
}

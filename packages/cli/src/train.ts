/**
 * One self-supervised training run: MoCo v2 alone (`disco pretrain`) or DisCo
 * (`disco distill`: MoCo v2 plus the consistency loss to a frozen teacher). Per epoch:
 * cosine learning rate, shuffled batches, two augmented views, a step, one log line, a
 * checkpoint; at the end an encoder file. A run folder holds `config.json`,
 * `metrics.jsonl`, `checkpoints/` and `encoder.safetensors`.
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cosineLr, Rng } from '@disco/core';
import {
  BatchLoader,
  FASHION_MNIST_MEAN,
  FASHION_MNIST_STD,
  type ImageSet,
  loadFashionMnist,
  mocoV2Augment,
  toFloatTensor,
} from '@disco/data';
import { discoExtraLoss, Teacher } from '@disco/distill';
import { loadMocoState, MoCo, mocoStateTensors, NonFiniteLossError } from '@disco/moco';
import { newestCheckpoint, type RunState, saveCheckpoint } from './checkpoint.js';
import { type TrainConfig, validateTrainConfig } from './config.js';
import { evaluateBackbone, type EvalResult } from './evaluate.js';
import {
  buildEncoder,
  type BuiltEncoder,
  type EncoderSpec,
  fileSha256,
  loadModelFile,
  saveModelFile,
} from './model-file.js';
import { Progress } from './progress.js';

export interface TrainOptions {
  /** The run folder. */
  runDir: string;
  /** Continue from the newest valid checkpoint in `runDir`. */
  resume?: boolean;
  /** One line per epoch and notices go here (default: stdout). */
  log?: (line: string) => void;
  quiet?: boolean;
  /** Image sets to use instead of loading `cfg.data` (tests, the pipeline). */
  train?: ImageSet;
  test?: ImageSet;
}

export interface TrainResult {
  built: BuiltEncoder;
  trainSeconds: number;
  finalLoss: number;
  eval: EvalResult;
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
  train: ImageSet;
  test: ImageSet;
  evalTrain: ImageSet;
} {
  const full = loadFashionMnist({ dir: cfg.data, split: 'train' });
  const train =
    cfg.limit === undefined || cfg.limit >= full.count
      ? full
      : loadFashionMnist({ dir: cfg.data, split: 'train', limit: cfg.limit });
  return { train, test: loadFashionMnist({ dir: cfg.data, split: 'test' }), evalTrain: full };
}

/** Runs training to the configured number of epochs and evaluates the result. */
export async function train(config: TrainConfig, opts: TrainOptions): Promise<TrainResult> {
  const cfg = validateTrainConfig(config);
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const data =
    opts.train && opts.test
      ? { train: opts.train, test: opts.test, evalTrain: opts.train }
      : loadData(cfg);
  const { train: trainSet, test: testSet, evalTrain } = data;
  const norm = { mean: [...FASHION_MNIST_MEAN], std: [...FASHION_MNIST_STD] };
  mkdirSync(opts.runDir, { recursive: true });
  writeFileSync(join(opts.runDir, 'config.json'), `${JSON.stringify(cfg, null, 2)}\n`);
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
  if (cfg.method === 'disco') {
    const file = loadModelFile(cfg.teacher!);
    if (file.info.imageSize !== cfg.imageSize) {
      throw new Error(
        `teacher ${cfg.teacher}: trained at imageSize ${file.info.imageSize}, run uses ${cfg.imageSize}`,
      );
    }
    teacher = new Teacher(file.encoder, cfg.teacherBn, cfg.bnGroupSize);
    file.encoder.params.dispose();
    teacherSha256 = fileSha256(cfg.teacher!);
  }
  const augRng = root.fork('augment');
  const loader = new BatchLoader(trainSet, {
    batchSize: cfg.batchSize,
    shuffle: true,
    dropLast: true,
    rng: root.fork('loader'),
  });

  // Resume: the newest checkpoint that reads back whole.
  let startEpoch = 0;
  let step = 0;
  let trainSeconds = 0;
  if (opts.resume) {
    const ckpt = newestCheckpoint(opts.runDir, log);
    if (ckpt) {
      if (teacherSha256 !== ckpt.state.teacherSha256) {
        throw new Error(
          `resume ${ckpt.path}: the run used teacher sha256 ${ckpt.state.teacherSha256}, ` +
            `${cfg.teacher} has ${teacherSha256}`,
        );
      }
      loadMocoState(moco, ckpt.tensors, ckpt.state.queuePtr, ckpt.path);
      for (const t of ckpt.tensors.values()) t.dispose();
      moco.setRngState(ckpt.state.rng.moco);
      augRng.setState(ckpt.state.rng.augment);
      startEpoch = ckpt.state.epoch;
      step = ckpt.state.step;
      trainSeconds = ckpt.state.trainSeconds;
      log(`resumed from ${ckpt.path} (epoch ${startEpoch}, step ${step})`);
    } else {
      log(`no checkpoint in ${opts.runDir}; starting from scratch`);
    }
  }

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

  const augment = { size: cfg.imageSize, ...norm };
  let finalLoss = NaN;
  for (let epoch = startEpoch; epoch < cfg.epochs; epoch++) {
    const lr = cosineLr(cfg.lr, epoch, cfg.epochs);
    const bar = new Progress({
      label: `${cfg.method} epoch ${epoch + 1}/${cfg.epochs}`,
      total: loader.batchesPerEpoch,
      quiet: opts.quiet,
    });
    const started = Date.now();
    let lossSum = 0;
    const partSums: Record<string, number> = {};
    let batches = 0;
    for (const batch of loader.epoch(epoch)) {
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
      const disco = teacher ? discoExtraLoss(teacher, v1, v2, { weight: cfg.distillWeight }) : null;
      let metrics;
      try {
        metrics = moco.step(v1, v2, lr, disco ? { extraLoss: disco.extraLoss } : {});
      } catch (err) {
        if (err instanceof NonFiniteLossError) {
          throw new Error(
            `training stopped at epoch ${epoch + 1}, step ${step + 1}: ${err.message}. ` +
              `The last good checkpoint in ${join(opts.runDir, 'checkpoints')} is kept.`,
          );
        }
        throw err;
      } finally {
        disco?.dispose();
        v1.dispose();
        v2.dispose();
      }
      step++;
      batches++;
      lossSum += metrics.loss;
      for (const [k, v] of Object.entries(metrics.parts)) partSums[k] = (partSums[k] ?? 0) + v;
      const seconds = (Date.now() - started) / 1000;
      bar.tick(batches, { loss: metrics.loss, 'img/s': (batches * cfg.batchSize) / seconds });
      appendFileSync(
        metricsPath,
        `${JSON.stringify({ kind: 'step', epoch: epoch + 1, step, lr, loss: metrics.loss, ...metrics.parts })}\n`,
      );
    }
    bar.end();
    const seconds = (Date.now() - started) / 1000;
    trainSeconds += seconds;
    finalLoss = lossSum / batches;
    const parts = Object.fromEntries(Object.entries(partSums).map(([k, v]) => [k, v / batches]));

    let knn: number | undefined;
    if (cfg.knnEvery > 0 && (epoch + 1) % cfg.knnEvery === 0 && epoch + 1 < cfg.epochs) {
      const r = await evaluateBackbone(built.backbone, evalTrain, testSet, {
        imageSize: cfg.imageSize,
        ...norm,
        linearEpochs: 0,
        preciseBn: { bnGroupSize: cfg.bnGroupSize },
      });
      knn = r.knnTop1;
    }
    const imgPerSec = (batches * cfg.batchSize) / seconds;
    log(
      `epoch ${epoch + 1}/${cfg.epochs}  loss ${finalLoss.toFixed(4)}  ` +
        Object.entries(parts)
          .map(([k, v]) => `${k} ${v.toFixed(4)}`)
          .join('  ') +
        `  lr ${lr.toFixed(4)}  ${imgPerSec.toFixed(1)} img/s` +
        (knn !== undefined ? `  kNN top-1 ${(100 * knn).toFixed(2)}%` : ''),
    );
    appendFileSync(
      metricsPath,
      `${JSON.stringify({ kind: 'epoch', epoch: epoch + 1, step, lr, loss: finalLoss, ...parts, imgPerSec, seconds, knnTop1: knn })}\n`,
    );
    const state: RunState = {
      epoch: epoch + 1,
      step,
      queuePtr: moco.queue.ptr,
      rng: { moco: moco.rngState(), augment: augRng.getState() },
      config: cfg,
      teacherSha256,
      trainSeconds,
    };
    saveCheckpoint(opts.runDir, mocoStateTensors(moco), state, cfg.keepCheckpoints);
    saveEncoder(epoch + 1);
  }

  // Evaluation re-estimates the BN running statistics with the final weights (precise BN);
  // the encoder file is written after it, with those statistics.
  const evalResult = await evaluateBackbone(built.backbone, evalTrain, testSet, {
    imageSize: cfg.imageSize,
    ...norm,
    seed: cfg.seed,
    preciseBn: { bnGroupSize: cfg.bnGroupSize },
  });
  log(
    `final: kNN top-1 ${(100 * evalResult.knnTop1).toFixed(2)}%  ` +
      `linear top-1 ${(100 * evalResult.linearTop1).toFixed(2)}%  train ${trainSeconds.toFixed(0)} s`,
  );
  appendFileSync(
    metricsPath,
    `${JSON.stringify({ kind: 'final', ...evalResult, trainSeconds })}\n`,
  );
  saveEncoder(cfg.epochs, evalResult);
  teacher?.dispose();
  moco.dispose();
  return { built, trainSeconds, finalLoss, eval: evalResult, encoderFile };
}

/**
 * `disco bench`: images per second of one DisCo training step (MoCo v2 student with its
 * momentum encoder and queue, plus the frozen teacher's consistency targets on both views, SGD
 * update) for the two settings, next to the same step in PyTorch (`bench/torch_step.py`
 * through Debian's python3-torch, skipped with a message when absent) and next to stock tfjs
 * `cpu`, all in one run. Ratios measured in one run are the figures that count: the machine is
 * shared and noisy. Also reports peak RSS and, on wasm, the heap size.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Rng, tf } from '@disco/core';
import { discoExtraLoss, Teacher } from '@disco/distill';
import { MoCo } from '@disco/moco';
import { buildEncoder, type EncoderSpec } from './model-file.js';

/** One benchmark setting. */
export interface BenchCase {
  name: string;
  student: EncoderSpec;
  teacher: EncoderSpec;
  imageSize: number;
}

/** The settings: (a) ResNet-18 small stem at 32 px, (b) MobileNetV3-Large at 64 px. */
export const BENCH_CASES: readonly BenchCase[] = [
  {
    name: 'a: resnet18 (small stem) @32, teacher resnet50',
    student: { arch: 'resnet18', backbone: { smallStem: true }, hiddenDim: 2048, dim: 128 },
    teacher: { arch: 'resnet50', backbone: {}, hiddenDim: 2048, dim: 128 },
    imageSize: 32,
  },
  {
    name: 'b: mobilenet_v3_large (head) @64, teacher resnet50',
    student: {
      arch: 'mobilenet_v3_large',
      backbone: { output: 'head' },
      hiddenDim: 2048,
      dim: 128,
    },
    teacher: { arch: 'resnet50', backbone: {}, hiddenDim: 2048, dim: 128 },
    imageSize: 64,
  },
];

/** What one timed setting measured. */
export interface BenchResult {
  imgPerSec: number;
  stepSeconds: number;
}

/**
 * Times `steps` DisCo steps after one warm-up on the current backend, random views, batch
 * `batch` run as micro-batches of `microBatch` (BN groups of 32).
 */
export function timeDiscoStep(
  c: BenchCase,
  opts: { batch: number; steps: number; microBatch?: number },
): BenchResult {
  const student = buildEncoder(c.student, new Rng(0));
  const teacherBuilt = buildEncoder(c.teacher, new Rng(1));
  const teacher = new Teacher(teacherBuilt.encoder, 'train', 32);
  teacherBuilt.encoder.params.dispose();
  const moco = new MoCo(student.encoder, new Rng(2), { queueSize: 4096, bnGroupSize: 32 });
  const shape: [number, number, number, number] = [opts.batch, c.imageSize, c.imageSize, 3];
  const v1 = tf.randomNormal(shape, 0, 1, 'float32', 3) as tf.Tensor4D;
  const v2 = tf.randomNormal(shape, 0, 1, 'float32', 4) as tf.Tensor4D;
  const one = () => {
    const d = discoExtraLoss(teacher, v1, v2);
    moco.step(v1, v2, 0.01, {
      extraLoss: d.extraLoss,
      ...(opts.microBatch ? { microBatch: opts.microBatch } : {}),
    });
    d.dispose();
  };
  try {
    one();
    const t0 = performance.now();
    for (let i = 0; i < opts.steps; i++) one();
    const seconds = (performance.now() - t0) / 1000 / opts.steps;
    return { stepSeconds: seconds, imgPerSec: opts.batch / seconds };
  } finally {
    tf.dispose([v1, v2]);
    moco.dispose();
    teacher.dispose();
    student.encoder.params.dispose();
  }
}

/** PyTorch's img/s for the same step, or a reason it could not be measured. */
export function torchImgPerSec(
  script: string,
  c: BenchCase,
  opts: { batch: number; steps: number; threads: number },
): number | string {
  if (!existsSync(script)) return `no ${script}`;
  const which = c.student.arch === 'resnet18' ? 'a' : 'b';
  // Debian's interpreter first: its python3-torch is the reference; a python3 earlier on PATH
  // (pyenv, a venv) often lacks torch.
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const r = spawnSync(
    python,
    [script, which, String(opts.batch), String(opts.steps), String(opts.threads)],
    { encoding: 'utf8', timeout: 1_200_000 },
  );
  if (r.error) return `python3 not runnable (${r.error.message})`;
  if (r.status !== 0) {
    const last = (r.stderr || r.stdout).trim().split('\n').pop() ?? '';
    return /No module named 'torch/.test(r.stderr)
      ? 'PyTorch is not installed (apt-get install python3-torch python3-torchvision)'
      : `torch_step.py failed: ${last}`;
  }
  const m = r.stdout.match(/img_per_sec ([\d.]+)/);
  return m ? Number(m[1]) : `torch_step.py printed no figure: ${r.stdout.trim()}`;
}

/** Peak resident set size of this process, in MiB. */
export function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** The wasm backend's heap in MiB, or null on another backend. */
export function wasmHeapMiB(): number | null {
  const b = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  const heap = b.wasm?.HEAPU8;
  return heap ? heap.length / 2 ** 20 : null;
}

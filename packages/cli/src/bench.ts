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
  /** A label for the output, with the letter of the setting ('a: resnet18 ...'). */
  name: string;
  /** The student encoder, trained by the step. */
  student: EncoderSpec;
  /** The frozen teacher encoder, giving the consistency targets. */
  teacher: EncoderSpec;
  /** Side of the square random views, in pixels. */
  imageSize: number;
  /** Channels of the views (default 3). */
  channels?: number;
}

/**
 * The settings, (a) ResNet-18 small stem at 32 px and (b) MobileNetV3-Large at 64 px,
 * and (p) the setting `disco pipeline` trains.
 */
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
  {
    name: "p: the pipeline's mobilenet_v3_small (head) @28, 1 channel, teacher resnet18",
    student: {
      arch: 'mobilenet_v3_small',
      backbone: { output: 'head', inChannels: 1 },
      hiddenDim: 2048,
      dim: 128,
    },
    teacher: { arch: 'resnet18', backbone: { inChannels: 1 }, hiddenDim: 2048, dim: 128 },
    imageSize: 28,
    channels: 1,
  },
];

/** What one timed setting measured. */
export interface BenchResult {
  /** Training images per second: the batch over `stepSeconds`. */
  imgPerSec: number;
  /** Mean wall-clock seconds of one step. */
  stepSeconds: number;
}

/** One DisCo step on random views, set up once: student, momentum encoder, queue, teacher. */
class DiscoStepRig {
  private readonly student;
  private readonly teacher: Teacher;
  private readonly moco: MoCo;
  private readonly v1: tf.Tensor4D;
  private readonly v2: tf.Tensor4D;

  constructor(
    c: BenchCase,
    batch: number,
    private readonly microBatch?: number,
  ) {
    this.student = buildEncoder(c.student, new Rng(0));
    const teacherBuilt = buildEncoder(c.teacher, new Rng(1));
    this.teacher = new Teacher(teacherBuilt.encoder, 'train', 32);
    teacherBuilt.encoder.params.dispose();
    this.moco = new MoCo(this.student.encoder, new Rng(2), { queueSize: 4096, bnGroupSize: 32 });
    const ch = c.channels ?? 3;
    const shape: [number, number, number, number] = [batch, c.imageSize, c.imageSize, ch];
    this.v1 = tf.randomNormal(shape, 0, 1, 'float32', 3) as tf.Tensor4D;
    this.v2 = tf.randomNormal(shape, 0, 1, 'float32', 4) as tf.Tensor4D;
  }

  /** The teacher's targets for both views (the caller disposes them). */
  targets(): ReturnType<typeof discoExtraLoss> {
    return discoExtraLoss(this.teacher, this.v1, this.v2);
  }

  /** The student's MoCo step with the consistency terms of `d`. */
  update(d: ReturnType<typeof discoExtraLoss>): void {
    this.moco.step(this.v1, this.v2, 0.01, {
      extraLoss: d.extraLoss,
      ...(this.microBatch ? { microBatch: this.microBatch } : {}),
    });
  }

  step(): void {
    const d = this.targets();
    this.update(d);
    d.dispose();
  }

  dispose(): void {
    tf.dispose([this.v1, this.v2]);
    this.moco.dispose();
    this.teacher.dispose();
    this.student.encoder.params.dispose();
  }
}

/**
 * Times `steps` DisCo steps after one warm-up (unless `warmup` is false) on the current
 * backend, random views, batch `batch` run as micro-batches of `microBatch` (BN groups of 32).
 */
export function timeDiscoStep(
  c: BenchCase,
  opts: { batch: number; steps: number; microBatch?: number; warmup?: boolean },
): BenchResult {
  const rig = new DiscoStepRig(c, opts.batch, opts.microBatch);
  try {
    if (opts.warmup ?? true) rig.step();
    const t0 = performance.now();
    for (let i = 0; i < opts.steps; i++) rig.step();
    const seconds = (performance.now() - t0) / 1000 / opts.steps;
    return { stepSeconds: seconds, imgPerSec: opts.batch / seconds };
  } finally {
    rig.dispose();
  }
}

/** Memory at one point of a soak run. */
export interface SoakSample {
  /** Steps run so far, counted from 1. */
  step: number;
  /** Live tensors, `tf.memory().numTensors`. */
  numTensors: number;
  /** Resident set size of the process, in MiB. */
  rssMiB: number;
  /** The wasm backend's heap, in MiB; null on another backend. */
  heapMiB: number | null;
}

/**
 * Runs `steps` DisCo steps and samples `tf.memory().numTensors`, the resident set size and
 * the wasm heap after `warmup` steps and every `every` steps after (after a full garbage
 * collection when Node runs with `--expose-gc`). A leak shows as a growing tensor count or
 * RSS; the caller compares the samples with the first.
 */
export function soakDiscoStep(
  c: BenchCase,
  opts: { batch: number; steps: number; warmup: number; every: number; microBatch?: number },
  onSample: (s: SoakSample) => void = () => {},
): SoakSample[] {
  const rig = new DiscoStepRig(c, opts.batch, opts.microBatch);
  const samples: SoakSample[] = [];
  try {
    for (let step = 1; step <= opts.steps; step++) {
      rig.step();
      const sampled =
        step === opts.warmup ||
        step === opts.steps ||
        (step > opts.warmup && (step - opts.warmup) % opts.every === 0);
      if (sampled) {
        // With `node --expose-gc`, collect first, so RSS shows what is alive, not what the
        // collector has yet to free.
        (globalThis as { gc?: () => void }).gc?.();
        const s = {
          step,
          numTensors: tf.memory().numTensors,
          rssMiB: process.memoryUsage().rss / 2 ** 20,
          heapMiB: wasmHeapMiB(),
        };
        samples.push(s);
        onSample(s);
      }
    }
    return samples;
  } finally {
    rig.dispose();
  }
}

/** Time and calls of one kernel in a profiled phase. */
export interface KernelTime {
  /** The kernel's name (BatchNorm's channel-mean matMuls listed apart). */
  name: string;
  /** Kernel time summed over its calls, in milliseconds. */
  ms: number;
  /** How many times the phase ran it. */
  calls: number;
}

/** One profiled phase of the DisCo step. */
export interface PhaseProfile {
  /** `teacher` (both views' targets) or `student` (MoCo step: key encoder, forward, backward, update). */
  phase: string;
  /** Wall time of the phase under the profiler. */
  wallMs: number;
  /** Top-level kernels, slowest first. */
  kernels: KernelTime[];
}

/** A kernel's name, with BatchNorm's per-group channel means (one-row matMuls) told apart. */
function kernelLabel(name: string, inputShapes: number[][]): string {
  const a = inputShapes[0];
  if (name === 'BatchMatMul' && a !== undefined && a.length === 3 && a[1] === 1) {
    return 'BatchMatMul (BN channel means)';
  }
  return name;
}

/**
 * Per-kernel profile of one DisCo step after a warm-up step (`tf.profile`; on wasm every
 * kernel runs synchronously, so its time is its own). The kernels our registered gradient
 * kernels run are counted inside them, and the scopes of custom gradients are left out
 * (the kernels inside them are listed), so each millisecond is counted once.
 */
export async function profileDiscoStep(
  c: BenchCase,
  opts: { batch: number; microBatch?: number },
): Promise<PhaseProfile[]> {
  const rig = new DiscoStepRig(c, opts.batch, opts.microBatch);
  try {
    rig.step();
    let d: ReturnType<typeof discoExtraLoss> | undefined;
    const phases: PhaseProfile[] = [];
    const run = async (phase: string, f: () => void) => {
      const t0 = performance.now();
      const info = await tf.profile(f);
      const wallMs = performance.now() - t0;
      const byName = new Map<string, KernelTime>();
      for (const k of info.kernels) {
        // Custom-gradient scopes (our BatchNorm) are timed around kernels listed on their own,
        // and the kernels our gradient kernels run are timed inside them.
        if (k.name === 'unnamed scope' || (k as { nested?: boolean }).nested) continue;
        const name = kernelLabel(k.name, k.inputShapes);
        const e = byName.get(name) ?? { name, ms: 0, calls: 0 };
        e.ms += k.kernelTimeMs as number;
        e.calls += 1;
        byName.set(name, e);
      }
      phases.push({ phase, wallMs, kernels: [...byName.values()].sort((a, b) => b.ms - a.ms) });
    };
    await run('teacher', () => {
      d = rig.targets();
    });
    await run('student', () => rig.update(d!));
    d!.dispose();
    return phases;
  } finally {
    rig.dispose();
  }
}

/** The profile as text: per phase, its wall time and its `top` slowest kernels. */
export function formatProfile(phases: PhaseProfile[], batch: number, top: number): string {
  const total = phases.reduce((a, p) => a + p.wallMs, 0);
  const lines = [
    `profile of one step at batch ${batch}: ${total.toFixed(0)} ms under the profiler`,
  ];
  for (const p of phases) {
    const kernelMs = p.kernels.reduce((a, k) => a + k.ms, 0);
    lines.push(
      `  ${p.phase}: ${p.wallMs.toFixed(0)} ms wall (${((100 * p.wallMs) / total).toFixed(1)}% ` +
        `of the step), kernels ${kernelMs.toFixed(0)} ms`,
    );
    for (const k of p.kernels.slice(0, top)) {
      lines.push(
        `    ${k.name.padEnd(36)} ${k.ms.toFixed(1).padStart(9)} ms ` +
          `${((100 * k.ms) / total).toFixed(1).padStart(5)}% ${String(k.calls).padStart(6)} calls`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
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

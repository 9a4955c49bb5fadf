/**
 * Run checkpoints: every tensor of the MoCo state plus the run's position (epoch, step,
 * queue pointer, random streams), the resolved config and the teacher's identity, in one
 * safetensors file written atomically. The newest file that reads back whole is the one a
 * resumed run starts from; older ones beyond `keep` are deleted.
 */
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { rawToTensor, readSafetensors, type RngState, tf, writeSafetensors } from '@disco/core';
import type { TrainConfig } from './config.js';

/** The run's position and settings stored beside the tensors. */
export interface RunState {
  /** Epochs completed. */
  epoch: number;
  /** Optimizer steps taken. */
  step: number;
  queuePtr: number;
  rng: { moco: RngState; augment: RngState };
  config: TrainConfig;
  /** sha256 of the teacher file, for DisCo runs. */
  teacherSha256?: string;
  trainSeconds: number;
}

const PATTERN = /^ckpt-epoch-(\d{4,})\.safetensors$/;

/** Writes `checkpoints/ckpt-epoch-NNNN.safetensors` and keeps the newest `keep`. */
export function saveCheckpoint(
  runDir: string,
  tensors: Map<string, tf.Tensor>,
  state: RunState,
  keep: number,
): string {
  const dir = join(runDir, 'checkpoints');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `ckpt-epoch-${String(state.epoch).padStart(4, '0')}.safetensors`);
  const out = new Map<string, { shape: number[]; values: Float32Array }>();
  for (const [name, t] of tensors)
    out.set(name, { shape: t.shape, values: t.dataSync() as Float32Array });
  writeSafetensors(path, out, { format: 'disco-checkpoint/1', state: JSON.stringify(state) });
  const all = listCheckpoints(runDir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) rmSync(old);
  return path;
}

/** Checkpoint files of a run, oldest first. */
export function listCheckpoints(runDir: string): string[] {
  const dir = join(runDir, 'checkpoints');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => PATTERN.test(f))
    .sort()
    .map((f) => join(dir, f));
}

/** A checkpoint read back: its tensors (caller disposes) and state. */
export interface LoadedCheckpoint {
  path: string;
  tensors: Map<string, tf.Tensor>;
  state: RunState;
}

/** Reads one checkpoint; throws naming the file when it is damaged. */
export function readCheckpoint(path: string): LoadedCheckpoint {
  const file = readSafetensors(path);
  if (file.metadata.format !== 'disco-checkpoint/1' || !file.metadata.state) {
    throw new Error(`readCheckpoint ${path}: not a DisCo checkpoint (metadata field 'format')`);
  }
  const state = JSON.parse(file.metadata.state) as RunState;
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, raw] of file.tensors) tensors.set(name, rawToTensor(raw));
  return { path, tensors, state };
}

/**
 * The newest checkpoint that reads back, or null. Damaged newer files are reported through
 * `warn` and skipped.
 */
export function newestCheckpoint(
  runDir: string,
  warn: (msg: string) => void,
): LoadedCheckpoint | null {
  const all = listCheckpoints(runDir);
  for (let i = all.length - 1; i >= 0; i--) {
    try {
      return readCheckpoint(all[i]!);
    } catch (err) {
      warn(`skipping damaged checkpoint: ${(err as Error).message}`);
    }
  }
  return null;
}

/**
 * Run checkpoints: every tensor of the MoCo state plus the run's position (epoch, batch
 * within the epoch, step, queue pointer, random streams), the resolved config and the
 * teacher's identity, in one safetensors file written atomically. Each file carries a
 * sha256 of its own bytes, checked on load, so a truncated or corrupted file is found and
 * skipped. The newest file that reads back whole is the one a resumed run starts from;
 * older ones beyond `keep` are deleted.
 *
 * File names: `ckpt-eEEEE-sSSSSSS.safetensors`, with EEEE the 1-based epoch of the last step
 * taken and SSSSSS the steps taken (an epoch-end checkpoint and one written mid-epoch differ
 * only in the step). Files of the first format, `ckpt-epoch-NNNN.safetensors` (end of epoch
 * NNNN, no checksum), are still read.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  parseSafetensors,
  rawToTensor,
  type RngState,
  serializeSafetensors,
  tf,
  writeFileAtomic,
} from '@disco/core';
import type { TrainConfig } from './config.js';

/** Sums over the batches done so far in an unfinished epoch (for its log line). */
export interface EpochSums {
  /** Sum of the step losses. */
  loss: number;
  /** Sums of the named loss parts. */
  parts: Record<string, number>;
  /** Seconds spent on the epoch's steps. */
  seconds: number;
}

/** The run's position and settings stored beside the tensors. */
export interface RunState {
  /** Epochs completed. */
  epoch: number;
  /**
   * Batches done in the epoch after the completed ones (0-based index `epoch`); 0 at an
   * epoch boundary. Absent in first-format checkpoints (always written at epoch ends).
   */
  batch?: number;
  /** Optimizer steps taken. */
  step: number;
  /** The MoCo queue's write position: the column the next batch of keys goes to. */
  queuePtr: number;
  /** The random streams a resumed run continues. */
  rng: {
    /** MoCo's stream of key-batch permutations (shuffling BN). */
    moco: RngState;
    /** The augmentation stream of the two views. */
    augment: RngState;
  };
  /** The run's resolved config, compared with the resuming run's (`compareResumeConfig`). */
  config: TrainConfig;
  /** sha256 of the teacher file, for DisCo runs. */
  teacherSha256?: string;
  /** Seconds of training so far, the unfinished epoch's included. */
  trainSeconds: number;
  /** Present when `batch > 0`: the unfinished epoch's sums. */
  epochSums?: EpochSums;
  /** Mean loss of the last completed epoch (null when it was not finite, as JSON has no NaN). */
  lastEpochLoss?: number | null;
}

const FORMAT = 'disco-checkpoint/2';
const FIRST_FORMAT = 'disco-checkpoint/1';
const NEW_NAME = /^ckpt-e(\d{4,})-s(\d{6,})\.safetensors$/;
const OLD_NAME = /^ckpt-epoch-(\d{4,})\.safetensors$/;
/** Temporary files `writeFileAtomic` leaves behind when a process dies mid-write. */
const TEMPORARY = /^ckpt-.*\.safetensors\.tmp-\d+$/;

/**
 * The checksum is written into a fixed-width slot of the header: the file is serialised with
 * this placeholder in the slot, hashed whole, and the digest overwrites the placeholder in
 * place (same length, so no offset moves). A reader hashes the file with the slot reset.
 */
const PLACEHOLDER = '0'.repeat(64);
const slotOf = (hex: string) => Buffer.from(`"sha256":"${hex}"`);
const SLOT_PREFIX = '"sha256":"'.length;

/** The file name of the checkpoint at `state`'s position. */
export function checkpointName(state: Pick<RunState, 'epoch' | 'batch' | 'step'>): string {
  const epoch = (state.batch ?? 0) > 0 ? state.epoch + 1 : state.epoch;
  return `ckpt-e${String(epoch).padStart(4, '0')}-s${String(state.step).padStart(6, '0')}.safetensors`;
}

/** Sort key of a checkpoint file name: (epoch, step); a first-format file ends its epoch. */
function sortKey(name: string): [number, number] | null {
  const m = NEW_NAME.exec(name);
  if (m) return [Number(m[1]), Number(m[2])];
  const old = OLD_NAME.exec(name);
  return old ? [Number(old[1]), Infinity] : null;
}

function sha256Hex(buf: Uint8Array, slot: number): string {
  const hash = createHash('sha256');
  hash.update(buf.subarray(0, slot + SLOT_PREFIX));
  hash.update(PLACEHOLDER);
  hash.update(buf.subarray(slot + SLOT_PREFIX + PLACEHOLDER.length));
  return hash.digest('hex');
}

/** Where the checksum slot `"sha256":"<hex>"` starts in the header of `buf`, or -1. */
function findSlot(buf: Uint8Array, hex: string): number {
  const headerEnd = 8 + Number(new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true));
  const at = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).indexOf(slotOf(hex));
  return at >= 0 && at < headerEnd ? at : -1;
}

/**
 * Writes `checkpoints/<checkpointName(state)>` atomically, then deletes all but the newest
 * `keep` checkpoints.
 * @throws naming the tensor when a value is NaN or infinite: such a state cannot continue a
 *   run, so nothing is written and the older checkpoints stay as they are.
 */
export function saveCheckpoint(
  runDir: string,
  tensors: Map<string, tf.Tensor>,
  state: RunState,
  keep: number,
): string {
  const dir = join(runDir, 'checkpoints');
  const path = join(dir, checkpointName(state));
  const out = new Map<string, { shape: number[]; values: Float32Array | Int32Array }>();
  for (const [name, t] of tensors) {
    const values = t.dataSync() as Float32Array | Int32Array;
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new Error(
        `saveCheckpoint ${path}: tensor '${name}' holds ${values[bad]} at index ${bad}; ` +
          'not written',
      );
    }
    out.set(name, { shape: t.shape, values });
  }
  // `sha256` first in the metadata: everything before its slot is then plain ASCII.
  const buf = serializeSafetensors(out, {
    sha256: PLACEHOLDER,
    format: FORMAT,
    state: JSON.stringify(state),
  });
  const slot = findSlot(buf, PLACEHOLDER);
  buf.set(Buffer.from(sha256Hex(buf, slot)), slot + SLOT_PREFIX);
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(path, buf);
  const all = listCheckpoints(runDir);
  for (const old of all.slice(0, Math.max(0, all.length - Math.max(keep, 1)))) rmSync(old);
  return path;
}

/** Checkpoint files of a run, oldest first (by epoch, then step). */
export function listCheckpoints(runDir: string): string[] {
  const dir = join(runDir, 'checkpoints');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => ({ f, key: sortKey(f) }))
    .filter((e): e is { f: string; key: [number, number] } => e.key !== null)
    .sort((a, b) => a.key[0] - b.key[0] || a.key[1] - b.key[1])
    .map((e) => join(dir, e.f));
}

/** Deletes temporary files left by a checkpoint write that died halfway; returns them. */
export function removeStaleTemporaries(runDir: string): string[] {
  const dir = join(runDir, 'checkpoints');
  if (!existsSync(dir)) return [];
  const stale = readdirSync(dir)
    .filter((f) => TEMPORARY.test(f))
    .map((f) => join(dir, f));
  for (const f of stale) rmSync(f);
  return stale;
}

/** A checkpoint read back: its tensors (caller disposes) and state. */
export interface LoadedCheckpoint {
  /** The file it was read from. */
  path: string;
  /** The MoCo and objective state tensors by name; the caller disposes them. */
  tensors: Map<string, tf.Tensor>;
  /** The position, config and teacher identity stored in the file's metadata. */
  state: RunState;
}

/** A checkpoint file that cannot be used: truncated, corrupted, or not a checkpoint. */
export class DamagedCheckpointError extends Error {
  constructor(
    /** The checkpoint file. */
    readonly path: string,
    /** What is wrong with it, e.g. a checksum mismatch. */
    readonly reason: string,
  ) {
    super(`checkpoint ${path} is damaged: ${reason}`);
    this.name = 'DamagedCheckpointError';
  }
}

/**
 * Reads one checkpoint and checks its sha256 (first-format files have none).
 * @throws DamagedCheckpointError naming the file and what is wrong with it.
 */
export function readCheckpoint(path: string): LoadedCheckpoint {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new DamagedCheckpointError(path, `cannot read (${(err as Error).message})`);
  }
  let file;
  try {
    file = parseSafetensors(buf, path);
  } catch (err) {
    throw new DamagedCheckpointError(
      path,
      (err as Error).message.replace(`safetensors ${path}: `, ''),
    );
  }
  const { format, state: stateText, sha256 } = file.metadata;
  if ((format !== FORMAT && format !== FIRST_FORMAT) || !stateText) {
    throw new DamagedCheckpointError(
      path,
      `not a DisCo checkpoint (metadata 'format' is ${JSON.stringify(format)})`,
    );
  }
  if (format === FORMAT) {
    const slot = sha256 === undefined ? -1 : findSlot(buf, sha256);
    if (slot < 0) throw new DamagedCheckpointError(path, 'no checksum slot in the header');
    const actual = sha256Hex(buf, slot);
    if (actual !== sha256) {
      throw new DamagedCheckpointError(
        path,
        `sha256 of its bytes is ${actual}, the header records ${sha256}`,
      );
    }
  }
  let state: RunState;
  try {
    state = JSON.parse(stateText) as RunState;
  } catch (err) {
    throw new DamagedCheckpointError(path, `state is not JSON (${(err as Error).message})`);
  }
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, raw] of file.tensors) tensors.set(name, rawToTensor(raw));
  return { path, tensors, state };
}

/** The checkpoint a resumed run starts from, and the newer files that were skipped. */
export interface ResumePoint {
  /** The newest checkpoint that reads back whole; null when none does (or none exists). */
  checkpoint: LoadedCheckpoint | null;
  /** Newer files that did not read back, newest first. */
  damaged: DamagedCheckpointError[];
}

/** Finds the newest checkpoint of `runDir` that reads back whole and passes its checksum. */
export function findResumePoint(runDir: string): ResumePoint {
  const all = listCheckpoints(runDir);
  const damaged: DamagedCheckpointError[] = [];
  for (let i = all.length - 1; i >= 0; i--) {
    try {
      return { checkpoint: readCheckpoint(all[i]!), damaged };
    } catch (err) {
      if (!(err instanceof DamagedCheckpointError)) throw err;
      damaged.push(err);
    }
  }
  return { checkpoint: null, damaged };
}

/**
 * The newest checkpoint that reads back, or null. Each damaged newer file is reported
 * through `warn` ("checkpoint X is damaged: <reason>; resuming from Y") and skipped.
 */
export function newestCheckpoint(
  runDir: string,
  warn: (msg: string) => void,
): LoadedCheckpoint | null {
  const { checkpoint, damaged } = findResumePoint(runDir);
  const next = checkpoint ? `resuming from ${checkpoint.path}` : 'no older checkpoint reads back';
  for (const d of damaged) warn(`${d.message}; ${next}`);
  return checkpoint;
}

/**
 * Rewrites a run's `metrics.jsonl` (atomically) to what it held when the checkpoint at
 * `at` was written: step lines up to `at.step`, epoch lines up to `at.epoch`; lines of later
 * steps, the final evaluation and a line torn by a crash are dropped, so a resumed run does
 * not repeat them. Returns the number of lines dropped.
 */
export function rewindMetrics(path: string, at: Pick<RunState, 'epoch' | 'step'>): number {
  if (!existsSync(path)) return 0;
  const kept: string[] = [];
  let dropped = 0;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    let m: { kind?: string; epoch?: number; step?: number };
    try {
      m = JSON.parse(line);
    } catch {
      dropped++;
      continue;
    }
    const keep =
      (m.kind === 'step' && m.step! <= at.step) || (m.kind === 'epoch' && m.epoch! <= at.epoch);
    if (keep) kept.push(`${line}\n`);
    else dropped++;
  }
  writeFileAtomic(path, kept.join(''));
  return dropped;
}

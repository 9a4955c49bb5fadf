/**
 * Encoder files: a trained encoder (backbone + projection head) as one safetensors file
 * with torchvision parameter names and PyTorch layouts, and a JSON `spec` in its metadata
 * that says how to rebuild the architecture. `disco pretrain` writes one at the end of a
 * run; `disco distill --teacher FILE` reads one. F16 halves the size of a shipped teacher.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createBackbone, type BackboneOptions } from '@disco/backbones';
import {
  bindEncoder,
  type Encoder,
  loadTorchStateDict,
  readSafetensors,
  Rng,
  Sequential,
  tf,
  toTorchStateDict,
  writeSafetensors,
} from '@disco/core';
import { ProjectionHead } from '@disco/heads';

/** How to rebuild an encoder: backbone name and options, head widths. */
export interface EncoderSpec {
  /** Backbone name in the @disco/backbones registry (`resnet18`, `mobilenet_v3_large`, ...). */
  arch: string;
  /** Options the backbone is built with (`createBackbone(arch, backbone)`). */
  backbone: BackboneOptions;
  /** Projection head hidden width (0: one linear layer). */
  hiddenDim: number;
  /** Embedding width. */
  dim: number;
  /**
   * `false`: no projection head, the encoder is the backbone alone and `dim` is its feature
   * width (an imported checkpoint that has no MoCo head). Default: a head.
   */
  head?: boolean;
}

/** What a model file holds besides its tensors. */
export interface ModelInfo {
  /** How to rebuild the encoder the file's tensors belong to. */
  spec: EncoderSpec;
  /** Input side the encoder was trained at. */
  imageSize: number;
  /** Per-channel normalisation applied to [0, 1] images. */
  mean: number[];
  /** Per-channel standard deviation, paired with `mean`. */
  std: number[];
  /** Free-form facts: dataset, epochs, accuracy, the command that made it. */
  notes?: Record<string, unknown>;
}

/** A built encoder and the backbone-only view of it used for evaluation. */
export interface BuiltEncoder {
  /** Backbone then projection head: `[N, H, W, C] -> [N, dim]` (not normalised). */
  encoder: Encoder;
  /** The backbone alone on the same parameters: `[N, H, W, C] -> [N, featureDim]`. */
  backbone: Encoder;
}

/** Builds an encoder from `spec` with weights initialised from `rng`. */
export function buildEncoder(spec: EncoderSpec, rng: Rng): BuiltEncoder {
  const backbone = createBackbone(spec.arch, spec.backbone);
  if (spec.head === false) {
    const encoder = bindEncoder(backbone, backbone.featureDim, rng);
    return { encoder, backbone: encoder };
  }
  const head = new ProjectionHead({
    inDim: backbone.featureDim,
    hiddenDim: spec.hiddenDim,
    outDim: spec.dim,
  });
  const net = new Sequential<tf.Tensor4D, tf.Tensor2D>([backbone, head]);
  const encoder = bindEncoder(net, spec.dim, rng);
  return { encoder, backbone: bindEncoder(backbone, backbone.featureDim, encoder.params) };
}

/** Writes an encoder's parameters and info to `path` atomically. */
export function saveModelFile(
  path: string,
  encoder: Encoder,
  info: ModelInfo,
  dtype: 'F32' | 'F16' = 'F32',
): void {
  writeSafetensors(path, toTorchStateDict(encoder.params, { dtype }), {
    format: 'disco-encoder/1',
    info: JSON.stringify(info),
  });
}

/** sha256 of a model file (or of a model folder's encoder file), hex: a teacher's identity. */
export function fileSha256(path: string): string {
  return createHash('sha256')
    .update(readFileSync(modelFilePath(path)))
    .digest('hex');
}

/** The encoder file of a model folder (`DIR/encoder.safetensors`), or `path` itself. */
export function modelFilePath(path: string): string {
  return existsSync(path) && statSync(path).isDirectory() ? join(path, MODEL_FILE) : path;
}

/** The file name of the encoder inside a model folder or run folder. */
export const MODEL_FILE = 'encoder.safetensors';

/**
 * Reads a model file written by `saveModelFile` (or the model folder holding one) and
 * rebuilds its encoder.
 * @throws naming the file when it is not a DisCo encoder file or its tensors do not fit.
 */
export function loadModelFile(where: string): BuiltEncoder & {
  /** The spec, normalisation and notes stored in the file's metadata. */
  info: ModelInfo;
} {
  const path = modelFilePath(where);
  if (!existsSync(path)) throw new Error(`loadModelFile ${path}: file not found`);
  const file = readSafetensors(path);
  if (file.metadata.format !== 'disco-encoder/1' || !file.metadata.info) {
    throw new Error(
      `loadModelFile ${path}: metadata field 'format' is '${file.metadata.format}', ` +
        `expected 'disco-encoder/1' (a file written by disco pretrain or disco distill)`,
    );
  }
  let info: ModelInfo;
  try {
    info = JSON.parse(file.metadata.info) as ModelInfo;
  } catch (err) {
    throw new Error(
      `loadModelFile ${path}: metadata field 'info' is not JSON (${(err as Error).message})`,
    );
  }
  const built = buildEncoder(info.spec, new Rng(0));
  loadTorchStateDict(built.encoder.params, file.tensors, { source: path });
  return { ...built, info };
}

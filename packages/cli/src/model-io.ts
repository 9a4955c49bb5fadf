/**
 * Weights in and out of DisCo.js: reading a checkpoint (safetensors, or a PyTorch `.pth` /
 * `.pth.tar` through core's restricted unpickler), recognising its architecture, importing it
 * as a model folder our packages load, exporting a model back to torchvision names, and
 * embedding images with a model. `disco inspect`, `import`, `export` and `embed` are thin
 * wrappers over these.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, join } from 'node:path';
import {
  createBackbone,
  listBackbones,
  type Backbone,
  type BackboneOptions,
} from '@disco/backbones';
import {
  extractStateDict,
  stripStateDictPrefix,
  loadTorchStateDict,
  Params,
  readPth,
  readSafetensors,
  Rng,
  tf,
  torchShape,
  toTorchStateDict,
  writeFileAtomic,
  writeSafetensors,
  type RawTensor,
  type TensorToWrite,
} from '@disco/core';
import { loadImageFolder } from '@disco/data';
import { preprocessFor } from './evaluate.js';
import {
  buildEncoder,
  loadModelFile,
  MODEL_FILE,
  modelFilePath,
  saveModelFile,
  type EncoderSpec,
  type ModelInfo,
} from './model-file.js';

/** A checkpoint's tensors with torchvision names, and where in the file they were found. */
export interface LoadedWeights {
  /** The file read. */
  path: string;
  /** How it was read: as safetensors, or as a PyTorch pickle through core's unpickler. */
  format: 'safetensors' | 'pth';
  /** Tensors by name, wrapper prefix stripped, in file order. */
  tensors: Map<string, RawTensor>;
  /** The prefix stripped from every name (`''` when none). */
  prefix: string;
  /** Key path of the state dict inside a `.pth` checkpoint (`''`: top level). */
  location: string;
  /** Names in the file that were left out (non-tensors, keys outside the prefix). */
  dropped: string[];
  /** safetensors header metadata; for a `.pth` checkpoint its top-level scalar entries. */
  metadata: Record<string, string>;
}

/** Options of `readWeights`. */
export interface ReadWeightsOptions {
  /** Prefix to strip instead of detecting one (`''`: keep names as they are). */
  prefix?: string;
}

const PTH_SUFFIXES = ['.pth', '.pt', '.pth.tar', '.tar', '.ckpt', '.bin'];

/** True when `path` names a PyTorch pickle checkpoint rather than a safetensors file. */
function isPthPath(path: string): boolean {
  if (path.endsWith('.safetensors')) return false;
  if (PTH_SUFFIXES.some((s) => path.endsWith(s))) return true;
  // Sniff: a torch.save file is a ZIP container ("PK\x03\x04") or a legacy pickle (0x80).
  const head = readFileSync(path).subarray(0, 4);
  return (head[0] === 0x50 && head[1] === 0x4b) || head[0] === 0x80;
}

/**
 * Reads the state dict of a checkpoint: a safetensors file (ours or any other), or a PyTorch
 * `.pth` / `.pth.tar` (read by core's restricted unpickler; no code from the file runs). The
 * wrapper prefixes training code adds (`module.`, `module.encoder_q.`, ...) are detected and
 * stripped unless `prefix` is given.
 * @throws naming the file when it is missing, damaged or holds no state dict.
 */
export function readWeights(path: string, opts: ReadWeightsOptions = {}): LoadedWeights {
  if (!existsSync(path)) throw new Error(`readWeights ${path}: file not found`);
  const prefixOpt = opts.prefix !== undefined ? { prefix: opts.prefix } : {};
  if (isPthPath(path)) {
    const file = readPth(path);
    const sd = extractStateDict(file, prefixOpt);
    const metadata: Record<string, string> = {};
    if (file.root instanceof Map) {
      for (const [k, v] of file.root) {
        if (typeof k !== 'string') continue;
        if (['string', 'number', 'bigint', 'boolean'].includes(typeof v)) metadata[k] = String(v);
      }
    }
    return {
      path,
      format: 'pth',
      tensors: sd.tensors as Map<string, RawTensor>,
      prefix: sd.prefix,
      location: sd.location,
      dropped: sd.dropped,
      metadata,
    };
  }
  const file = readSafetensors(path);
  const sd = stripStateDictPrefix(file.tensors, { ...prefixOpt, source: path });
  return {
    path,
    format: 'safetensors',
    tensors: sd.tensors,
    prefix: sd.prefix,
    location: '',
    dropped: sd.dropped,
    metadata: file.metadata,
  };
}

/** How a checkpoint's tensors fit one architecture. */
export interface ArchMatch {
  /** The registered backbone name compared with the checkpoint. */
  arch: string;
  /** Options that reproduce the checkpoint's shapes (stem, width, input channels). */
  options: BackboneOptions;
  /** Backbone tensors present with the expected shape. */
  matched: number;
  /** Backbone tensors the checkpoint lacks. */
  missing: string[];
  /** Backbone tensors present with another shape: `name: file [..] vs expected [..]`. */
  mismatched: string[];
  /** Checkpoint tensors that are neither backbone, head nor classifier. */
  unexpected: string[];
  /** torchvision's final classifier in the checkpoint: its tensor names and class count. */
  classifier: {
    /** The classifier's tensor names in the file (`fc.weight`, `fc.bias`, ...). */
    names: string[];
    /** Its output width: rows of its weight. */
    classes: number;
  } | null;
  /** A MoCo v2 style projection MLP in the checkpoint, and our names for its tensors. */
  head: {
    /** Width of its hidden layer; 0 for a single linear layer. */
    hiddenDim: number;
    /** Width of its output, the embedding. */
    dim: number;
    /** Each of its tensor names in the file, to its name in our models (`head.0.weight`, ...). */
    rename: Map<string, string>;
  } | null;
}

/** The final classifier's tensors per family. */
const CLASSIFIER_KEYS: Record<string, string> = {
  resnet: 'fc',
  mobilenet_v3: 'classifier.3',
  efficientnet: 'classifier.1',
};

function familyOf(arch: string): keyof typeof CLASSIFIER_KEYS {
  if (arch.startsWith('mobilenet_v3')) return 'mobilenet_v3';
  if (arch.startsWith('efficientnet')) return 'efficientnet';
  return 'resnet';
}

/** The first convolution's name and its output width at width multiplier 1, per family. */
const STEMS: Record<string, { name: string; width: number }> = {
  resnet: { name: 'conv1.weight', width: 64 },
  mobilenet_v3: { name: 'features.0.0.weight', width: 16 },
  efficientnet: { name: 'features.0.0.weight', width: 32 },
};

/** Names and PyTorch shapes of a backbone's tensors (num_batches_tracked excluded). */
function expectedShapes(arch: string, options: BackboneOptions): Map<string, number[]> {
  const net = createBackbone(arch, options);
  const params = new Params();
  try {
    net.init(params, new Rng(0));
    return new Map(
      params.names().map((n) => [n, torchShape(params.get(n).shape, params.layout(n))]),
    );
  } finally {
    params.dispose();
  }
}

const NAME_CACHE = new Map<string, string[]>();

/** The tensor names of an architecture (no classifier), from a cheap narrow build. */
function namesOf(arch: string): string[] {
  let names = NAME_CACHE.get(arch);
  if (!names) {
    names = [...expectedShapes(arch, { widthMultiplier: 0.125 }).keys()];
    NAME_CACHE.set(arch, names);
  }
  return names;
}

/**
 * Compares a checkpoint with one architecture, deriving input channels, the small stem and
 * the width multiplier from the stem convolution's shape.
 */
export function matchArchitecture(arch: string, tensors: Map<string, RawTensor>): ArchMatch {
  const family = familyOf(arch);
  const stem = tensors.get(STEMS[family]!.name);
  const options: BackboneOptions = {};
  if (stem && stem.shape.length === 4) {
    const [out, inC, k] = stem.shape as [number, number, number, number];
    if (inC !== 3) options.inChannels = inC;
    if (family === 'resnet' && k === 3) options.smallStem = true;
    const w = out / STEMS[family]!.width;
    if (w !== 1) options.widthMultiplier = w;
  }
  let expected: Map<string, number[]>;
  try {
    expected = expectedShapes(arch, options);
  } catch {
    // An impossible width for this family: nothing matches.
    expected = expectedShapes(arch, {});
  }
  const clsPrefix = `${CLASSIFIER_KEYS[family]}.`;
  const classifierNames = [...tensors.keys()].filter((n) => n.startsWith(clsPrefix));
  const clsWeight = tensors.get(`${clsPrefix}weight`);
  const head = findHead(tensors, family);

  let matched = 0;
  const missing: string[] = [];
  const mismatched: string[] = [];
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (!t) missing.push(name);
    else if (t.shape.join() !== shape.join()) {
      mismatched.push(`${name}: file [${t.shape}] vs expected [${shape}]`);
    } else matched++;
  }
  const unexpected = [...tensors.keys()].filter(
    (n) =>
      !expected.has(n) &&
      !n.endsWith('num_batches_tracked') &&
      !classifierNames.includes(n) &&
      !head?.rename.has(n),
  );
  return {
    arch,
    options,
    matched,
    missing,
    mismatched,
    unexpected,
    classifier:
      classifierNames.length > 0 && clsWeight && !head
        ? { names: classifierNames, classes: clsWeight.shape[0]! }
        : null,
    head,
  };
}

/**
 * A projection MLP: MoCo v2 replaces a ResNet's `fc` with `fc.0` (Linear) `fc.2` (Linear);
 * our own files name it `head.0` / `head.2` (or `head` for a single layer).
 */
function findHead(
  tensors: Map<string, RawTensor>,
  family: string,
): { hiddenDim: number; dim: number; rename: Map<string, string> } | null {
  const candidates = family === 'resnet' ? ['fc', 'head'] : ['head'];
  for (const base of candidates) {
    const w0 = tensors.get(`${base}.0.weight`);
    const w2 = tensors.get(`${base}.2.weight`);
    if (w0?.shape.length === 2 && w2?.shape.length === 2 && w2.shape[1] === w0.shape[0]) {
      const rename = new Map<string, string>();
      for (const i of ['0', '2']) {
        for (const p of ['weight', 'bias']) {
          if (tensors.has(`${base}.${i}.${p}`)) rename.set(`${base}.${i}.${p}`, `head.${i}.${p}`);
        }
      }
      return { hiddenDim: w0.shape[0]!, dim: w2.shape[0]!, rename };
    }
  }
  const single = tensors.get('head.weight');
  if (single?.shape.length === 2) {
    const rename = new Map([['head.weight', 'head.weight']]);
    if (tensors.has('head.bias')) rename.set('head.bias', 'head.bias');
    return { hiddenDim: 0, dim: single.shape[0]!, rename };
  }
  return null;
}

/** True when every backbone tensor is present with its shape. */
export function isExactMatch(m: ArchMatch): boolean {
  return m.missing.length === 0 && m.mismatched.length === 0;
}

/**
 * The architecture a checkpoint holds: `arch` when given, else the registered backbone whose
 * tensors all appear with the right shapes and that leaves the fewest unexpected ones.
 * Returns every candidate of the stem's family, best first, so a near miss can be explained.
 */
export function detectArchitecture(
  tensors: Map<string, RawTensor>,
  opts: { arch?: string } = {},
): {
  /** The first candidate when it is an exact match (`isExactMatch`), else null. */
  best: ArchMatch | null;
  /** The architectures compared, best first. */
  candidates: ArchMatch[];
} {
  let archs: string[];
  if (opts.arch !== undefined) {
    if (!listBackbones().includes(opts.arch)) {
      throw new Error(`unknown architecture '${opts.arch}'; known: ${listBackbones().join(', ')}`);
    }
    archs = [opts.arch];
  } else {
    // Only the family whose stem convolution the checkpoint has.
    archs = listBackbones().filter((a) => {
      const fam = familyOf(a);
      if (!tensors.has(STEMS[fam]!.name)) return false;
      if (fam === 'resnet') return true;
      const efficient = [...tensors.keys()].some((n) => /^features\.1\.0\.block\./.test(n));
      return (fam === 'efficientnet') === efficient;
    });
  }
  // Names do not depend on the width, so a narrow build tells which architectures can fit;
  // only those (or the closest one) are built at the checkpoint's width and compared.
  const overlap = archs.map((a) => {
    const names = namesOf(a);
    return { arch: a, absent: names.filter((n) => !tensors.has(n)).length };
  });
  const fitting = overlap.filter((o) => o.absent === 0).map((o) => o.arch);
  const closest = [...overlap].sort((a, b) => a.absent - b.absent)[0];
  const toBuild = fitting.length > 0 ? fitting : closest ? [closest.arch] : [];
  const candidates = toBuild
    .map((a) => matchArchitecture(a, tensors))
    .sort(
      (a, b) =>
        Number(isExactMatch(b)) - Number(isExactMatch(a)) ||
        a.missing.length + a.mismatched.length - (b.missing.length + b.mismatched.length) ||
        a.unexpected.length - b.unexpected.length,
    );
  const best = candidates[0] && isExactMatch(candidates[0]) ? candidates[0] : null;
  return { best, candidates };
}

/** One line per tensor and a summary: what `disco inspect` prints. */
export function describeWeights(w: LoadedWeights, opts: { arch?: string } = {}): string {
  const lines: string[] = [];
  let count = 0;
  const dtypes = new Map<string, number>();
  for (const t of w.tensors.values()) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    count += n;
    dtypes.set(t.dtype, (dtypes.get(t.dtype) ?? 0) + 1);
  }
  lines.push(
    `${w.path}: ${w.format}, ${w.tensors.size} tensors, ${count.toLocaleString('en-US')} values`,
  );
  lines.push(`  dtypes: ${[...dtypes].map(([d, n]) => `${d} x${n}`).join(', ')}`);
  if (w.location) lines.push(`  state dict at: ${w.location}`);
  lines.push(`  prefix stripped: ${w.prefix === '' ? '(none)' : `'${w.prefix}'`}`);
  if (w.dropped.length > 0) {
    const shown = w.dropped.slice(0, 8).join(', ');
    lines.push(`  left out: ${w.dropped.length} (${shown}${w.dropped.length > 8 ? ', ...' : ''})`);
  }
  if (w.metadata.info) {
    try {
      const info = JSON.parse(w.metadata.info) as ModelInfo;
      lines.push(
        `  model: ${info.spec.arch}, image size ${info.imageSize}, mean [${info.mean}], ` +
          `std [${info.std}]`,
      );
      for (const [k, v] of Object.entries(info.notes ?? {})) {
        lines.push(`  ${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
      }
    } catch {
      lines.push(`  info: not JSON`);
    }
  }
  const meta = Object.entries(w.metadata).filter(([k]) => k !== 'info');
  for (const [k, v] of meta) lines.push(`  ${k}: ${v.length > 120 ? `${v.slice(0, 117)}...` : v}`);
  const { best, candidates } = detectArchitecture(w.tensors, opts);
  if (best) {
    const o = JSON.stringify(best.options);
    lines.push(
      `  architecture: ${best.arch}${o === '{}' ? '' : ` ${o}`} (all ${best.matched} backbone tensors match)`,
    );
    if (best.head)
      lines.push(`  projection head: hidden ${best.head.hiddenDim}, dim ${best.head.dim}`);
    if (best.classifier) lines.push(`  classifier: ${best.classifier.classes} classes`);
    if (best.unexpected.length > 0) lines.push(`  other tensors: ${best.unexpected.join(', ')}`);
  } else if (candidates[0]) {
    const c = candidates[0];
    lines.push(
      `  architecture: not recognised; closest ${c.arch} (${c.matched} match, ` +
        `${c.missing.length} missing, ${c.mismatched.length} with other shapes)`,
    );
    for (const m of [...c.mismatched, ...c.missing.map((n) => `${n}: missing`)].slice(0, 5)) {
      lines.push(`    ${m}`);
    }
  } else {
    lines.push('  architecture: not recognised (no ResNet, MobileNetV3 or EfficientNet stem)');
  }
  lines.push('  tensors:');
  for (const [name, t] of w.tensors) lines.push(`    ${name}  ${t.dtype}  [${t.shape.join(', ')}]`);
  return lines.join('\n');
}

/** ImageNet's per-channel mean (R, G, B) of [0, 1] pixels, the default for imported RGB models. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
/** ImageNet's per-channel standard deviation (R, G, B), paired with `IMAGENET_MEAN`. */
export const IMAGENET_STD = [0.229, 0.224, 0.225];

/** Options of `importModel`. */
export interface ImportOptions {
  /** Architecture; detected when absent. */
  arch?: string;
  /** Prefix to strip instead of detecting one. */
  prefix?: string;
  /** Model folder to write (created). */
  out: string;
  /** Side of the images the model expects (default 224). */
  imageSize?: number;
  /** Normalisation of [0, 1] images (default ImageNet's for 3 channels; required otherwise). */
  mean?: number[];
  /** Standard deviation paired with `mean` (default ImageNet's for 3 channels; else required). */
  std?: number[];
  /** Backbone output recorded in the model: `'head'` for MobileNetV3's head feature. */
  output?: 'pooled' | 'head';
}

/** What `importModel` wrote. */
export interface ImportResult {
  /** The model folder written (`out`). */
  dir: string;
  /** The encoder file inside it, `<dir>/encoder.safetensors`. */
  file: string;
  /** How the checkpoint matched the architecture it was imported as. */
  match: ArchMatch;
  /** The spec recorded in the model, to rebuild it. */
  spec: EncoderSpec;
  /** The checkpoint as read. */
  weights: LoadedWeights;
}

/**
 * Imports a checkpoint as a model folder (`DIR/encoder.safetensors` in our format, plus a
 * readable `DIR/model.json`): the backbone with torchvision names, the MoCo v2 projection
 * head when the file has one; torchvision's classifier and any other tensor (a SwAV
 * projection head and prototypes, a momentum encoder) are left out and listed in `model.json`.
 * @throws naming the file when the architecture is not recognised or the tensors do not fit.
 */
export function importModel(file: string, opts: ImportOptions): ImportResult {
  const weights = readWeights(file, opts.prefix !== undefined ? { prefix: opts.prefix } : {});
  const { best, candidates } = detectArchitecture(weights.tensors, { arch: opts.arch });
  if (!best) {
    const c = candidates[0];
    const detail = c
      ? `closest ${c.arch}: ${[...c.mismatched, ...c.missing.map((n) => `${n} missing`)].slice(0, 3).join('; ')}`
      : 'no ResNet, MobileNetV3 or EfficientNet stem tensor';
    throw new Error(
      `import ${file}: the tensors (prefix '${weights.prefix}') are not a known architecture ` +
        `(${detail}); pass --arch or --prefix`,
    );
  }
  const inChannels = best.options.inChannels ?? 3;
  const mean = opts.mean ?? (inChannels === 3 ? IMAGENET_MEAN : undefined);
  const std = opts.std ?? (inChannels === 3 ? IMAGENET_STD : undefined);
  if (!mean || !std) {
    throw new Error(
      `import ${file}: the model takes ${inChannels}-channel input; give its normalisation ` +
        `with --mean and --std`,
    );
  }
  const spec: EncoderSpec = {
    arch: best.arch,
    backbone: { ...best.options, ...(opts.output === 'head' ? { output: 'head' as const } : {}) },
    hiddenDim: best.head?.hiddenDim ?? 0,
    dim: best.head?.dim ?? 0,
    ...(best.head ? {} : { head: false }),
  };
  const built = buildEncoder(spec, new Rng(0));
  if (!best.head) (spec as { dim: number }).dim = built.encoder.outDim;
  const keep = new Map<string, RawTensor>();
  const unexpected = new Set(best.unexpected);
  for (const [name, t] of weights.tensors) {
    if (best.classifier?.names.includes(name) || unexpected.has(name)) continue;
    keep.set(best.head?.rename.get(name) ?? name, t);
  }
  try {
    loadTorchStateDict(built.encoder.params, keep, { source: file });
    mkdirSync(opts.out, { recursive: true });
    const info: ModelInfo = {
      spec,
      imageSize: opts.imageSize ?? 224,
      mean,
      std,
      notes: {
        importedFrom: basename(file),
        sha256: createHash('sha256').update(readFileSync(file)).digest('hex'),
        format: weights.format,
        prefixStripped: weights.prefix,
        ...(weights.location ? { location: weights.location } : {}),
        ...(best.classifier ? { classifierDropped: best.classifier.names } : {}),
        ...(best.unexpected.length > 0 ? { otherTensorsDropped: best.unexpected } : {}),
        ...weights.metadata,
      },
    };
    const out = join(opts.out, MODEL_FILE);
    saveModelFile(out, built.encoder, info);
    writeFileAtomic(join(opts.out, 'model.json'), `${JSON.stringify(info, null, 2)}\n`);
    return { dir: opts.out, file: out, match: best, spec, weights };
  } finally {
    built.encoder.params.dispose();
  }
}

/**
 * Writes a model's backbone as a plain safetensors state dict with torchvision names and
 * layouts (F32), loadable by `torchvision.models.<arch>()` with `strict=False` (the classifier
 * is absent); `withHead` adds the projection head as `head.0` / `head.2`.
 */
export function exportModel(
  model: string,
  out: string,
  opts: { withHead?: boolean; dtype?: 'F32' | 'F16' } = {},
): {
  /** The tensor names written, torchvision's (plus `head.*` with `withHead`). */
  names: string[];
  /** The model's architecture, also in the file's metadata. */
  arch: string;
} {
  const m = loadModelFile(model);
  try {
    const all = toTorchStateDict(m.encoder.params, { dtype: opts.dtype ?? 'F32' });
    const backboneNames = new Set(m.backbone.params.names());
    const headNames = new Set(m.encoder.params.names().filter((n) => n.startsWith('head.')));
    const keep = new Map(
      [...all].filter(([n]) => (headNames.has(n) ? opts.withHead === true : backboneNames.has(n))),
    );
    writeSafetensors(out, keep, {
      format: 'pt',
      arch: m.info.spec.arch,
      exportedFrom: basename(modelFilePath(model)),
    });
    return { names: [...keep.keys()], arch: m.info.spec.arch };
  } finally {
    m.encoder.params.dispose();
  }
}

/** Options of `embed`. */
export interface EmbedOptions {
  /** Model folder or encoder file. */
  model: string;
  /**
   * A safetensors file holding one NHWC float tensor (or the one `key` names), or a folder of
   * images (JPEG, PNG, WebP; class subfolders or any layout, see `loadImageFolder`).
   */
  input: string;
  /** The tensor of a safetensors `input` to embed; needed when the file holds several. */
  key?: string;
  /**
   * Output safetensors file: `features` and, where the family has one, `head_features`; for a
   * folder also `labels` (class index per image) and the image paths in the metadata.
   */
  out: string;
  /** Images per forward pass (default 64). */
  batchSize?: number;
  /**
   * `true`: feed the tensor to the network unchanged. Default: the tensor holds images in
   * [0, 1], resized to the model's image size and normalised with its mean and std. Images
   * from a folder are always decoded at the model's size and normalised.
   */
  asIs?: boolean;
  /** Receives one line per image of a folder that could not be decoded (default stderr). */
  onWarning?: (line: string) => void;
}

/** Images to embed: NHWC floats and what to write beside the features. */
interface EmbedInput {
  values: Float32Array;
  shape: [number, number, number, number];
  /** Already at the model's size, in [0, 1]: resize and normalise (not `asIs`). */
  preprocess: boolean;
  describe: string;
  extra: Map<string, TensorToWrite>;
  metadata: Record<string, string>;
}

function readTensorInput(path: string, key: string | undefined, channels: number): EmbedInput {
  const file = readSafetensors(path);
  if (key === undefined) {
    if (file.tensors.size !== 1) {
      throw new Error(
        `embed ${path}: holds ${file.tensors.size} tensors (${[...file.tensors.keys()].join(', ')}); ` +
          `name one with --key`,
      );
    }
    key = [...file.tensors.keys()][0]!;
  }
  const raw = file.tensors.get(key);
  if (!raw) {
    throw new Error(
      `embed ${path}: no tensor '${key}' (has ${[...file.tensors.keys()].join(', ')})`,
    );
  }
  if (
    raw.shape.length !== 4 ||
    raw.shape[3] !== channels ||
    !(raw.values instanceof Float32Array)
  ) {
    throw new Error(
      `embed ${path}: tensor '${key}' is ${raw.dtype} [${raw.shape}]; the model takes ` +
        `float NHWC images [N, H, W, ${channels}]`,
    );
  }
  return {
    values: raw.values,
    shape: raw.shape as [number, number, number, number],
    preprocess: true,
    describe: `${basename(path)}:${key}`,
    extra: new Map(),
    metadata: {},
  };
}

async function readFolderInput(
  root: string,
  size: number,
  channels: number,
  onWarning?: (line: string) => void,
): Promise<EmbedInput> {
  if (channels !== 1 && channels !== 3) {
    throw new Error(
      `embed ${root}: images can be read as 1 or 3 channels; the model takes ${channels}`,
    );
  }
  const set = await loadImageFolder({ root, size, channels, ...(onWarning ? { onWarning } : {}) });
  const values = new Float32Array(set.images.length);
  for (let i = 0; i < values.length; i++) values[i] = set.images[i]! / 255;
  const extra = new Map<string, TensorToWrite>([
    ['labels', { shape: [set.count], values: Int32Array.from(set.labels), dtype: 'I32' }],
  ]);
  return {
    values,
    shape: [set.count, size, size, channels],
    preprocess: true,
    describe: `${basename(root)}/ (${set.count} images, ${set.skipped.length} skipped)`,
    extra,
    metadata: {
      paths: JSON.stringify(set.paths),
      classNames: JSON.stringify(set.classNames),
      skipped: JSON.stringify(set.skipped.map((s) => s.path)),
    },
  };
}

/**
 * Embeds images with a model in eval mode: the pooled backbone feature (`features`) and,
 * for MobileNetV3, the head feature (`head_features`), written as F32 safetensors.
 * @throws naming the file, the key and the shape when the input does not fit the model.
 */
export async function embed(opts: EmbedOptions): Promise<{
  /** Images embedded. */
  count: number;
  /** Each tensor written to `out`, by name, with its shape (`features: [count, dim]`, ...). */
  outputs: Record<string, number[]>;
}> {
  const m = loadModelFile(opts.model);
  try {
    const net = m.backbone.net as Backbone;
    const c = net.inChannels;
    const folder = existsSync(opts.input) && statSync(opts.input).isDirectory();
    const input = folder
      ? await readFolderInput(opts.input, m.info.imageSize, c, opts.onWarning)
      : readTensorInput(opts.input, opts.key, c);
    const [n, h, w] = input.shape;
    const per = h * w * c;
    const pre = opts.asIs && !folder ? null : preprocessFor(m.info);
    const bs = opts.batchSize ?? 64;
    const pooled = new Float32Array(n * net.pooledDim);
    let head: Float32Array | null = null;
    for (let start = 0; start < n; start += bs) {
      const size = Math.min(bs, n - start);
      const [p, hd] = tf.tidy(() => {
        let x = tf.tensor4d(input.values.subarray(start * per, (start + size) * per), [
          size,
          h,
          w,
          c,
        ]);
        if (pre) x = pre(x);
        const o = net.applyAll(m.backbone.params, x, { training: false });
        return o.head ? [o.pooled, o.head] : [o.pooled];
      });
      pooled.set(p!.dataSync(), start * net.pooledDim);
      if (hd) {
        head ??= new Float32Array(n * hd.shape[1]!);
        head.set(hd.dataSync(), start * hd.shape[1]!);
      }
      tf.dispose(hd ? [p!, hd] : [p!]);
    }
    const out = new Map<string, TensorToWrite>([
      ['features', { shape: [n, net.pooledDim], values: pooled }],
    ]);
    if (head) out.set('head_features', { shape: [n, head.length / n], values: head });
    for (const [k, v] of input.extra) out.set(k, v);
    writeSafetensors(opts.out, out, {
      model: basename(modelFilePath(opts.model)),
      arch: m.info.spec.arch,
      input: input.describe,
      preprocessing: pre ? `resize ${m.info.imageSize}, mean/std of the model` : 'none',
      ...input.metadata,
    });
    return {
      count: n,
      outputs: Object.fromEntries([...out].map(([k, v]) => [k, v.shape])),
    };
  } finally {
    m.encoder.params.dispose();
  }
}

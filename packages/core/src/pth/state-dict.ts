/**
 * Finding a model's state dict inside the checkpoint shapes training code commonly saves:
 * a bare state dict, `{state_dict: ...}` (MoCo, the ImageNet example), `{model: ...}`
 * (DeiT, timm), `{student: ..., teacher: ...}` (DINO), and stripping the key prefixes that
 * wrappers add: `module.` (DataParallel / DistributedDataParallel), `encoder_q.` (MoCo's
 * query encoder), `backbone.`, `encoder.`, `student.`, `teacher.`, `model.`, `_orig_mod.`
 * (torch.compile).
 */
import { PthStateDictError } from './errors.js';
import type { PthFile, PthValue } from './read.js';
import { PthTensor } from './tensor.js';

/** Options of `extractStateDict`. */
export interface ExtractStateDictOptions {
  /**
   * The prefix to strip, overriding detection: only keys that start with it are kept.
   * `''` keeps every key unchanged.
   */
  prefix?: string;
  /**
   * Where the state dict is, overriding the search: a key of the top-level dict or a path
   * of keys, e.g. `'teacher'` or `['model', 'state_dict']`.
   */
  at?: string | string[];
  /** Names the file in errors (default: the `PthFile`'s source). */
  source?: string;
}

/** What `extractStateDict` found. */
export interface ExtractedStateDict {
  /** Tensors by name, prefix stripped, in file order. Usable as `loadTorchStateDict` input. */
  tensors: Map<string, PthTensor>;
  /** The prefix that was stripped from every kept name (`''` when none). */
  prefix: string;
  /** The key path of the state dict in the checkpoint, e.g. `state_dict`; `''` at top level. */
  location: string;
  /** Names (as in the file) left out: non-tensor values and keys outside the prefix. */
  dropped: string[];
}

/** Keys under which checkpoints keep a state dict, in the order they are searched. */
const CONTAINER_KEYS = [
  'state_dict',
  'model_state_dict',
  'model',
  'module',
  'student',
  'teacher',
  'encoder_q',
  'encoder',
  'backbone',
  'net',
  'network',
];
/** How many dicts deep the search goes, e.g. `checkpoint.model.state_dict` is 2. */
const MAX_SEARCH_DEPTH = 3;
/** Prefixes stripped when every key has them, tried in order, repeatedly. */
const WRAPPER_PREFIXES = [
  'module.',
  '_orig_mod.',
  'model.',
  'encoder_q.',
  'encoder.',
  'backbone.',
  'student.',
  'teacher.',
];
/**
 * MoCo keeps the query encoder (`encoder_q.`) beside the momentum encoder (`encoder_k.`) and
 * the queue; the query encoder is the one its paper transfers, so it is selected even when
 * other keys are present.
 */
const SELECTING_PREFIX = 'encoder_q.';

/**
 * Finds the state dict inside a checkpoint and strips its wrapper prefix.
 *
 * The search takes the top-level dict if most of its values are tensors, else looks under
 * the keys `state_dict`, `model_state_dict`, `model`, `module`, `student`, `teacher`,
 * `encoder_q`, `encoder`, `backbone`, `net`, `network` (in that order, up to 3 levels deep).
 * Prefix detection strips `module.`, `_orig_mod.`, `model.`, `encoder_q.`, `encoder.`,
 * `backbone.`, `student.` or `teacher.` while every key has it, and selects the
 * `encoder_q.` keys of a MoCo state dict that also holds `encoder_k.` and the queue.
 * Integer buffers such as `num_batches_tracked` are tensors and are kept.
 *
 * @example
 *   const { tensors, prefix } = extractStateDict(readPth('moco_v2_800ep.pth.tar'));
 *   // prefix === 'module.encoder_q.'
 *   loadTorchStateDict(params, tensors, { strict: false });
 * @throws PthStateDictError when no state dict is found, `at` is absent, or no key has
 *   the given `prefix`.
 */
export function extractStateDict(
  checkpoint: PthFile | PthValue,
  opts: ExtractStateDictOptions = {},
): ExtractedStateDict {
  const isFile = isPthFile(checkpoint);
  const root = isFile ? checkpoint.root : checkpoint;
  const source = opts.source ?? (isFile ? checkpoint.source : '<checkpoint>');

  let found: { dict: Map<PthValue, PthValue>; path: string[] } | undefined;
  if (opts.at !== undefined) {
    const path = typeof opts.at === 'string' ? [opts.at] : opts.at;
    let value: PthValue | undefined = root;
    for (const key of path) value = value instanceof Map ? value.get(key) : undefined;
    if (!(value instanceof Map)) {
      throw new PthStateDictError(source, `no dict at '${path.join('.')}' (${keysOf(root)})`);
    }
    found = { dict: value, path };
  } else {
    found = search(root, [], 0);
    if (!found) {
      throw new PthStateDictError(
        source,
        `no state dict found: no dict of tensors at the top level or under ` +
          `${CONTAINER_KEYS.join(', ')} (${keysOf(root)})`,
      );
    }
  }

  const dropped: string[] = [];
  const named: [string, PthTensor][] = [];
  for (const [key, value] of found.dict) {
    if (typeof key === 'string' && value instanceof PthTensor) named.push([key, value]);
    else dropped.push(String(key));
  }

  const stripped = stripNames(named, opts.prefix, source, found.path.join('.'));
  return {
    tensors: stripped.tensors,
    prefix: stripped.prefix,
    location: found.path.join('.'),
    dropped: [...dropped, ...stripped.dropped],
  };
}

/**
 * Strips the wrapper prefix of a state dict that is already a map of tensors (a safetensors
 * file, for example), by the same rules as `extractStateDict`: `prefix` when given, else
 * detection.
 * @throws PthStateDictError when no name has the given `prefix`.
 */
export function stripStateDictPrefix<T>(
  tensors: Map<string, T>,
  opts: { prefix?: string; source?: string } = {},
): {
  /** The kept tensors, under their names without the prefix. */
  tensors: Map<string, T>;
  /** The prefix stripped (`module.encoder_q.`); empty when none was. */
  prefix: string;
  /** The full names of the tensors left out (without the prefix, or beside the selected ones). */
  dropped: string[];
} {
  return stripNames([...tensors], opts.prefix, opts.source ?? '<state dict>', '');
}

function stripNames<T>(
  entries: [string, T][],
  given: string | undefined,
  source: string,
  where: string,
): { tensors: Map<string, T>; prefix: string; dropped: string[] } {
  let named = entries;
  const dropped: string[] = [];
  let prefix = '';
  if (given !== undefined) {
    prefix = given;
    const kept = named.filter(([name]) => name.startsWith(prefix));
    if (kept.length === 0) {
      throw new PthStateDictError(
        source,
        `no tensor name at '${where}' starts with prefix '${prefix}' ` +
          `(first names: ${named
            .slice(0, 3)
            .map(([n]) => n)
            .join(', ')})`,
      );
    }
    for (const [name] of named) if (!name.startsWith(prefix)) dropped.push(name);
    named = kept.map(([name, t]) => [name.slice(prefix.length), t]);
  } else {
    for (let round = 0; round < WRAPPER_PREFIXES.length; round++) {
      const strip = WRAPPER_PREFIXES.find((p) => named.every(([name]) => hasPrefix(name, p)));
      const select = named.some(([name]) => hasPrefix(name, SELECTING_PREFIX));
      const chosen = strip ?? (select ? SELECTING_PREFIX : undefined);
      if (chosen === undefined || named.length === 0) break;
      for (const [name] of named) if (!hasPrefix(name, chosen)) dropped.push(prefix + name);
      named = named
        .filter(([name]) => hasPrefix(name, chosen))
        .map(([name, t]) => [name.slice(chosen.length), t]);
      prefix += chosen;
    }
  }

  return { tensors: new Map(named), prefix, dropped };
}

/** True if `name` starts with `prefix` and keeps a non-empty name after it. */
function hasPrefix(name: string, prefix: string): boolean {
  return name.length > prefix.length && name.startsWith(prefix);
}

function search(
  value: PthValue,
  path: string[],
  depth: number,
): { dict: Map<PthValue, PthValue>; path: string[] } | undefined {
  if (!(value instanceof Map)) return undefined;
  let tensors = 0;
  for (const v of value.values()) if (v instanceof PthTensor) tensors++;
  if (tensors > 0 && 2 * tensors >= value.size) return { dict: value, path };
  if (depth >= MAX_SEARCH_DEPTH) return undefined;
  for (const key of CONTAINER_KEYS) {
    const child = value.get(key);
    const found = child === undefined ? undefined : search(child, [...path, key], depth + 1);
    if (found) return found;
  }
  return undefined;
}

function isPthFile(v: unknown): v is PthFile {
  return (
    typeof v === 'object' && v !== null && 'root' in v && (v as PthFile).storages instanceof Map
  );
}

function keysOf(v: PthValue): string {
  if (!(v instanceof Map)) return 'the checkpoint is not a dict';
  const keys = [...v.keys()].slice(0, 8).map(String);
  return `top-level keys: ${keys.join(', ')}${v.size > 8 ? ', ...' : ''}`;
}

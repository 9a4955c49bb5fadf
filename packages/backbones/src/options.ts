/**
 * Checking `BackboneOptions` at the public boundary, so a mistyped or impossible setting fails
 * when the model is built, naming the option and the value received.
 */
import type { BackboneOptions } from './backbone.js';

/** `BackboneOptions` with every default filled in. */
export interface ResolvedOptions {
  /** Channels of the input images (default 3). */
  inChannels: number;
  /** Scale of the stem and stage widths (default 1). */
  widthMultiplier: number;
  /** Whether the stem is the small-input one (default false). */
  smallStem: boolean;
  /** Classes of the final classifier (`withClassifier`); 0: no classifier. */
  numClasses: number;
  /** What `apply` returns (default `'pooled'`). */
  output: 'pooled' | 'head';
}

const KNOWN_OPTIONS: readonly (keyof BackboneOptions)[] = [
  'inChannels',
  'widthMultiplier',
  'smallStem',
  'withClassifier',
  'output',
];

function isPositiveInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

/**
 * Validates `opts` for architecture `arch`; `hasHead` says whether the family has a head
 * feature (`output: 'head'`).
 * @throws naming `fn`, the option, the rule and the value received.
 */
export function resolveOptions(
  fn: string,
  arch: string,
  opts: BackboneOptions | undefined,
  hasHead: boolean,
): ResolvedOptions {
  const where = `${fn}('${arch}')`;
  if (opts === undefined) opts = {};
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) {
    throw new Error(`${where}: options must be an object, got ${JSON.stringify(opts)}`);
  }
  for (const key of Object.keys(opts)) {
    if (!KNOWN_OPTIONS.includes(key as keyof BackboneOptions)) {
      throw new Error(
        `${where}: unknown option '${key}'; the options are ${KNOWN_OPTIONS.join(', ')}`,
      );
    }
  }

  const { inChannels = 3, widthMultiplier = 1, smallStem = false, output = 'pooled' } = opts;
  if (!isPositiveInteger(inChannels)) {
    throw new Error(`${where}: inChannels must be a positive integer, got ${String(inChannels)}`);
  }
  if (
    typeof widthMultiplier !== 'number' ||
    !Number.isFinite(widthMultiplier) ||
    widthMultiplier <= 0
  ) {
    throw new Error(
      `${where}: widthMultiplier must be a finite number > 0, got ${String(widthMultiplier)}`,
    );
  }
  if (typeof smallStem !== 'boolean') {
    throw new Error(`${where}: smallStem must be true or false, got ${String(smallStem)}`);
  }
  if (opts.withClassifier !== undefined && !isPositiveInteger(opts.withClassifier)) {
    throw new Error(
      `${where}: withClassifier must be a positive integer (the class count), ` +
        `got ${String(opts.withClassifier)}`,
    );
  }
  if (output !== 'pooled' && output !== 'head') {
    throw new Error(`${where}: output must be 'pooled' or 'head', got ${String(output)}`);
  }
  if (output === 'head' && !hasHead) {
    throw new Error(
      `${where}: output 'head' exists only for architectures with a head feature ` +
        `(MobileNetV3); use 'pooled'`,
    );
  }
  return { inChannels, widthMultiplier, smallStem, numClasses: opts.withClassifier ?? 0, output };
}

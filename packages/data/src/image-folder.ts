/**
 * Image folders: the layout torchvision's `ImageFolder` reads, `root/<class>/<...>/<image>`, or
 * a plain tree of unlabelled images. Every JPEG, PNG or WebP file is decoded with sharp
 * (libvips, https://sharp.pixelplumbing.com) into one in-memory NHWC uint8 `ImageSet`, with the
 * usual evaluation transform applied: resize the shorter side to `size`, crop the centre.
 *
 * Decoding runs several images at once through sharp, whose work happens on libuv's thread
 * pool; worker_threads were measured to add nothing on top of that (see `workers`).
 *
 * TODO(streaming): the whole set is held in memory; sets larger than memory need a prefetching
 * stream that decodes batches ahead of the training loop.
 */
import { readdirSync, realpathSync, statSync, type Dirent } from 'node:fs';
import { join } from 'node:path';

import { decodeAll, type SkippedImage } from './image-decode.js';
import type { ImageSet } from './image-set.js';

/** File name endings read as images, compared case-insensitively. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp'];

const IMAGE_NAME = /\.(jpe?g|png|webp)$/i;

/** Labels are uint8 in `ImageSet`, so a labelled folder can have at most this many classes. */
const MAX_CLASSES = 256;

/** What `loadImageFolder` reads and how it decodes the images. */
export interface ImageFolderOptions {
  /** The folder to read. */
  root: string;
  /** Side of the square output images, in pixels: shorter side resized to it, centre cropped. */
  size: number;
  /** 1: grayscale (ITU-R 601 luma of the sRGB pixels, as PIL's convert('L')); 3: sRGB. */
  channels: 1 | 3;
  /**
   * `true`: `root/<class>/<...>/<image>`, one class per subfolder of `root`; `false`: every
   * image under `root` at any depth, labels 0. Default: labelled when `root` holds at least one
   * folder and no image file of its own.
   */
  labelled?: boolean;
  /** Decode only the first `limit` image files in path order (fewer come back if some are bad). */
  limit?: number;
  /**
   * Largest fraction of image files that may fail to decode (default 0.01); each bad file is
   * skipped with a warning, and loading stops with a `BadImagesError` once more fail.
   */
  maxBadFraction?: number;
  /**
   * How many images are decoded at once (default 4, libuv's default thread pool size). sharp
   * runs each decode on one thread of libuv's pool, so values above `UV_THREADPOOL_SIZE` add no
   * parallelism; each one in flight holds one decoded source image in memory.
   */
  workers?: number;
  /** Receives one line per skipped file. Default: written to stderr. */
  onWarning?: (line: string) => void;
}

export type { SkippedImage } from './image-decode.js';

/** What `loadImageFolder` returns: the images plus where each came from. */
export type ImageFolderSet = ImageSet & {
  /** `count` file paths (`root` joined with the relative path), aligned with `labels`. */
  paths: string[];
  /** The image files that failed to decode, in path order. */
  skipped: SkippedImage[];
  /** Files left alone: other extensions, hidden files, images outside class folders. */
  ignored: number;
};

/** A folder that cannot be read as an image folder: missing, empty, or with empty classes. */
export class ImageFolderError extends Error {
  constructor(
    message: string,
    /** The folder at fault. */
    readonly folder: string,
  ) {
    super(message);
    this.name = 'ImageFolderError';
  }
}

/** More image files failed to decode than `maxBadFraction` allows. */
export class BadImagesError extends ImageFolderError {
  constructor(
    message: string,
    folder: string,
    /** The files that failed before loading stopped. */
    readonly skipped: readonly SkippedImage[],
    /** How many image files were to be decoded. */
    readonly total: number,
  ) {
    super(message, folder);
    this.name = 'BadImagesError';
  }
}

/**
 * Compares two strings by Unicode code point (the order Python's `sorted` gives, which
 * torchvision uses), not by UTF-16 unit as `<` does: a surrogate pair encodes a code point
 * above U+FFFF, so it sorts after every other unit even though U+E000..U+FFFF are larger units.
 */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    const sa = ca >= 0xd800 && ca <= 0xdfff;
    const sb = cb >= 0xd800 && cb <= 0xdfff;
    if (sa === sb) return ca - cb;
    return sa ? 1 : -1;
  }
  return a.length - b.length;
}

/** What a walk found: image files as (folder, name) relative to where it started. */
interface Found {
  images: { dir: string; name: string }[];
  ignored: number;
}

/** Whether an entry is a folder, following symbolic links (a broken link counts as a file). */
function isDirectory(dir: string, entry: Dirent): boolean {
  if (!entry.isSymbolicLink()) return entry.isDirectory();
  try {
    return statSync(join(dir, entry.name)).isDirectory();
  } catch {
    return false;
  }
}

function listFolder(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    throw new ImageFolderError(
      `loadImageFolder: cannot read folder ${dir}: ${(err as Error).message}`,
      dir,
    );
  }
}

/**
 * Every image file under `top`, sorted as torchvision's walk sorts them: by folder path, then
 * by name. Hidden entries (names starting with '.') are not descended into; hidden files are
 * ignored, so macOS `._x.jpg` resource forks are not taken for images.
 */
function walk(top: string): Found {
  const found: Found = { images: [], ignored: 0 };
  const seen = new Set<string>();
  const visit = (rel: string): void => {
    const abs = rel === '' ? top : join(top, rel);
    const real = realpathSync(abs);
    if (seen.has(real)) return; // a symbolic link loop
    seen.add(real);
    for (const entry of listFolder(abs)) {
      const hidden = entry.name.startsWith('.');
      if (isDirectory(abs, entry)) {
        if (!hidden) visit(rel === '' ? entry.name : `${rel}/${entry.name}`);
      } else if (!hidden && IMAGE_NAME.test(entry.name)) {
        found.images.push({ dir: rel, name: entry.name });
      } else {
        found.ignored++;
      }
    }
  };
  visit('');
  found.images.sort((x, y) => compareCodePoints(x.dir, y.dir) || compareCodePoints(x.name, y.name));
  return found;
}

/** The files to decode, in order, with their labels. */
interface Plan {
  files: { path: string; label: number }[];
  classNames: string[];
  ignored: number;
}

function planLabelled(root: string, entries: Dirent[]): Plan {
  const classNames = entries
    .filter((e) => !e.name.startsWith('.') && isDirectory(root, e))
    .map((e) => e.name)
    .sort(compareCodePoints);
  if (classNames.length === 0) {
    throw new ImageFolderError(
      `loadImageFolder: ${root} has no class folders; a labelled image folder holds ` +
        `root/<class>/<image> (pass labelled: false to read images without classes)`,
      root,
    );
  }
  if (classNames.length > MAX_CLASSES) {
    // TODO(labels): ImageSet labels are uint8; ImageNet's 1000 classes need a wider type.
    throw new ImageFolderError(
      `loadImageFolder: ${root} has ${classNames.length} class folders, ` +
        `at most ${MAX_CLASSES} are supported (labels are uint8)`,
      root,
    );
  }
  // Root entries besides the class folders: files count as ignored, hidden folders do not.
  const ignored = entries.filter((e) => !isDirectory(root, e)).length;
  const plan: Plan = { files: [], classNames, ignored };
  const empty: string[] = [];
  classNames.forEach((name, label) => {
    const classDir = join(root, name);
    const found = walk(classDir);
    if (found.images.length === 0) empty.push(classDir);
    plan.ignored += found.ignored;
    for (const f of found.images) plan.files.push({ path: join(classDir, f.dir, f.name), label });
  });
  if (empty.length > 0) {
    throw new ImageFolderError(
      `loadImageFolder: ${empty.length} of ${classNames.length} class folders in ${root} hold ` +
        `no ${IMAGE_EXTENSIONS.join('/')} image: ${empty.slice(0, 5).join(', ')}` +
        (empty.length > 5 ? ` and ${empty.length - 5} more` : ''),
      root,
    );
  }
  return plan;
}

function planUnlabelled(root: string): Plan {
  const found = walk(root);
  if (found.images.length === 0) {
    throw new ImageFolderError(
      `loadImageFolder: no ${IMAGE_EXTENSIONS.join('/')} image under ${root} ` +
        `(${found.ignored} other files)`,
      root,
    );
  }
  const files = found.images.map((f) => ({ path: join(root, f.dir, f.name), label: 0 }));
  return { files, classNames: [], ignored: found.ignored };
}

function checkOptions(opts: ImageFolderOptions): Required<Omit<ImageFolderOptions, 'labelled'>> {
  const { size, channels, limit, maxBadFraction = 0.01, workers = 4 } = opts;
  if (typeof opts.root !== 'string' || opts.root === '') {
    throw new Error(`loadImageFolder: root must be a folder path, got ${String(opts.root)}`);
  }
  if (!(Number.isInteger(size) && size > 0)) {
    throw new Error(`loadImageFolder: size must be a positive integer, got ${size}`);
  }
  if (channels !== 1 && channels !== 3) {
    throw new Error(`loadImageFolder: channels must be 1 or 3, got ${String(channels)}`);
  }
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    throw new Error(`loadImageFolder: limit must be a positive integer, got ${limit}`);
  }
  if (!(maxBadFraction >= 0 && maxBadFraction <= 1)) {
    throw new Error(`loadImageFolder: maxBadFraction must be in [0, 1], got ${maxBadFraction}`);
  }
  if (!(Number.isInteger(workers) && workers > 0)) {
    throw new Error(`loadImageFolder: workers must be a positive integer, got ${workers}`);
  }
  const onWarning = opts.onWarning ?? ((line: string) => void process.stderr.write(`${line}\n`));
  return {
    root: opts.root,
    size,
    channels,
    limit: limit ?? Infinity,
    maxBadFraction,
    workers,
    onWarning,
  };
}

/**
 * Loads an image folder into memory. Each image is decoded with its EXIF orientation applied,
 * alpha flattened onto black, converted to sRGB (16-bit files scaled to 8 bits), resized so
 * that its shorter side is `size` (triangle filter, antialiased when shrinking; torchvision's
 * `Resize(size)` + `CenterCrop(size)` up to filter and rounding details), centre cropped to
 * `size x size`, and for one channel reduced to luma.
 * @returns `images` of `count * size * size * channels` bytes (NHWC), `labels` (class index in
 *   `classNames`, sorted folder names; zeros and `classNames: []` when unlabelled), the `paths`
 *   they came from, the `skipped` bad files and the number of `ignored` other files.
 * @throws `ImageFolderError` when `root` is missing, holds no image, or (labelled) has a class
 *   folder without images or over 256 classes; `BadImagesError` when more than `maxBadFraction`
 *   of the image files fail to decode; `Error` for an invalid option. Messages name the folder
 *   or the files.
 */
export async function loadImageFolder(opts: ImageFolderOptions): Promise<ImageFolderSet> {
  const { root, size, channels, limit, maxBadFraction, workers, onWarning } = checkOptions(opts);
  let rootIsDir = false;
  try {
    rootIsDir = statSync(root).isDirectory();
  } catch {
    // reported below
  }
  if (!rootIsDir) {
    throw new ImageFolderError(`loadImageFolder: ${root} is not a folder`, root);
  }

  const entries = listFolder(root);
  const labelled =
    opts.labelled ??
    (entries.some((e) => !e.name.startsWith('.') && isDirectory(root, e)) &&
      !entries.some((e) => !e.name.startsWith('.') && IMAGE_NAME.test(e.name)));
  const plan = labelled ? planLabelled(root, entries) : planUnlabelled(root);
  const files = plan.files.slice(0, limit);

  const pixels = size * size * channels;
  const images = new Uint8Array(files.length * pixels);
  // Once more files failed than the fraction allows of the whole list, the final fraction is
  // over it too: decoding stops rather than warn about every file of a broken folder.
  const maxBad = Math.floor(maxBadFraction * files.length);
  const paths = files.map((f) => f.path);
  const { failed, tried } = await decodeAll(paths, images, {
    size,
    channels,
    workers,
    maxBad,
    onWarning,
  });

  const bad = failed.filter((f): f is SkippedImage => f !== null);
  if (bad.length > maxBad) {
    const stopped = tried < files.length ? `, loading stopped after ${tried}` : '';
    throw new BadImagesError(
      `loadImageFolder: ${bad.length} of ${files.length} image files in ${root} failed to ` +
        `decode (${((100 * bad.length) / files.length).toFixed(1)}%, over maxBadFraction ` +
        `${maxBadFraction}${stopped}): ` +
        bad
          .slice(0, 3)
          .map((f) => `${f.path} (${f.reason})`)
          .join(', ') +
        (bad.length > 3 ? ` and ${bad.length - 3} more` : ''),
      root,
      bad,
      files.length,
    );
  }
  if (bad.length === files.length) {
    throw new ImageFolderError(`loadImageFolder: no image in ${root} could be decoded`, root);
  }

  // Close the gaps the bad files left, keeping path order.
  const labels = new Uint8Array(files.length - bad.length);
  const kept: string[] = [];
  for (let i = 0; i < files.length; i++) {
    if (failed[i] !== null) continue;
    const k = kept.length;
    if (k !== i) images.copyWithin(k * pixels, i * pixels, (i + 1) * pixels);
    labels[k] = files[i]!.label;
    kept.push(files[i]!.path);
  }
  return {
    // A view, not a copy: with bad files the buffer keeps its unused tail (at most
    // maxBadFraction of it) rather than holding the set twice while copying.
    images: images.subarray(0, kept.length * pixels),
    labels,
    count: kept.length,
    height: size,
    width: size,
    channels,
    classNames: plan.classNames,
    paths: kept,
    skipped: bad,
    ignored: plan.ignored,
  };
}

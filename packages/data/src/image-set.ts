/**
 * The in-memory image set every reader of @disco/data returns and the batch loader consumes:
 * uint8 pixels in NHWC order with one class label per image.
 */

/** An in-memory set of uint8 images with labels, NHWC. */
export interface ImageSet {
  /** `count * height * width * channels` pixels, NHWC order, 0..255. */
  images: Uint8Array;
  /** `count` class labels (for unlabelled sets, zeros). */
  labels: Uint8Array;
  /** Images in the set. */
  count: number;
  /** Rows of every image. */
  height: number;
  /** Columns of every image. */
  width: number;
  /** Channels of every image (the readers give 1 for grayscale, 3 for RGB). */
  channels: number;
  /** The class names, indexed by label (empty for an unlabelled set). */
  classNames: readonly string[];
}

/**
 * Checks that an image set's arrays match its declared sizes.
 * @param fn the calling function, named in the error.
 * @throws when a size is not a positive integer or an array length disagrees with them.
 */
export function checkImageSet(set: ImageSet, fn: string): void {
  for (const key of ['count', 'height', 'width', 'channels'] as const) {
    const v = set[key];
    if (!(Number.isInteger(v) && v > 0)) {
      throw new Error(`${fn}: image set ${key} must be a positive integer, got ${v}`);
    }
  }
  const pixels = set.count * set.height * set.width * set.channels;
  if (set.images.length !== pixels) {
    throw new Error(
      `${fn}: image set images must hold count*height*width*channels = ` +
        `${set.count}*${set.height}*${set.width}*${set.channels} = ${pixels} bytes, ` +
        `got ${set.images.length}`,
    );
  }
  if (set.labels.length !== set.count) {
    throw new Error(
      `${fn}: image set labels must hold count = ${set.count} values, got ${set.labels.length}`,
    );
  }
}

/**
 * Random resized crop (Szegedy et al. 2015, "Going deeper with convolutions"; the form
 * torchvision's RandomResizedCrop and MoCo v2 use): a window of a random share of the image's
 * area and a random aspect ratio, later resized to a square output. The windows are sampled
 * per image in JS; `cropBoxes` turns them into the normalised boxes of one batched
 * `tf.image.cropAndResize` call.
 */
import type { Rng } from '@disco/core';

/** A crop window in whole pixels: rows `top .. top+height-1`, columns `left .. left+width-1`. */
export interface CropWindow {
  /** First row. */
  top: number;
  /** First column. */
  left: number;
  /** Rows in the window. */
  height: number;
  /** Columns in the window. */
  width: number;
}

/** Rounds half to even, as Python's `round`, so window sizes match torchvision's. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Samples one crop window the way torchvision's RandomResizedCrop does: up to 10 attempts
 * with area share `U[scale]` and aspect ratio `exp(U[log ratio])` (width / height); the first
 * window that fits is placed uniformly at random. If none fits, the whole image is cropped
 * centrally to the nearest allowed aspect ratio.
 * @param scale `[lo, hi]` share of the image area, MoCo v2: `[0.2, 1]`.
 * @param ratio `[lo, hi]` aspect ratio, MoCo v2: `[3/4, 4/3]`.
 */
export function sampleResizedCrop(
  rng: Rng,
  imageHeight: number,
  imageWidth: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
): CropWindow {
  const area = imageHeight * imageWidth;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.range(scale[0], scale[1]);
    const aspect = Math.exp(rng.range(logLo, logHi));
    const width = roundHalfEven(Math.sqrt(targetArea * aspect));
    const height = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (width > 0 && width <= imageWidth && height > 0 && height <= imageHeight) {
      const top = rng.int(imageHeight - height + 1);
      const left = rng.int(imageWidth - width + 1);
      return { top, left, height, width };
    }
  }

  // Fallback: the largest central window whose aspect ratio is within `ratio`.
  const inRatio = imageWidth / imageHeight;
  let width = imageWidth;
  let height = imageHeight;
  if (inRatio < ratio[0]) {
    height = roundHalfEven(width / ratio[0]);
  } else if (inRatio > ratio[1]) {
    width = roundHalfEven(height * ratio[1]);
  }
  return {
    top: Math.floor((imageHeight - height) / 2),
    left: Math.floor((imageWidth - width) / 2),
    height,
    width,
  };
}

/**
 * The sample positions of one axis, as cropAndResize's normalised coordinates: the first
 * output sample at the centre of the window's first pixel, the last at its last pixel's.
 * Both are pulled inside by a few float32 ulps of the image size, because the wasm kernel
 * computes positions in float32 and treats a sample a hair outside the image as
 * extrapolation (a whole row or column of zeros).
 */
function axisBox(start: number, length: number, size: number): [number, number] {
  if (size === 1) return [0, 0];
  const inset = Math.min(size * 2 ** -19, (length - 1) / 2);
  const first = start + inset;
  const last = start + length - 1 - inset;
  return [first / (size - 1), last / (size - 1)];
}

/**
 * Normalised `[y1, x1, y2, x2]` boxes for `tf.image.cropAndResize`, one per window. A
 * flipped window swaps x1 and x2, which makes cropAndResize sample it mirrored left-right.
 * @param windows `n` windows.
 * @param flip `n` flags (nonzero: mirror), or omitted for none.
 * @returns `[n * 4]` box coordinates.
 */
export function cropBoxes(
  windows: readonly CropWindow[],
  imageHeight: number,
  imageWidth: number,
  flip?: Uint8Array,
): Float32Array {
  const boxes = new Float32Array(windows.length * 4);
  windows.forEach((w, i) => {
    const [y1, y2] = axisBox(w.top, w.height, imageHeight);
    const [x1, x2] = axisBox(w.left, w.width, imageWidth);
    const mirrored = flip !== undefined && flip[i] !== 0;
    boxes.set(mirrored ? [y1, x2, y2, x1] : [y1, x1, y2, x2], i * 4);
  });
  return boxes;
}

/**
 * Decoding image files for `loadImageFolder` with sharp (libvips): the pixel pipeline of the
 * usual evaluation transform, from any JPEG/PNG/WebP to a `size x size` uint8 image, run
 * several files at a time with the failures collected.
 */
type SharpFn = typeof import('sharp').default;

/** A file that could not be decoded and was left out. */
export interface SkippedImage {
  /** The file's path. */
  path: string;
  /** The decoder's message, first line. */
  reason: string;
}

/** ITU-R 601 luma weights in 16-bit fixed point (they sum to 65536), as PIL's convert('L'). */
const LUMA_R = 19595;
const LUMA_G = 38470;
const LUMA_B = 7471;

/**
 * Decodes one file to `size * size * channels` bytes at `out[offset..]`: EXIF orientation
 * applied, alpha flattened onto black, sRGB, shorter side resized to `size` with a triangle
 * (bilinear, antialiased) filter, centre cropped; for one channel, the luma of the sRGB pixels.
 * @throws the decoder's error for a truncated, corrupt or unsupported file.
 */
async function decodeInto(
  sharp: SharpFn,
  path: string,
  size: number,
  channels: 1 | 3,
  out: Uint8Array,
  offset: number,
): Promise<void> {
  // failOn 'error' rejects truncated and corrupt data but, like PIL, accepts files libjpeg only
  // warns about (extraneous bytes before a marker).
  const { data, info } = await sharp(path, { failOn: 'error' })
    .rotate()
    .flatten({ background: '#000000' })
    .toColourspace('srgb')
    .resize(size, size, { fit: 'cover', position: 'centre', kernel: 'linear' })
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  const pixels = size * size;
  if (info.width !== size || info.height !== size || data.length !== pixels * 3) {
    throw new Error(
      `decoded to ${info.width}x${info.height}x${info.channels} (${data.length} bytes), ` +
        `expected ${size}x${size}x3`,
    );
  }
  if (channels === 3) {
    out.set(data, offset);
    return;
  }
  for (let p = 0; p < pixels; p++) {
    const r = data[3 * p]!;
    const g = data[3 * p + 1]!;
    const b = data[3 * p + 2]!;
    out[offset + p] = (LUMA_R * r + LUMA_G * g + LUMA_B * b + 0x8000) >> 16;
  }
}

export interface DecodeAllOptions {
  size: number;
  channels: 1 | 3;
  /** Decodes in flight at once. */
  workers: number;
  /** Failures tolerated; one more stops decoding. */
  maxBad: number;
  onWarning: (line: string) => void;
}

/** Files decoded between two pauses in which the chunk's failures are decoded again alone. */
const CHUNK = 256;

const reasonOf = (err: unknown): string => String((err as Error).message).split('\n')[0]!;

/**
 * Decodes `paths[i]` into `images` at `i * size * size * channels`, `workers` at a time, one
 * chunk of files after another. Each chunk's failures are then decoded again, one by one, and
 * only a second failure counts: libvips keeps one error message for all its threads, so a
 * decode running beside a failing one can leave it reading "Unknown error" (3 times in 10 for a
 * truncated JPEG decoded beside 7 other files, measured); alone, a file reports its own error, and a transient read failure
 * gets a second chance. Each bad file gets one warning line, until more than `maxBad` failed:
 * then decoding stops, and the failures not yet retried keep their first message, unwarned.
 * @returns for each path its failure or null, and how many paths were tried.
 */
export async function decodeAll(
  paths: readonly string[],
  images: Uint8Array,
  opts: DecodeAllOptions,
): Promise<{ failed: (SkippedImage | null)[]; tried: number }> {
  const { size, channels, workers, maxBad, onWarning } = opts;
  const sharp = (await import('sharp')).default;
  const pixels = size * size * channels;
  const decode = (i: number) => decodeInto(sharp, paths[i]!, size, channels, images, i * pixels);
  const failed: (SkippedImage | null)[] = new Array<null>(paths.length).fill(null);
  let bad = 0;
  let next = 0;
  while (next < paths.length && bad <= maxBad) {
    const end = Math.min(next + CHUNK, paths.length);
    const retry: number[] = [];
    const run = async (): Promise<void> => {
      while (next < end && bad + retry.length <= maxBad) {
        const i = next++;
        await decode(i).catch((err: unknown) => {
          failed[i] = { path: paths[i]!, reason: reasonOf(err) };
          retry.push(i);
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(workers, end - next) }, run));

    for (const i of retry.sort((a, b) => a - b)) {
      if (bad > maxBad) {
        bad++;
        continue;
      }
      try {
        await decode(i);
        failed[i] = null;
      } catch (err) {
        failed[i] = { path: paths[i]!, reason: reasonOf(err) };
        bad++;
        onWarning(`loadImageFolder: skipped ${paths[i]}: ${failed[i]!.reason}`);
      }
    }
  }
  return { failed, tried: next };
}

/**
 * Plain-JS, per-pixel reference versions of the colour operations and the blur, written
 * independently of the batched tensor code (a different HSV formulation, a 2-D kernel instead
 * of two 1-D passes) so the tests compare two ways of computing the same thing.
 */

/** One image: `h * w * c` floats, HWC. */
export interface RefImage {
  data: Float32Array;
  h: number;
  w: number;
  c: number;
}

const clamp = (v: number) => Math.min(1, Math.max(0, v));

function luma(img: RefImage, p: number): number {
  const d = img.data;
  return img.c === 1 ? d[p]! : 0.2989 * d[p]! + 0.587 * d[p + 1]! + 0.114 * d[p + 2]!;
}

function rgbToHsv(r: number, g: number, b: number): [number, number, number] {
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  if (max === min) return [0, 0, max];
  const s = (max - min) / max;
  const rc = (max - r) / (max - min);
  const gc = (max - g) / (max - min);
  const bc = (max - b) / (max - min);
  let h: number;
  if (r === max) h = bc - gc;
  else if (g === max) h = 2 + rc - bc;
  else h = 4 + gc - rc;
  h = (((h / 6) % 1) + 1) % 1;
  return [h, s, max];
}

function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  if (s === 0) return [v, v, v];
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - s * f);
  const t = v * (1 - s * (1 - f));
  switch (((i % 6) + 6) % 6) {
    case 0:
      return [v, t, p];
    case 1:
      return [q, v, p];
    case 2:
      return [p, v, t];
    case 3:
      return [p, q, v];
    case 4:
      return [t, p, v];
    default:
      return [v, p, q];
  }
}

/** Applies jitter op 0..3 (brightness, contrast, saturation, hue) with factor f. */
export function refJitterOp(img: RefImage, op: number, f: number): RefImage {
  const { h, w, c } = img;
  const out = new Float32Array(img.data.length);
  const pixels = h * w;
  let meanGray = 0;
  for (let p = 0; p < pixels; p++) meanGray += luma(img, p * c);
  meanGray /= pixels;
  for (let p = 0; p < pixels; p++) {
    const o = p * c;
    if (op === 3 && c === 3) {
      const [hh, s, v] = rgbToHsv(img.data[o]!, img.data[o + 1]!, img.data[o + 2]!);
      const rgb = hsvToRgb((((hh + f) % 1) + 1) % 1, s, v);
      for (let k = 0; k < 3; k++) out[o + k] = clamp(rgb[k]!);
      continue;
    }
    const gray = luma(img, o);
    for (let k = 0; k < c; k++) {
      const x = img.data[o + k]!;
      if (op === 0) out[o + k] = clamp(f * x);
      else if (op === 1) out[o + k] = clamp(f * x + (1 - f) * meanGray);
      else if (op === 2 && c === 3) out[o + k] = clamp(f * x + (1 - f) * gray);
      else out[o + k] = x;
    }
  }
  return { h, w, c, data: out };
}

/** Gaussian blur with a 2-D kernel of radius r and reflect padding. */
export function refBlur(img: RefImage, sigma: number, r: number): RefImage {
  const { h, w, c } = img;
  const reflect = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
  let total = 0;
  for (let dy = -r; dy <= r; dy++) {
    for (let dx = -r; dx <= r; dx++) total += Math.exp(-(dy * dy + dx * dx) / (2 * sigma * sigma));
  }
  const out = new Float32Array(img.data.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++) {
        let acc = 0;
        for (let dy = -r; dy <= r; dy++) {
          for (let dx = -r; dx <= r; dx++) {
            const wgt = Math.exp(-(dy * dy + dx * dx) / (2 * sigma * sigma)) / total;
            acc += wgt * img.data[(reflect(y + dy, h) * w + reflect(x + dx, w)) * c + k]!;
          }
        }
        out[(y * w + x) * c + k] = acc;
      }
    }
  }
  return { h, w, c, data: out };
}

/** Image `i` of an NHWC batch. */
export function imageOf(data: Float32Array, i: number, h: number, w: number, c: number): RefImage {
  return { h, w, c, data: data.slice(i * h * w * c, (i + 1) * h * w * c) };
}

/** Largest absolute difference. */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxDiff: lengths ${a.length} and ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

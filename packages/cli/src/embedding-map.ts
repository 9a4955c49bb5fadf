/**
 * The 2-D map of eval embeddings in the run report. At the end of a run a class-stratified
 * sample of at most 2000 test images is embedded with the final backbone and saved to
 * `eval-embeddings.safetensors`; the report lays those features out in 2-D.
 *
 * The layout: features are scaled to unit length (the kNN monitor compares them by cosine
 * similarity), reduced to 50 dimensions by PCA (randomised subspace iteration, then the
 * eigenvectors of the small projected covariance), then placed by exact t-SNE (L. van der
 * Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 2008,
 * https://jmlr.org/papers/v9/vandermaaten08a.html): Gaussian affinities of a given perplexity
 * in the input, a Student-t kernel on the map, gradient descent on their KL divergence with
 * early exaggeration, momentum and per-coordinate gains, started from the PCA plane (as
 * D. Kobak and P. Berens, "The art of using t-SNE for single-cell transcriptomics", 2019,
 * advise). Exact t-SNE costs O(n^2) per iteration, a few seconds at n = 2000. PCA's first two
 * components are the fallback map.
 */
import { type Encoder, readSafetensors, Rng, tf, writeSafetensors } from '@disco/core';
import type { ImageSet } from '@disco/data';
import { extractFeatures } from '@disco/eval';

/** The file of eval embeddings in a run folder. */
export const EVAL_EMBEDDINGS_FILE = 'eval-embeddings.safetensors';

/** At most this many test images are embedded for the map. */
export const MAX_MAP_POINTS = 2000;

/** Eval features with their classes, as saved at the end of a run. */
export interface EvalEmbeddings {
  /** Backbone features `[count, dim]`, row-major. */
  features: Float32Array;
  count: number;
  dim: number;
  /** Class index of each row, `[count]`. */
  labels: Int32Array;
  classNames: string[];
  /** Index of each row in the test split, `[count]`. */
  indices: Int32Array;
}

/**
 * Indices of at most `max` items with classes as even as the labels allow: a seeded shuffle,
 * then one item of each class in turn. Returned in increasing order.
 */
export function stratifiedSubset(labels: ArrayLike<number>, max: number, rng: Rng): Int32Array {
  const order = rng.permutation(labels.length);
  const byClass = new Map<number, number[]>();
  for (const i of order) {
    const c = labels[i]!;
    if (!byClass.has(c)) byClass.set(c, []);
    byClass.get(c)!.push(i);
  }
  const queues = [...byClass.keys()].sort((a, b) => a - b).map((c) => byClass.get(c)!);
  const picked: number[] = [];
  for (let round = 0; picked.length < max; round++) {
    let any = false;
    for (const q of queues) {
      if (round < q.length && picked.length < max) {
        picked.push(q[round]!);
        any = true;
      }
    }
    if (!any) break;
  }
  return Int32Array.from(picked.sort((a, b) => a - b));
}

/**
 * Embeds a stratified sample of `set` (at most `max`, default 2000 images) with `backbone`
 * in eval mode and writes the features, labels and test indices to `path` atomically (F16
 * features unless a value does not fit in F16). Returns the number of images kept.
 * @param backbone maps `[b, H, W, C]` preprocessed images to `[b, featureDim]`
 */
export async function saveEvalEmbeddings(
  path: string,
  backbone: Encoder,
  set: ImageSet,
  opts: { preprocess: (x: tf.Tensor4D) => tf.Tensor4D; seed: number; max?: number },
): Promise<number> {
  const picked = stratifiedSubset(
    set.labels,
    opts.max ?? MAX_MAP_POINTS,
    new Rng(opts.seed).fork('eval-embeddings'),
  );
  const pixels = set.height * set.width * set.channels;
  const images = new Uint8Array(picked.length * pixels);
  picked.forEach((src, row) =>
    images.set(set.images.subarray(src * pixels, (src + 1) * pixels), row * pixels),
  );
  const features = await extractFeatures(backbone, images, {
    count: picked.length,
    height: set.height,
    width: set.width,
    channels: set.channels,
    batchSize: 250,
    preprocess: opts.preprocess,
  });
  const fitsHalf = features.every((v) => Math.abs(v) < 65000);
  writeSafetensors(
    path,
    new Map([
      [
        'features',
        {
          shape: [picked.length, backbone.outDim],
          values: features,
          dtype: fitsHalf ? ('F16' as const) : ('F32' as const),
        },
      ],
      [
        'labels',
        { shape: [picked.length], values: Int32Array.from(picked, (i) => set.labels[i]!) },
      ],
      ['indices', { shape: [picked.length], values: picked }],
    ]),
    { format: 'disco-eval-embeddings/1', classNames: JSON.stringify(set.classNames) },
  );
  return picked.length;
}

/**
 * Reads a file written by `saveEvalEmbeddings`.
 * @throws naming the file and the tensor or field that is missing or wrong
 */
export function readEvalEmbeddings(path: string): EvalEmbeddings {
  const file = readSafetensors(path);
  const features = file.tensors.get('features');
  const labels = file.tensors.get('labels');
  if (!features || features.shape.length !== 2 || !(features.values instanceof Float32Array)) {
    throw new Error(
      `eval embeddings ${path}: tensor 'features' must be a float [count, dim] tensor, got ` +
        (features ? `${features.dtype} [${features.shape}]` : 'none'),
    );
  }
  const [count, dim] = features.shape as [number, number];
  if (!labels || labels.shape.length !== 1 || labels.shape[0] !== count) {
    throw new Error(
      `eval embeddings ${path}: tensor 'labels' must be [${count}], got ` +
        (labels ? `[${labels.shape}]` : 'none'),
    );
  }
  let classNames: unknown;
  try {
    classNames = JSON.parse(file.metadata.classNames ?? 'null');
  } catch {
    classNames = null;
  }
  if (!Array.isArray(classNames) || !classNames.every((c) => typeof c === 'string')) {
    throw new Error(
      `eval embeddings ${path}: metadata field 'classNames' must be a JSON array of strings, ` +
        `got ${JSON.stringify(file.metadata.classNames)}`,
    );
  }
  const labelValues = Int32Array.from(labels.values);
  const bad = labelValues.findIndex((c) => c < 0 || c >= classNames.length);
  if (bad >= 0) {
    throw new Error(
      `eval embeddings ${path}: label of row ${bad} is ${labelValues[bad]}, outside ` +
        `[0, ${classNames.length}) (the classNames)`,
    );
  }
  const indices = file.tensors.get('indices');
  return {
    features: features.values,
    count,
    dim,
    labels: labelValues,
    classNames,
    indices: indices
      ? Int32Array.from(indices.values)
      : Int32Array.from({ length: count }, (_, i) => i),
  };
}

/**
 * Eigenvalues and eigenvectors of a symmetric `[m, m]` matrix (cyclic Jacobi rotations),
 * sorted by decreasing eigenvalue. `vectors` holds eigenvector `c` in column `c`, row-major.
 */
export function symmetricEigen(
  matrix: ArrayLike<number>,
  m: number,
): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(m * m);
  for (let i = 0; i < m; i++) v[i * m + i] = 1;
  let scaleSq = 0;
  for (let i = 0; i < m * m; i++) scaleSq += a[i]! * a[i]!;
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < m; p++) for (let q = p + 1; q < m; q++) off += a[p * m + q]! ** 2;
    if (off <= 1e-24 * scaleSq) break;
    for (let p = 0; p < m; p++) {
      for (let q = p + 1; q < m; q++) {
        const apq = a[p * m + q]!;
        if (apq === 0) continue;
        // The rotation that zeroes a[p][q]: t = tan(angle), the smaller root of
        // t^2 + 2 tau t - 1 = 0.
        const tau = (a[q * m + q]! - a[p * m + p]!) / (2 * apq);
        const t = (tau >= 0 ? 1 : -1) / (Math.abs(tau) + Math.sqrt(1 + tau * tau));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = t * c;
        for (let k = 0; k < m; k++) {
          const akp = a[k * m + p]!;
          const akq = a[k * m + q]!;
          a[k * m + p] = c * akp - s * akq;
          a[k * m + q] = s * akp + c * akq;
        }
        for (let k = 0; k < m; k++) {
          const apk = a[p * m + k]!;
          const aqk = a[q * m + k]!;
          a[p * m + k] = c * apk - s * aqk;
          a[q * m + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < m; k++) {
          const vkp = v[k * m + p]!;
          const vkq = v[k * m + q]!;
          v[k * m + p] = c * vkp - s * vkq;
          v[k * m + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: m }, (_, i) => i).sort(
    (i, j) => a[j * m + j]! - a[i * m + i]!,
  );
  const values = Float64Array.from(order, (i) => a[i * m + i]!);
  const vectors = new Float64Array(m * m);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < m; c++) vectors[r * m + c] = v[r * m + order[c]!]!;
  }
  return { values, vectors };
}

/** Principal components of a data matrix. */
export interface PcaResult {
  /** Coordinates of each row on the first `k` components, `[n, k]`, row-major. */
  scores: Float64Array;
  k: number;
  /** Variance along each component (divisor n - 1), `[k]`, decreasing. */
  variances: Float64Array;
  /** Sum of the variances of all `d` input dimensions. */
  totalVariance: number;
}

/** Orthonormalises the `cols` columns of length `d` of `q` (column-major), in place. */
function orthonormalise(q: Float64Array, d: number, cols: number): void {
  for (let c = 0; c < cols; c++) {
    const col = q.subarray(c * d, (c + 1) * d);
    for (let pass = 0; pass < 2; pass++) {
      for (let b = 0; b < c; b++) {
        const prev = q.subarray(b * d, (b + 1) * d);
        let dot = 0;
        for (let j = 0; j < d; j++) dot += col[j]! * prev[j]!;
        for (let j = 0; j < d; j++) col[j]! -= dot * prev[j]!;
      }
    }
    let norm = 0;
    for (let j = 0; j < d; j++) norm += col[j]! * col[j]!;
    norm = Math.sqrt(norm) || 1;
    for (let j = 0; j < d; j++) col[j]! /= norm;
  }
}

/**
 * The first `k` principal components of `data` (`[n, d]`, row-major). With `d` larger than
 * `k + 10`, the top subspace (k + 10 directions) is found by subspace iteration from a seeded
 * random start (`iterations` rounds of multiplying by XᵀX, default 2), and the components
 * are the eigenvectors of the covariance projected onto it; otherwise the covariance is
 * decomposed whole.
 */
export function pca(
  data: ArrayLike<number>,
  n: number,
  d: number,
  k: number,
  opts: { seed?: number; iterations?: number } = {},
): PcaResult {
  if (data.length !== n * d) {
    throw new Error(
      `pca: data must hold n x d = ${n} x ${d} = ${n * d} values, got ${data.length}`,
    );
  }
  if (n < 2) throw new Error(`pca: needs at least 2 rows, got ${n}`);
  k = Math.min(k, d, n);

  // Centre the columns: x [n, d].
  const x = Float64Array.from(data);
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j]! += x[i * d + j]! / n;
  let total = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const v = (x[i * d + j]! -= mean[j]!);
      total += v * v;
    }
  }
  const denom = n - 1;

  // q [d, l] column-major: an orthonormal basis of the subspace to decompose in.
  const l = Math.min(d, k + 10);
  const q = new Float64Array(d * l);
  if (l === d) {
    for (let c = 0; c < d; c++) q[c * d + c] = 1;
  } else {
    const rng = new Rng(opts.seed ?? 0).fork('pca');
    for (let i = 0; i < q.length; i++) q[i] = rng.normal();
    orthonormalise(q, d, l);
  }
  const y = new Float64Array(n * l); // x q [n, l]
  const project = () => {
    for (let i = 0; i < n; i++) {
      const row = x.subarray(i * d, (i + 1) * d);
      for (let c = 0; c < l; c++) {
        const col = q.subarray(c * d, (c + 1) * d);
        let s = 0;
        for (let j = 0; j < d; j++) s += row[j]! * col[j]!;
        y[i * l + c] = s;
      }
    }
  };
  const rounds = l === d ? 0 : (opts.iterations ?? 2);
  for (let it = 0; it < rounds; it++) {
    project();
    q.fill(0); // q = xᵀ y [d, l], then orthonormalised
    for (let i = 0; i < n; i++) {
      const row = x.subarray(i * d, (i + 1) * d);
      for (let c = 0; c < l; c++) {
        const w = y[i * l + c]!;
        const col = q.subarray(c * d, (c + 1) * d);
        for (let j = 0; j < d; j++) col[j]! += w * row[j]!;
      }
    }
    orthonormalise(q, d, l);
  }
  project();

  // The covariance inside the subspace, b = yᵀ y / (n - 1) [l, l], and its eigenvectors.
  const b = new Float64Array(l * l);
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < l; r++) {
      const yr = y[i * l + r]!;
      for (let c = r; c < l; c++) b[r * l + c]! += (yr * y[i * l + c]!) / denom;
    }
  }
  for (let r = 0; r < l; r++) for (let c = 0; c < r; c++) b[r * l + c] = b[c * l + r]!;
  const eig = symmetricEigen(b, l);
  const scores = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let r = 0; r < l; r++) s += y[i * l + r]! * eig.vectors[r * l + c]!;
      scores[i * k + c] = s;
    }
  }
  return {
    scores,
    k,
    variances: eig.values.slice(0, k).map((v) => Math.max(0, v)),
    totalVariance: total / denom,
  };
}

/**
 * The precision `beta` of the Gaussian over one point's neighbours at which the perplexity
 * `exp(H)` of `p_j = exp(-beta d_j) / sum` equals `perplexity` (bisection on beta), with the
 * probabilities written to `out`.
 * @param dist squared distances to the other points (the point itself left out)
 */
export function perplexityRow(dist: Float64Array, perplexity: number, out: Float64Array): number {
  const target = Math.log(perplexity);
  let dmin = Infinity;
  for (const v of dist) if (v < dmin) dmin = v;
  let lo = 0;
  let hi = Infinity;
  let beta = 1;
  for (let it = 0; it < 100; it++) {
    // Shifting by the smallest distance changes no p_j and keeps exp() from underflowing.
    let sum = 0;
    let weighted = 0;
    for (let j = 0; j < dist.length; j++) {
      const e = Math.exp(-beta * (dist[j]! - dmin));
      out[j] = e;
      sum += e;
      weighted += e * (dist[j]! - dmin);
    }
    const entropy = Math.log(sum) + (beta * weighted) / sum;
    for (let j = 0; j < dist.length; j++) out[j]! /= sum;
    if (Math.abs(entropy - target) < 1e-6) break;
    if (entropy > target) {
      lo = beta;
      beta = hi === Infinity ? beta * 2 : (beta + hi) / 2;
    } else {
      hi = beta;
      beta = (beta + lo) / 2;
    }
  }
  return beta;
}

/** Settings of `tsne`. */
export interface TsneOptions {
  /** Effective number of neighbours (default 30, at most (n - 1) / 3). */
  perplexity?: number;
  /** Gradient steps in all (default 400). */
  iterations?: number;
  /** Factor on the input affinities during the first steps (default 12). */
  exaggeration?: number;
  /** Steps with exaggeration and momentum 0.5 (default 100, or a quarter of the steps if fewer). */
  exaggerationIterations?: number;
  /** Step size (default max(n / exaggeration, 50)). */
  learningRate?: number;
  /** Start of the map, `[n, 2]`; default: seeded N(0, 1e-4²). */
  init?: Float64Array;
  seed?: number;
}

/**
 * The symmetric input affinities of t-SNE as a sparse matrix (CSR): for each point the
 * Gaussian over its `3 * perplexity` nearest neighbours (squared Euclidean distance), of the
 * given perplexity; then `p_ij = (p_{j|i} + p_{i|j}) / 2n`, which sums to 1. Farther
 * neighbours would get weights below about 1e-5 of the nearest and are left out, as in
 * L. van der Maaten, "Accelerating t-SNE using Tree-Based Algorithms", JMLR 2014.
 */
export function tsneAffinities(
  data: ArrayLike<number>,
  n: number,
  d: number,
  perplexity: number,
): { rowStart: Int32Array; cols: Int32Array; values: Float64Array } {
  const k = Math.min(n - 1, Math.ceil(3 * perplexity));
  // Squared distances [n, n], each pair computed once.
  const dist = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) {
        const diff = data[i * d + c]! - data[j * d + c]!;
        s += diff * diff;
      }
      dist[i * n + j] = s;
      dist[j * n + i] = s;
    }
  }
  const rows = Array.from({ length: n }, () => new Map<number, number>());
  const near = new Float64Array(k); // the k smallest squared distances so far, increasing
  const nearIndex = new Int32Array(k);
  const p = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    near.fill(Infinity);
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const s = dist[i * n + j]!;
      if (s >= near[k - 1]!) continue;
      let r = k - 1;
      for (; r > 0 && near[r - 1]! > s; r--) {
        near[r] = near[r - 1]!;
        nearIndex[r] = nearIndex[r - 1]!;
      }
      near[r] = s;
      nearIndex[r] = j;
    }
    perplexityRow(near, perplexity, p);
    for (let r = 0; r < k; r++) {
      const j = nearIndex[r]!;
      const v = p[r]! / (2 * n);
      rows[i]!.set(j, (rows[i]!.get(j) ?? 0) + v);
      rows[j]!.set(i, (rows[j]!.get(i) ?? 0) + v);
    }
  }
  const rowStart = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) rowStart[i + 1] = rowStart[i]! + rows[i]!.size;
  const cols = new Int32Array(rowStart[n]!);
  const values = new Float64Array(rowStart[n]!);
  for (let i = 0; i < n; i++) {
    let e = rowStart[i]!;
    for (const [j, v] of rows[i]!) {
      cols[e] = j;
      values[e++] = v;
    }
  }
  return { rowStart, cols, values };
}

/**
 * t-SNE of `data` (`[n, d]`, row-major) into 2-D: input affinities from `tsneAffinities`,
 * the exact gradient on the map (every pair's repulsion, O(n^2) per step). Returns the map
 * `[n, 2]`, row-major, centred on the origin.
 */
export function tsne(
  data: ArrayLike<number>,
  n: number,
  d: number,
  opts: TsneOptions = {},
): Float64Array {
  if (data.length !== n * d) {
    throw new Error(
      `tsne: data must hold n x d = ${n} x ${d} = ${n * d} values, got ${data.length}`,
    );
  }
  if (n < 4) throw new Error(`tsne: needs at least 4 points, got ${n}`);
  const perplexity = Math.min(opts.perplexity ?? 30, (n - 1) / 3);
  const iterations = opts.iterations ?? 400;
  const exaggeration = opts.exaggeration ?? 12;
  const exaggerated = opts.exaggerationIterations ?? Math.min(100, Math.floor(iterations / 4));
  const lr = opts.learningRate ?? Math.max(n / exaggeration, 50);
  const { rowStart, cols, values: p } = tsneAffinities(data, n, d, perplexity);

  // The map as two coordinate arrays, its velocity and per-coordinate gains.
  const xs = new Float64Array(n);
  const ys = new Float64Array(n);
  if (opts.init) {
    if (opts.init.length !== 2 * n) {
      throw new Error(`tsne: init must hold n x 2 = ${2 * n} values, got ${opts.init.length}`);
    }
    for (let i = 0; i < n; i++) [xs[i], ys[i]] = [opts.init[2 * i]!, opts.init[2 * i + 1]!];
  } else {
    const rng = new Rng(opts.seed ?? 0).fork('tsne');
    for (let i = 0; i < n; i++) [xs[i], ys[i]] = [1e-4 * rng.normal(), 1e-4 * rng.normal()];
  }
  const coords = [xs, ys] as const;
  const velocity = [new Float64Array(n), new Float64Array(n)] as const;
  const gains = [new Float64Array(n).fill(1), new Float64Array(n).fill(1)] as const;
  const repel = [new Float64Array(n), new Float64Array(n)] as const;
  const attract = [new Float64Array(n), new Float64Array(n)] as const;

  for (let it = 0; it < iterations; it++) {
    const exag = it < exaggerated ? exaggeration : 1;
    const momentum = it < exaggerated ? 0.5 : 0.8;

    // The gradient is 4 sum_j (p_ij - q_ij) w_ij (y_i - y_j), w_ij = 1 / (1 + |y_i - y_j|^2),
    // q_ij = w_ij / Z. Repulsion: sum_j w_ij^2 (y_i - y_j) over all pairs, each visited once,
    // with Z; it is divided by Z at the end.
    const [rx, ry] = repel;
    rx.fill(0);
    ry.fill(0);
    let z = 0;
    for (let i = 0; i < n; i++) {
      const xi = xs[i]!;
      const yi = ys[i]!;
      let fx = 0;
      let fy = 0;
      for (let j = i + 1; j < n; j++) {
        const dx = xi - xs[j]!;
        const dy = yi - ys[j]!;
        const w = 1 / (1 + dx * dx + dy * dy);
        z += w;
        const ww = w * w;
        fx += ww * dx;
        fy += ww * dy;
        rx[j]! -= ww * dx;
        ry[j]! -= ww * dy;
      }
      rx[i]! += fx;
      ry[i]! += fy;
    }
    z *= 2; // Z sums over ordered pairs

    // Attraction: sum_j p_ij w_ij (y_i - y_j) over the sparse neighbours.
    const [axs, ays] = attract;
    for (let i = 0; i < n; i++) {
      let fx = 0;
      let fy = 0;
      for (let e = rowStart[i]!; e < rowStart[i + 1]!; e++) {
        const j = cols[e]!;
        const dx = xs[i]! - xs[j]!;
        const dy = ys[i]! - ys[j]!;
        const pw = p[e]! / (1 + dx * dx + dy * dy);
        fx += pw * dx;
        fy += pw * dy;
      }
      axs[i] = fx;
      ays[i] = fy;
    }

    // Step: a coordinate's gain grows while its gradient opposes its velocity and shrinks
    // once they agree; then momentum, and the map is re-centred.
    for (let a = 0; a < 2; a++) {
      const y = coords[a];
      const v = velocity[a];
      const gain = gains[a];
      let mean = 0;
      for (let i = 0; i < n; i++) {
        const g = 4 * (exag * attract[a][i]! - repel[a][i]! / z);
        gain[i] = g > 0 !== v[i]! > 0 ? gain[i]! + 0.2 : Math.max(0.01, gain[i]! * 0.8);
        v[i] = momentum * v[i]! - lr * gain[i]! * g;
        y[i]! += v[i]!;
        mean += y[i]!;
      }
      mean /= n;
      for (let i = 0; i < n; i++) y[i]! -= mean;
    }
  }
  const out = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) [out[2 * i], out[2 * i + 1]] = [xs[i]!, ys[i]!];
  return out;
}

/** A 2-D layout of embeddings and how it was made. */
export interface EmbeddingMap {
  /** `[n, 2]`, row-major. */
  coords: Float64Array;
  method: 'tsne' | 'pca';
  /** One sentence for the reader: method, settings, variance kept. */
  description: string;
}

/**
 * Lays out `features` (`[n, d]`, row-major) in 2-D: unit-length rows, PCA to 50 dimensions,
 * t-SNE started from the PCA plane; `method: 'pca'` (or fewer than 10 points) gives the PCA
 * plane itself.
 */
export function embeddingMap(
  features: ArrayLike<number>,
  n: number,
  d: number,
  opts: { method?: 'tsne' | 'pca'; seed?: number; perplexity?: number; iterations?: number } = {},
): EmbeddingMap {
  const unit = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let j = 0; j < d; j++) norm += features[i * d + j]! ** 2;
    norm = Math.sqrt(norm) || 1;
    for (let j = 0; j < d; j++) unit[i * d + j] = features[i * d + j]! / norm;
  }
  const reduced = pca(unit, n, d, Math.min(50, d), { seed: opts.seed ?? 0, iterations: 1 });
  const k = reduced.k;
  const plane = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    plane[2 * i] = reduced.scores[i * k]!;
    plane[2 * i + 1] = k > 1 ? reduced.scores[i * k + 1]! : 0;
  }
  const share = (m: number) => {
    const kept = reduced.variances.slice(0, m).reduce((s, v) => s + v, 0);
    return `${((100 * kept) / (reduced.totalVariance || 1)).toFixed(0)}%`;
  };
  if (opts.method === 'pca' || n < 10) {
    return {
      coords: plane,
      method: 'pca',
      description:
        `PCA: the first two principal components (${share(2)} of the variance) of the ` +
        'unit-length features',
    };
  }

  // t-SNE from the PCA plane scaled to a standard deviation of 1e-4 on its first axis.
  let sd = 0;
  for (let i = 0; i < n; i++) sd += plane[2 * i]! ** 2 / n;
  sd = Math.sqrt(sd) || 1;
  const init = plane.map((v) => (v / sd) * 1e-4);
  const iterations = opts.iterations ?? 400;
  const perplexity = Math.min(opts.perplexity ?? 30, (n - 1) / 3);
  const coords = tsne(reduced.scores, n, k, { perplexity, iterations, init, seed: opts.seed });
  return {
    coords,
    method: 'tsne',
    description:
      `t-SNE (exact, perplexity ${Number(perplexity.toFixed(1))}, ${iterations} iterations) of ` +
      `the first ${k} principal components (${share(k)} of the variance) of the unit-length ` +
      'features',
  };
}

/**
 * Leave-one-out accuracy of a k-nearest-neighbour vote on a 2-D map (`[n, 2]`): how well the
 * map keeps the classes apart. A tie goes to the class of the nearer neighbours.
 */
export function mapKnnAccuracy(
  coords: ArrayLike<number>,
  labels: ArrayLike<number>,
  k = 5,
): number {
  const n = labels.length;
  if (n < 2) return NaN;
  k = Math.min(k, n - 1);
  let correct = 0;
  // The k nearest so far, nearest first: squared distances and indices.
  const nearD = new Float64Array(k);
  const nearI = new Int32Array(k);
  for (let i = 0; i < n; i++) {
    nearD.fill(Infinity);
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const dx = coords[2 * i]! - coords[2 * j]!;
      const dy = coords[2 * i + 1]! - coords[2 * j + 1]!;
      const dj = dx * dx + dy * dy;
      if (dj >= nearD[k - 1]!) continue;
      let r = k - 1;
      for (; r > 0 && nearD[r - 1]! > dj; r--) {
        nearD[r] = nearD[r - 1]!;
        nearI[r] = nearI[r - 1]!;
      }
      nearD[r] = dj;
      nearI[r] = j;
    }
    const votes = new Map<number, number>();
    let best = labels[nearI[0]!]!;
    for (let r = 0; r < k; r++) {
      const c = labels[nearI[r]!]!;
      votes.set(c, (votes.get(c) ?? 0) + 1);
      if (votes.get(c)! > votes.get(best)!) best = c;
    }
    if (best === labels[i]) correct++;
  }
  return correct / n;
}

/* global tf, document, location, fetch, Image, URLSearchParams, performance */
/**
 * The DisCo.js student in a web page: loads a model written by `disco export --format tfjs`
 * with stock TensorFlow.js (`tf.loadLayersModel`), preprocesses an image as training did (the
 * input size, channels and normalisation come from the export's `disco.json`), and prints the
 * prediction into `<pre id="result">` as JSON.
 *
 * Query parameters: `model` (the export folder, default `model/`), `image` (default
 * `sample.png`, a Fashion-MNIST test image), `backend` (a tfjs backend such as `cpu` or
 * `webgl`; default: tfjs's own choice).
 */

/** ITU-R 601 luma weights in 16-bit fixed point, the grayscale conversion of @disco/data. */
const LUMA = [19595, 38470, 7471];

/** Top classes listed in the result. */
const TOP = 3;

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load the image ${url}`));
    img.src = url;
  });
}

async function fetchJson(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

/**
 * RGBA bytes of `img` at `height x width`: scaled so that it covers the input and
 * centre-cropped, like training's image-folder decoding. An image of the input's size is
 * drawn 1:1, its pixels unchanged; another size goes through the canvas's resampling, close
 * to but not bit-equal with training's.
 */
function pixels(img, height, width) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const scale = Math.max(width / img.naturalWidth, height / img.naturalHeight);
  const w = img.naturalWidth * scale;
  const h = img.naturalHeight * scale;
  ctx.drawImage(img, (width - w) / 2, (height - h) / 2, w, h);
  return ctx.getImageData(0, 0, width, height).data;
}

/**
 * The model input `[1, height, width, channels]`: alpha flattened onto black, the luma for
 * one-channel models, pixels / 255, then `(x - mean) / std` per channel.
 */
function toInput(rgba, card) {
  const [height, width, channels] = card.input;
  const x = new Float32Array(height * width * channels);
  for (let p = 0; p < height * width; p++) {
    const alpha = rgba[4 * p + 3];
    const rgb = [0, 1, 2].map((k) => Math.round((rgba[4 * p + k] * alpha) / 255));
    if (channels === 1) {
      const luma = (LUMA[0] * rgb[0] + LUMA[1] * rgb[1] + LUMA[2] * rgb[2] + 0x8000) >> 16;
      x[p] = (luma / 255 - card.mean[0]) / card.std[0];
    } else {
      for (let k = 0; k < 3; k++) x[3 * p + k] = (rgb[k] / 255 - card.mean[k]) / card.std[k];
    }
  }
  return tf.tensor4d(x, [1, height, width, channels]);
}

function describe(values, card) {
  if (card.output !== 'probabilities') {
    return { summary: `feature [${values.length}]`, feature: values };
  }
  const name = (i) => (card.classNames ? card.classNames[i] : `class ${i}`);
  const ranked = values
    .map((p, i) => ({ index: i, name: name(i), probability: p }))
    .sort((a, b) => b.probability - a.probability);
  const best = ranked[0];
  return {
    summary: `${best.name} (${(100 * best.probability).toFixed(1)}%)`,
    predicted: best.index,
    top: ranked.slice(0, TOP),
    probabilities: values,
  };
}

async function main() {
  const query = new URLSearchParams(location.search);
  let modelDir = query.get('model') ?? 'model/';
  if (!modelDir.endsWith('/')) modelDir += '/';
  const imageUrl = query.get('image') ?? 'sample.png';
  if (query.get('backend')) await tf.setBackend(query.get('backend'));
  await tf.ready();

  const card = await fetchJson(`${modelDir}disco.json`);
  const model = await tf.loadLayersModel(`${modelDir}model.json`);
  const img = await loadImage(imageUrl);
  document.getElementById('image').src = imageUrl;

  const start = performance.now();
  const x = toInput(pixels(img, card.input[0], card.input[1]), card);
  const y = model.predict(x);
  // One small synchronous readback: under headless Chromium's virtual time the asynchronous
  // `data()` of the webgl backend did not complete before the page was dumped.
  const values = Array.from(y.dataSync());
  const ms = performance.now() - start;
  tf.dispose([x, y]);

  const { summary, ...out } = describe(values, card);
  document.getElementById('summary').textContent = `${card.arch}: ${summary}`;
  return {
    arch: card.arch,
    backend: tf.getBackend(),
    tfjs: tf.version.tfjs,
    image: imageUrl,
    input: card.input,
    output: card.output,
    ms: Math.round(ms),
    ...out,
  };
}

main()
  .then((result) => {
    document.getElementById('result').textContent = JSON.stringify(result);
  })
  .catch((err) => {
    document.getElementById('summary').textContent = `error: ${err.message}`;
    document.getElementById('result').textContent = JSON.stringify({ error: String(err) });
  })
  .finally(() => {
    document.body.dataset.status = 'done';
  });

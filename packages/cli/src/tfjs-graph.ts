/**
 * A writer for the TensorFlow.js Layers model format, the one `tf.loadLayersModel` reads: a
 * `model.json` holding a Keras functional-model topology (each layer's class, config and
 * inbound nodes) and a weights manifest, plus the weights as one little-endian float32 file.
 * Only layer classes that stock `@tensorflow/tfjs` registers are written, so a page needs
 * nothing but the library to run the model.
 *
 * The graph is built from plain data (no tfjs here): each method appends one Keras layer and
 * returns its output as a symbolic `Node` whose shape (batch excluded, NHWC) is computed as the
 * layer computes it, so a wiring mistake fails here, naming the layer, not when a page loads.
 */

/** A symbolic tensor: the layer that produces it and its shape without the batch axis. */
export interface Node {
  readonly layer: string;
  readonly shape: readonly number[];
}

/** A weight handed to a layer: its values in tfjs (Keras) layout. */
export interface WeightValues {
  shape: readonly number[];
  values: Float32Array;
}

/** The two files of a Layers model, ready to write or to hand to `tf.io.fromMemory`. */
export interface LayersArtifacts {
  /** The content of `model.json`. */
  modelJson: {
    /** The model format `tf.loadLayersModel` expects. */
    format: 'layers-model';
    /** The writer, for a reader of the file. */
    generatedBy: string;
    /** Always null: written directly, not by the Python converter. */
    convertedBy: null;
    /** The Keras functional model: its layers, inbound nodes, inputs and output. */
    modelTopology: Record<string, unknown>;
    /** The weight groups, here one: its shard's path and the weights the shard holds. */
    weightsManifest: {
      /** The shard's file name, relative to `model.json`. */
      paths: string[];
      /** Each weight's name, shape and dtype, in the order of its bytes in the shard. */
      weights: WeightSpec[];
    }[];
  };
  /** The content of the one weight shard the manifest names. */
  weightData: Uint8Array;
}

/** One entry of the weights manifest. */
export interface WeightSpec {
  /** `<layer>/<weight>`, e.g. `conv1/kernel`. */
  name: string;
  /** Its shape in the tfjs (Keras) layout. */
  shape: number[];
  /** Always float32, little-endian. */
  dtype: 'float32';
}

interface KerasLayer {
  class_name: string;
  name: string;
  config: Record<string, unknown>;
  inbound_nodes: [string, number, number, Record<string, never>][][];
}

/** The activations tfjs's `Activation` layer knows under these names. */
export type KerasActivation = 'linear' | 'relu' | 'sigmoid' | 'swish' | 'softmax';

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Output side of a 'valid' window of `k` at `stride` over `n` inputs, at least 1. */
function validOut(layer: string, n: number, k: number, stride: number): number {
  const out = Math.floor((n - k) / stride) + 1;
  if (out < 1) {
    throw new Error(
      `LayersGraph '${layer}': a ${k}x${k} window does not fit a ${n}-pixel side; the input ` +
        `is too small for this network`,
    );
  }
  return out;
}

/**
 * A Keras functional model under construction. Layer names must be unique; the exporters use
 * torchvision's parameter prefixes (`layer1.0.conv1`), so a weight in `model.json` is named
 * `layer1.0.conv1/kernel` and can be traced back to the checkpoint.
 */
export class LayersGraph {
  private readonly layers: KerasLayer[] = [];
  private readonly weights: (WeightSpec & { values: Float32Array })[] = [];
  private readonly inputs: Node[] = [];

  /** The model input, `[batch, ...shape]` float32. */
  input(name: string, shape: readonly number[]): Node {
    this.push('InputLayer', name, { batch_input_shape: [null, ...shape], dtype: 'float32' }, []);
    const node = { layer: name, shape: [...shape] };
    this.inputs.push(node);
    return node;
  }

  /**
   * A 2-D convolution `[h, w, c] -> [h', w', filters]`, kernel `[kh, kw, c, filters]` (plain)
   * or `[kh, kw, c, 1]` (depthwise, tfjs's `DepthwiseConv2D`). `padding` is 'valid' or 'same'
   * at stride 1 with an odd kernel, where both frameworks pad `(k - 1) / 2` on each side.
   */
  conv2d(
    name: string,
    x: Node,
    opts: {
      kernel: WeightValues;
      bias?: WeightValues;
      stride: number;
      padding: 'valid' | 'same';
      depthwise: boolean;
    },
  ): Node {
    const [kh, kw, cin, cout] = opts.kernel.shape as [number, number, number, number];
    const [h, w, c] = this.spatial(name, x);
    if (cin !== c || (opts.depthwise && cout !== 1)) {
      throw new Error(
        `LayersGraph.conv2d '${name}': kernel [${opts.kernel.shape}] does not fit an input of ` +
          `${c} channels${opts.depthwise ? ' (depthwise kernels are [kh, kw, channels, 1])' : ''}`,
      );
    }
    if (opts.padding === 'same' && (opts.stride !== 1 || kh % 2 === 0 || kw % 2 === 0)) {
      throw new Error(
        `LayersGraph.conv2d '${name}': 'same' padding is symmetric only at stride 1 with an odd ` +
          `kernel, got stride ${opts.stride} and kernel ${kh}x${kw}; pad explicitly`,
      );
    }
    const filters = opts.depthwise ? c : cout;
    const config: Record<string, unknown> = {
      kernel_size: [kh, kw],
      strides: [opts.stride, opts.stride],
      padding: opts.padding,
      use_bias: opts.bias !== undefined,
      ...(opts.depthwise ? { depth_multiplier: 1 } : { filters }),
    };
    const weights: [string, WeightValues][] = [
      [opts.depthwise ? 'depthwise_kernel' : 'kernel', opts.kernel],
    ];
    if (opts.bias) weights.push(['bias', this.vector(name, opts.bias, filters)]);
    this.push(opts.depthwise ? 'DepthwiseConv2D' : 'Conv2D', name, config, [x], weights);
    const out =
      opts.padding === 'same'
        ? [h, w, filters]
        : [validOut(name, h, kh, opts.stride), validOut(name, w, kw, opts.stride), filters];
    return { layer: name, shape: out };
  }

  /** Zero padding of `pad` on each side of both spatial axes. */
  zeroPad(name: string, x: Node, pad: number): Node {
    const [h, w, c] = this.spatial(name, x);
    this.push(
      'ZeroPadding2D',
      name,
      {
        padding: [
          [pad, pad],
          [pad, pad],
        ],
      },
      [x],
    );
    return { layer: name, shape: [h + 2 * pad, w + 2 * pad, c] };
  }

  /** Max pooling over `k x k` windows, 'valid' (pad explicitly before it). */
  maxPool(name: string, x: Node, k: number, stride: number): Node {
    const [h, w, c] = this.spatial(name, x);
    const config = { pool_size: [k, k], strides: [stride, stride], padding: 'valid' };
    this.push('MaxPooling2D', name, config, [x]);
    return { layer: name, shape: [validOut(name, h, k, stride), validOut(name, w, k, stride), c] };
  }

  /**
   * Inference-mode batch normalisation over the last axis with running statistics:
   * `(x - mean) / sqrt(variance + epsilon) * gamma + beta`.
   */
  batchNorm(
    name: string,
    x: Node,
    bn: {
      gamma: WeightValues;
      beta: WeightValues;
      mean: WeightValues;
      variance: WeightValues;
      epsilon: number;
    },
  ): Node {
    const c = x.shape[x.shape.length - 1]!;
    this.push(
      'BatchNormalization',
      name,
      { axis: -1, epsilon: bn.epsilon },
      [x],
      [
        ['gamma', this.vector(name, bn.gamma, c)],
        ['beta', this.vector(name, bn.beta, c)],
        ['moving_mean', this.vector(name, bn.mean, c)],
        ['moving_variance', this.vector(name, bn.variance, c)],
      ],
    );
    return { layer: name, shape: x.shape };
  }

  /** `min(max(x, 0), maxValue)` (no cap when `maxValue` is absent). */
  relu(name: string, x: Node, maxValue?: number): Node {
    this.push('ReLU', name, maxValue === undefined ? {} : { max_value: maxValue }, [x]);
    return { layer: name, shape: x.shape };
  }

  /** `x * scale + offset`, elementwise (tfjs's `Rescaling`). */
  rescale(name: string, x: Node, scale: number, offset: number): Node {
    this.push('Rescaling', name, { scale, offset }, [x]);
    return { layer: name, shape: x.shape };
  }

  /** One of tfjs's named activations (`swish` is `x * sigmoid(x)`, PyTorch's SiLU). */
  activation(name: string, x: Node, activation: KerasActivation): Node {
    this.push('Activation', name, { activation }, [x]);
    return { layer: name, shape: x.shape };
  }

  /** Elementwise sum of equal shapes. */
  add(name: string, a: Node, b: Node): Node {
    if (a.shape.join() !== b.shape.join()) {
      throw new Error(`LayersGraph.add '${name}': shapes [${a.shape}] and [${b.shape}] differ`);
    }
    this.push('Add', name, {}, [a, b]);
    return { layer: name, shape: a.shape };
  }

  /** Elementwise product; `b` may have size 1 on an axis of `a` (an SE gate `[1, 1, c]`). */
  multiply(name: string, a: Node, b: Node): Node {
    const fits =
      a.shape.length === b.shape.length && b.shape.every((d, i) => d === 1 || d === a.shape[i]);
    if (!fits) {
      throw new Error(
        `LayersGraph.multiply '${name}': [${b.shape}] does not broadcast onto [${a.shape}]`,
      );
    }
    this.push('Multiply', name, {}, [a, b]);
    return { layer: name, shape: a.shape };
  }

  /** The mean over both spatial axes, `[h, w, c] -> [c]`. */
  globalAvgPool(name: string, x: Node): Node {
    const c = this.spatial(name, x)[2];
    this.push('GlobalAveragePooling2D', name, {}, [x]);
    return { layer: name, shape: [c] };
  }

  /** The same values under another shape (batch axis untouched). */
  reshape(name: string, x: Node, shape: readonly number[]): Node {
    if (size(shape) !== size(x.shape)) {
      throw new Error(`LayersGraph.reshape '${name}': [${x.shape}] cannot become [${shape}]`);
    }
    this.push('Reshape', name, { target_shape: [...shape] }, [x]);
    return { layer: name, shape: [...shape] };
  }

  /** A fully connected layer `[in] -> [units]`, kernel `[in, units]`, then `activation`. */
  dense(
    name: string,
    x: Node,
    opts: { kernel: WeightValues; bias: WeightValues; activation?: KerasActivation },
  ): Node {
    const [fanIn, units] = opts.kernel.shape as [number, number];
    if (x.shape.length !== 1 || x.shape[0] !== fanIn) {
      throw new Error(
        `LayersGraph.dense '${name}': kernel [${opts.kernel.shape}] does not fit input [${x.shape}]`,
      );
    }
    const config = { units, activation: opts.activation ?? 'linear', use_bias: true };
    this.push(
      'Dense',
      name,
      config,
      [x],
      [
        ['kernel', opts.kernel],
        ['bias', this.vector(name, opts.bias, units)],
      ],
    );
    return { layer: name, shape: [units] };
  }

  /** Layers appended so far (the input included). */
  get layerCount(): number {
    return this.layers.length;
  }

  /**
   * The model with `output` as its one output: `model.json` naming the weight file
   * `weightsPath`, and that file's bytes.
   */
  toArtifacts(modelName: string, output: Node, weightsPath: string): LayersArtifacts {
    const bytes = new Uint8Array(4 * this.weights.reduce((n, w) => n + w.values.length, 0));
    const view = new DataView(bytes.buffer);
    let offset = 0;
    for (const w of this.weights) {
      for (let i = 0; i < w.values.length; i++, offset += 4)
        view.setFloat32(offset, w.values[i]!, true);
    }
    return {
      modelJson: {
        format: 'layers-model',
        generatedBy: 'DisCo.js (@disco/cli tfjs export)',
        convertedBy: null,
        modelTopology: {
          class_name: 'Model',
          config: {
            name: modelName,
            layers: this.layers,
            input_layers: this.inputs.map((n) => [n.layer, 0, 0]),
            output_layers: [[output.layer, 0, 0]],
          },
          backend: 'tensor_flow.js',
        },
        weightsManifest: [
          {
            paths: [weightsPath],
            weights: this.weights.map(({ name, shape, dtype }) => ({ name, shape, dtype })),
          },
        ],
      },
      weightData: bytes,
    };
  }

  private push(
    className: string,
    name: string,
    config: Record<string, unknown>,
    inputs: Node[],
    weights: [string, WeightValues][] = [],
  ): void {
    if (this.layers.some((l) => l.name === name)) {
      throw new Error(`LayersGraph: a layer named '${name}' exists already`);
    }
    for (const x of inputs) {
      if (!this.layers.some((l) => l.name === x.layer)) {
        throw new Error(`LayersGraph: '${name}' takes '${x.layer}', which is not in the graph`);
      }
    }
    this.layers.push({
      class_name: className,
      name,
      config: { ...config, name },
      inbound_nodes: inputs.length === 0 ? [] : [inputs.map((x) => [x.layer, 0, 0, {}])],
    });
    for (const [suffix, w] of weights) {
      if (w.values.length !== size(w.shape)) {
        throw new Error(
          `LayersGraph: weight '${name}/${suffix}' has ${w.values.length} values for shape ` +
            `[${w.shape}]`,
        );
      }
      this.weights.push({
        name: `${name}/${suffix}`,
        shape: [...w.shape],
        dtype: 'float32',
        values: w.values,
      });
    }
  }

  private spatial(name: string, x: Node): [number, number, number] {
    if (x.shape.length !== 3) {
      throw new Error(`LayersGraph '${name}': needs a feature map [h, w, c], got [${x.shape}]`);
    }
    return x.shape as unknown as [number, number, number];
  }

  private vector(name: string, w: WeightValues, length: number): WeightValues {
    if (w.shape.length !== 1 || w.shape[0] !== length) {
      throw new Error(`LayersGraph '${name}': expected a vector [${length}], got [${w.shape}]`);
    }
    return w;
  }
}

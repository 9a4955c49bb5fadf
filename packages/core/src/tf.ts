/**
 * The one tfjs engine of DisCo.js. Every other package takes `tf` from here, so an app
 * that mixes several @disco packages gets one engine, one backend and one memory count.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's Node build ships without gradient functions; the union package's Node build
// registers them (and the chained tensor methods) on the same engine as a side effect.
import '@tensorflow/tfjs';
// Importing a backend registers it with the engine above; it is initialised only when chosen.
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

export { tf };

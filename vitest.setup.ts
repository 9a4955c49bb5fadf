// Every test file starts on the deterministic `cpu` backend; files that test `wasm` switch.
import { tf } from '@disco/core';

await tf.setBackend('cpu');

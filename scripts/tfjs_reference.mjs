// Run a TF.js graph model with TF.js itself (pure-JS CPU back-end) on raw input tensors; build-time only.
//
// Usage: node tfjs_reference.mjs MODEL.json OUT_DIR INPUT.bin...
//   each INPUT.bin is int32 [1, H, W, 3] raw little-endian with its side in the name (NAME-HxW.bin);
//   writes OUT_DIR/NAME.out.bin (float32, the model's first output) and NAME.out.json (its shape).
// Needs the npm package @tensorflow/tfjs (installed by scripts/rebuild_models.sh in its work directory).
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';

const [modelJson, outDir, ...inputs] = process.argv.slice(2);
const model = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
const weightSpecs = model.weightsManifest.flatMap((group) => group.weights);
const buffers = model.weightsManifest.flatMap((group) => group.paths)
  .map((file) => fs.readFileSync(path.join(path.dirname(modelJson), file)));
const weightData = Buffer.concat(buffers);
const arrayBuffer = weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength);

await tf.setBackend('cpu');
const graph = await tf.loadGraphModel(tf.io.fromMemory({
  modelTopology: model.modelTopology, weightSpecs, weightData: arrayBuffer, format: model.format,
  generatedBy: model.generatedBy, convertedBy: model.convertedBy, signature: model.signature,
  userDefinedMetadata: model.userDefinedMetadata,
}));
fs.mkdirSync(outDir, { recursive: true });
for (const input of inputs) {
  const name = path.basename(input, '.bin');
  const [height, width] = name.split('-').pop().split('x').map(Number);
  const raw = fs.readFileSync(input);
  const values = new Int32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const tensor = tf.tensor4d(values, [1, height, width, 3], 'int32');
  const output = graph.execute(tensor);
  const first = Array.isArray(output) ? output[0] : output;
  const data = await first.data();
  fs.writeFileSync(path.join(outDir, `${name}.out.bin`), Buffer.from(new Float32Array(data).buffer));
  fs.writeFileSync(path.join(outDir, `${name}.out.json`), JSON.stringify(first.shape));
  console.log(`${name}: output ${JSON.stringify(first.shape)}`);
}

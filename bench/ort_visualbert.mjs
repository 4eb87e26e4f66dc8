// ONNX Runtime baseline for bench/visualbert.sh: times an exported VisualBERT
// (bench/ort_export.py) with onnxruntime-node on the CPU execution provider, same inputs
// (a safetensors file) and thread count as kiln, and prints median_ms like `kiln bench`.
// With --check OUT.safetensors it also prints the largest difference of `logits` from
// kiln's output, so the timed model is known to compute the same thing.
//
// usage: node ort_visualbert.mjs MODEL.onnx IN.safetensors [--threads N] [--iters N]
//                                [--check OUT.safetensors]
// needs: onnxruntime-node (bench/ort-install.sh puts it in $KILN_ORT_DIR)
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.KILN_ORT_DIR || join(process.env.HOME || '/root', '.cache', 'kiln-ort');
const require = createRequire(join(dir, 'node_modules', 'x.js'));
const ort = require('onnxruntime-node');

function readSafetensors(path) {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n, out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    const bytes = buf.subarray(base + a, base + b);
    const copy = new Uint8Array(bytes).buffer;  // aligned copy
    let data;
    if (t.dtype === 'F32') data = new Float32Array(copy);
    else if (t.dtype === 'F64') data = Float32Array.from(new Float64Array(copy));
    else if (t.dtype === 'I64') data = new BigInt64Array(copy);
    else if (t.dtype === 'I32') data = BigInt64Array.from(new Int32Array(copy), (x) => BigInt(x));
    else throw new Error(`${path}: tensor "${name}": dtype ${t.dtype} not handled`);
    out[name] = { dtype: t.dtype, shape: t.shape, data };
  }
  return out;
}

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const [modelPath, inPath] = args;
const threads = Number(opt('--threads', 2)), iters = Number(opt('--iters', 20));
const sess = await ort.InferenceSession.create(modelPath, {
  executionProviders: ['cpu'], graphOptimizationLevel: 'all',
  intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
});
const raw = readSafetensors(inPath), feeds = {};
for (const name of sess.inputNames) {
  const t = raw[name];
  if (!t) throw new Error(`${inPath}: no tensor "${name}"`);
  // The export's convention (torch_visualbert.py): *_ids are int64, everything else f32.
  const wantInt = name.includes('ids'), isInt = t.data instanceof BigInt64Array;
  const data = wantInt === isInt ? t.data
    : wantInt ? BigInt64Array.from(t.data, (x) => BigInt(Math.round(x))) : Float32Array.from(t.data, Number);
  feeds[name] = new ort.Tensor(wantInt ? 'int64' : 'float32', data, t.shape);
}
let out;
for (let i = 0; i < 3; i++) out = await sess.run(feeds);
const ts = [];
for (let i = 0; i < iters; i++) {
  const t0 = process.hrtime.bigint();
  out = await sess.run(feeds);
  ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
ts.sort((a, b) => a - b);
const m = ts.length, med = m % 2 ? ts[(m - 1) / 2] : 0.5 * (ts[m / 2 - 1] + ts[m / 2]);
console.log(`ort_version: ${ort.env.versions ? ort.env.versions.common : 'unknown'}`);
console.log(`median_ms: ${med.toFixed(3)}\nmin_ms: ${ts[0].toFixed(3)}`);
const check = opt('--check', null);
if (check) {
  const ref = readSafetensors(check).logits.data, got = out.logits.data;
  let err = 0, scale = 0;
  for (let i = 0; i < got.length; i++) { err = Math.max(err, Math.abs(got[i] - ref[i])); scale = Math.max(scale, Math.abs(ref[i])); }
  console.log(`max_abs_diff_logits: ${err.toExponential(3)} (max |logit| ${scale.toFixed(3)})`);
}

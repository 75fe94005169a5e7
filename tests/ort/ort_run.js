#!/usr/bin/env node
// Runs an ONNX model with onnxruntime (CPU) on one float32 .npy input and
// writes its outputs as float32 .npy files (C order): the independent
// reference for twinedge's import (tests labelled "ort", tests/ort.cmake).
// Output 0 goes to OUTPUT.npy, output k > 0 to OUTPUT.k.npy, as
// twinedge-run names them.
//
// usage: node ort_run.js MODEL.onnx INPUT.npy OUTPUT.npy
// exit status 0 done, 1 error (with a message), 2 usage
'use strict';

const fs = require('fs');
const path = require('path');

// onnxruntime-node from `npm ci` here (scripts/install-deps.sh), or from
// $TE_ORT_MODULES when the build found it elsewhere
const modules = process.env.TE_ORT_MODULES || path.join(__dirname, 'node_modules');
const ort = require(path.join(modules, 'onnxruntime-node'));

function die(msg) {
  process.stderr.write('ort_run: error: ' + msg + '\n');
  process.exit(1);
}

// .npy: magic, version, header length (2 bytes in 1.x, 4 in 2.x/3.x), a
// Python dict literal; only little-endian float32 in C order is accepted
function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY')
    die(file + ': not a .npy file');
  const major = buf[6];
  let hlen, off;
  if (major === 1) {
    hlen = buf.readUInt16LE(8);
    off = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) die(file + ': truncated header');
    hlen = buf.readUInt32LE(8);
    off = 12;
  } else {
    die(file + ': .npy version ' + major + ' is not supported');
  }
  if (off + hlen > buf.length) die(file + ': truncated header');
  const header = buf.toString('latin1', off, off + hlen);
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) die(file + ': malformed header: ' + header.trim());
  if (descr[1] !== '<f4') die(file + ': dtype ' + descr[1] + ' (float32, <f4, needed)');
  if (fortran[1] === 'True') die(file + ': Fortran order (C order needed)');
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) die(file + ': bad shape (' + shape[1] + ')');
  const n = dims.reduce((a, b) => a * b, 1);
  const start = off + hlen;
  if (buf.length - start !== 4 * n)
    die(file + ': ' + (buf.length - start) + ' data bytes for ' + n + ' float32 values');
  // copy: the data offset need not be 4-byte aligned
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = buf.readFloatLE(start + 4 * i);
  return { dims, data };
}

function writeNpy(file, dims, data) {
  const shape = dims.length === 1 ? '(' + dims[0] + ',)' : '(' + dims.join(', ') + ')';
  let header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ', }';
  // magic + version + length + header + '\n' is a multiple of 64 bytes
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const out = Buffer.alloc(10 + header.length + 4 * data.length);
  out.write('\x93NUMPY', 0, 'latin1');
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, 'latin1');
  for (let i = 0; i < data.length; i++) out.writeFloatLE(data[i], 10 + header.length + 4 * i);
  const tmp = file + '.tmp';
  fs.writeFileSync(tmp, out);
  fs.renameSync(tmp, file);
}

async function main(argv) {
  if (argv.length !== 3) {
    process.stderr.write('usage: node ort_run.js MODEL.onnx INPUT.npy OUTPUT.npy\n');
    process.exit(2);
  }
  const [model, input, output] = argv;
  const x = readNpy(input);
  // one thread: the tests share two cores; no graph rewriting, so that the
  // reference is the graph as written
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'disabled',
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  if (session.inputNames.length !== 1)
    die(model + ': ' + session.inputNames.length + ' inputs (one supported)');
  const name = session.inputNames[0];
  const feeds = {};
  feeds[name] = new ort.Tensor('float32', x.data, x.dims);
  const res = await session.run(feeds);
  session.outputNames.forEach((oname, k) => {
    const y = res[oname];
    let data = y.data;
    // indices (TopK, NonMaxSuppression): twinedge computes every tensor in
    // float32, which holds these integers exactly (below 2^24)
    if (y.type === 'int64') data = Float32Array.from(y.data, (v) => Number(v));
    else if (y.type !== 'float32') die(model + ': output ' + oname + ' is ' + y.type + ', not float32 or int64');
    writeNpy(k === 0 ? output : output.replace(/(\.npy)?$/, '.' + k + '.npy'), y.dims, data);
  });
}

main(process.argv.slice(2)).catch((e) => die(e && e.message ? e.message : String(e)));

// Run as a child process by test/terminate.test.ts (a crash must not take the test runner down):
// starts a worker thread that fits an engine (then scores), terminates the worker when it reaches
// the chosen stage ('head', 'coreset', 'score'), `tries` times, then prints one JSON line: how many terminations happened at that
// stage and how long the slowest terminate() took. An abort of this process is the failure.
//   node terminate_child.mjs '<json: { dist, images, options, stage, tries }>'
import { Worker } from 'node:worker_threads';

const { dist, images, options, stage, tries } = JSON.parse(process.argv[2]);

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.dist).then(async ({ Engine }) => {
  const engine = await Engine.create(workerData.options);
  await engine.fit(workerData.images, { onProgress: (p) => parentPort.postMessage(p.stage) });
  // Stage 'score': terminated while scores are in flight.
  for (let i = 0; i < 200; i++) {
    const pending = engine.score(workerData.images[i % workerData.images.length]);
    parentPort.postMessage('score');
    await pending;
  }
  parentPort.postMessage('done');
}).catch((e) => parentPort.postMessage('error: ' + String(e && e.stack || e)));
`;

function once() {
  return new Promise((resolve, reject) => {
    const w = new Worker(workerSource, { eval: true, workerData: { dist, images, options } });
    let stopping = false;
    w.on('message', (m) => {
      if (stopping) return;
      if (m === stage) {
        stopping = true;
        const t0 = performance.now();
        w.terminate().then(() => resolve({ hit: true, ms: performance.now() - t0 }), reject);
      } else if (m === 'done' || String(m).startsWith('error')) {
        stopping = true;
        w.terminate().then(() => resolve({ hit: false, ms: 0, message: m }), reject);
      }
    });
    w.once('error', reject);
  });
}

let hits = 0;
let slowestMs = 0;
const misses = [];
for (let i = 0; i < tries; i++) {
  const r = await once();
  if (r.hit) hits++;
  else misses.push(r.message);
  slowestMs = Math.max(slowestMs, r.ms);
}
console.log(JSON.stringify({ hits, slowestMs, misses: misses.slice(0, 3) }));

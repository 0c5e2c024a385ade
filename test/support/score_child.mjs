// Run as a child process by tests whose inputs used to crash, stall or exhaust the process
// (test/input_limits.test.ts): loads a model, scores each input one after another, then prints
// one JSON line: each outcome ({ code, message } or { score, width, height }) and the peak RSS.
// A hang is caught by the parent's timeout, a crash by the exit status.
//   node score_child.mjs '<json: { dist, model, load, inputs: string[] }>'
const { dist, model, load, inputs } = JSON.parse(process.argv[2]);
const { Engine } = await import(dist);
const engine = await Engine.load(model, load);
const outcomes = [];
for (const input of inputs) {
  try {
    const r = await engine.score(input);
    outcomes.push({ score: r.score, width: r.width, height: r.height });
  } catch (e) {
    outcomes.push({ code: e.code, message: e.message });
  }
}
console.log(JSON.stringify({ outcomes, maxRssMB: process.resourceUsage().maxRSS / 1024 }));

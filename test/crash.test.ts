// Native crashes leave evidence (issue 22): child processes crash on purpose through the test-only
// probes (native/probes/, in the test addon that RECONPATCH_TEST_PROBES=1 loads) and the report on stderr and in the crash file
// is checked; WebAssembly traps (the same signal, handled by V8) still work with the handler in
// place; RECONPATCH_CRASH_HANDLER=0 turns it off. Built dist/ code, each child ~1 s.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { runtimeInfo } from '../lib/index.js';
import { repoRoot } from './support/data.js';
import { PROBE_MARKERS, probeMarkersIn } from '../scripts/probe-markers.mjs';

const dist = path.join(repoRoot, 'dist');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'reconpatch-crash-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  cache: string;
}

// Runs an ES module body in a child node with its own cache directory (where crash files go).
let children = 0;
function runChild(body: string, env: Record<string, string> = {}): Promise<Outcome> {
  const cache = path.join(tmp, `cache-${++children}`);
  const source = `const { native } = await import(${JSON.stringify(path.join(dist, 'native.js'))});\n${body}`;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', source], {
      env: { ...process.env, RECONPATCH_CACHE: cache, RECONPATCH_TEST_PROBES: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, cache }));
  });
}

const crashFiles = (cache: string) => (existsSync(cache) ? readdirSync(cache).filter((f) => f.startsWith('crash-')) : []);
const reportOf = (stderr: string) => /==== reconpatch crash report ====[\s\S]*?==== end of crash report ====\n/.exec(stderr)?.[0];

// An AddressSanitizer build leaves fatal signals to ASan (CONTRIBUTING.md "Sanitizer builds").
const handlerOff = process.env.RECONPATCH_CRASH_HANDLER === '0' || runtimeInfo().crashReports === null;

describe.skipIf(!existsSync(path.join(dist, 'native.js')) || handlerOff)('crash reports', () => {
  it('a segfault inside a score call: signal, address, the engine call and stage, a backtrace, on stderr and in a file', async () => {
    const r = await runChild(`
      const { Engine } = await import(${JSON.stringify(path.join(dist, 'index.js'))});
      let s = 1;
      const frame = () => ({ data: Uint8Array.from({ length: 32 * 32 * 3 }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) & 255), width: 32, height: 32, channels: 3 });
      const engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.5 }, calibration: false, seed: 3 });
      await engine.fit([frame(), frame(), frame(), frame()]);
      native().probes.crashAtStage('knn', 'segv');
      await engine.scoreMany([frame(), frame(), frame()]);
      console.log('survived');
    `);
    expect(r.signal).toBe('SIGSEGV');
    expect(r.stdout).not.toMatch(/survived/);
    const report = reportOf(r.stderr);
    expect(report, r.stderr).toBeDefined();
    expect(report).toMatch(/^signal: SIGSEGV \(segmentation fault\), signal 11, SEGV_MAPERR: address not mapped$/m);
    expect(report).toMatch(/^fault address: 0x00000000000dead0$/m);
    const tid = /^process: pid \d+, thread (\d+) \(faulting\)/m.exec(report!)?.[1];
    expect(tid).toBeDefined();
    // The engine call: id, description, operation, stage, image, and that it is the faulting thread.
    expect(report).toMatch(new RegExp(`^  engine 1 \\(random_cnn, no head, seed 3, device auto\\): score, stage knn, image 1 of 3, thread ${tid} \\(the faulting thread\\)$`, 'm'));
    // Frames as module + offset, from the faulting instruction in the addon outwards.
    const frames = report!.split('\n').filter((l) => /^  #\d+ 0x[0-9a-f]+ /.test(l));
    expect(frames.length).toBeGreaterThanOrEqual(5);
    expect(frames[0]).toMatch(/^  #0 0x[0-9a-f]+ \S+\/reconpatch_probes\.node \+0x[0-9a-f]+$/); // the test addon
    // The same report is in the crash file under the cache directory, which it names.
    const files = crashFiles(r.cache);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^crash-\d{8}-\d{6}-\d+\.txt$/);
    expect(report).toContain(`crash file: ${path.join(r.cache, files[0])}`);
    expect(readFileSync(path.join(r.cache, files[0]), 'utf8')).toBe(report);
    // Offsets are what addr2line takes: symbolised, the frames name the probe and the engine call.
    if (existsSync('/usr/bin/addr2line')) {
      const { execFileSync } = await import('node:child_process');
      const named = execFileSync(process.execPath, [path.join(repoRoot, 'scripts/symbolize-crash.mjs'), path.join(r.cache, files[0])], { encoding: 'utf8' });
      expect(named).toMatch(/#0 .*probeSegv/);
      expect(named).toMatch(/rp::Engine::score/);
    }
  });

  it('each fatal signal is named with its cause; a crash on another thread names that thread; the default action follows', async () => {
    const cases = [
      { kind: 'bus', signal: 'SIGBUS', line: /^signal: SIGBUS \(bus error\), signal 7, BUS_ADRERR/m },
      { kind: 'fpe', signal: 'SIGFPE', line: /^signal: SIGFPE \(arithmetic exception\), signal 8, FPE_INTDIV: integer division by zero$/m },
      { kind: 'ill', signal: 'SIGILL', line: /^signal: SIGILL \(illegal instruction\), signal 4, ILL_ILLOPN/m },
      { kind: 'abort', signal: 'SIGABRT', line: /^signal: SIGABRT \(abort\), signal 6, sent by kill\/raise\/abort \(pid \d+\)$/m },
    ];
    const runs = await Promise.all([
      ...cases.map((c) => runChild(`native().probes.crash('${c.kind}');`)),
      runChild(`native().probes.crash('segv', true);`),
    ]);
    cases.forEach((c, i) => {
      const r = runs[i];
      expect(r.signal, `${c.kind}: ${r.stderr}`).toBe(c.signal);
      const report = reportOf(r.stderr);
      expect(report, r.stderr).toMatch(c.line);
      expect(report).toMatch(/^engine calls running: none/m);
      expect(crashFiles(r.cache)).toHaveLength(1);
    });
    const thread = runs[cases.length];
    expect(thread.signal).toBe('SIGSEGV');
    const report = reportOf(thread.stderr)!;
    const m = /^process: pid (\d+), thread (\d+) \(faulting\)/m.exec(report);
    expect(m).not.toBeNull();
    expect(m![2]).not.toBe(m![1]); // not the main thread
    expect(report).toMatch(/^  #0 0x[0-9a-f]+ \S+\/reconpatch_probes\.node \+0x/m);
  });

  it('a WebAssembly out-of-bounds trap (SIGSEGV handled by V8) is still a JS exception with the handler installed', async () => {
    // (memory 1) (func (export "load") (param i32) (result i32) local.get 0 i32.load)
    const r = await runChild(`
      if (!native().runtime().crashReports) throw new Error('crash handler not installed');
      const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 1,6,1,96,1,127,1,127, 3,2,1,0, 5,3,1,0,1, 7,8,1,4,108,111,97,100,0,0, 10,9,1,7,0,32,0,40,2,0,11]);
      const { instance } = await WebAssembly.instantiate(bytes);
      const caught = [];
      for (const at of [70000, 1 << 20, 2 ** 31]) {
        try { instance.exports.load(at); } catch (e) { caught.push(e.constructor.name + ': ' + e.message); }
      }
      console.log(JSON.stringify({ inBounds: instance.exports.load(8), caught }));
    `);
    expect(r.stderr).not.toMatch(/crash report/);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ inBounds: 0, caught: Array(3).fill('RuntimeError: memory access out of bounds') });
    expect(crashFiles(r.cache)).toHaveLength(0);
  });

  it('RECONPATCH_CRASH_HANDLER=0 leaves fatal signals alone', async () => {
    const off = await runChild(`console.log(JSON.stringify(native().runtime().crashReports)); native().probes.crash('segv');`, { RECONPATCH_CRASH_HANDLER: '0' });
    expect(off.stdout.trim()).toBe('null');
    expect(off.signal).toBe('SIGSEGV');
    expect(off.stderr).not.toMatch(/crash report/);
    expect(crashFiles(off.cache)).toHaveLength(0);
  });
});

// Issue 31: the probes are linked into the test addon only. Not gated on the crash handler: an
// ASan build's pair of addons is checked the same way.
describe.skipIf(!existsSync(path.join(dist, 'native.js')))('the addon users get carries no probes', () => {
  it('without RECONPATCH_TEST_PROBES the loader loads reconpatch.node: no internals or probes exported, none of their code or strings inside', async () => {
    const show = 'const { runtimeInfo } = await import(' + JSON.stringify(path.join(dist, 'index.js')) + ');\n' +
      'console.log(JSON.stringify({ exports: Object.keys(native()).sort(), addon: runtimeInfo().addon }));';
    const [users, tests] = await Promise.all([runChild(show, { RECONPATCH_TEST_PROBES: '' }), runChild(show)]);
    expect(users.code, users.stderr).toBe(0);
    expect(tests.code, tests.stderr).toBe(0);
    const user = JSON.parse(users.stdout) as { exports: string[]; addon: string };
    const test = JSON.parse(tests.stdout) as { exports: string[]; addon: string };
    expect(path.basename(user.addon)).toBe('reconpatch.node');
    expect(test.addon).toBe(path.join(path.dirname(user.addon), 'reconpatch_probes.node'));
    expect(user.exports).not.toContain('internals');
    expect(user.exports).not.toContain('probes');
    expect(test.exports.filter((e) => !user.exports.includes(e))).toEqual(['internals', 'probes']);
    // The markers are in the test addon (so this check can fail) and not in the addon users get.
    expect(probeMarkersIn(test.addon)).toEqual(PROBE_MARKERS);
    expect(probeMarkersIn(user.addon)).toEqual([]);
    // A local build is unstripped: its symbol table names every function linked in.
    const { execFileSync } = await import('node:child_process');
    const symbols = (file: string) => execFileSync('nm', ['-C', file], { encoding: 'utf8', maxBuffer: 1 << 28 });
    const probeSymbol = /rpn::probes::|rp::internals::/;
    expect(symbols(test.addon)).toMatch(probeSymbol);
    expect(symbols(user.addon)).not.toMatch(probeSymbol);
  });
});

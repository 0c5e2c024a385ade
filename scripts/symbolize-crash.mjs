#!/usr/bin/env node
// Symbolises a reconpatch crash report: every backtrace frame "<module> +0x<offset>" gets its
// function and source line from addr2line (binutils), where the module still exists and has
// symbols. Prints the report with the names added.
//   node scripts/symbolize-crash.mjs <crash file>      (or the report on stdin)
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const text = readFileSync(process.argv[2] ?? 0, 'utf8');
const frame = /^(\s+#\d+ 0x[0-9a-f]+ )(\S+) \+(0x[0-9a-f]+)(.*)$/;

// One addr2line run per module, all its offsets at once.
const wanted = new Map();
for (const line of text.split('\n')) {
  const m = frame.exec(line);
  if (m && existsSync(m[2])) wanted.set(m[2], [...(wanted.get(m[2]) ?? []), m[3]]);
}
const names = new Map();
for (const [module, offsets] of wanted) {
  let out;
  try {
    out = execFileSync('addr2line', ['-Cfe', module, ...offsets], { encoding: 'utf8', maxBuffer: 1 << 24 });
  } catch (err) {
    console.error(`symbolize-crash: addr2line failed on ${module}: ${err.message.split('\n')[0]}`);
    continue;
  }
  const lines = out.split('\n'); // two lines per offset: function, file:line
  offsets.forEach((o, i) => {
    const fn = lines[2 * i];
    const where = lines[2 * i + 1];
    if (fn && fn !== '??') names.set(`${module} ${o}`, where && !where.startsWith('??') ? `${fn} (${where})` : fn);
  });
}
for (const line of text.split('\n')) {
  const m = frame.exec(line);
  const name = m && names.get(`${m[2]} ${m[3]}`);
  console.log(name ? `${m[1]}${m[2]} +${m[3]}  ${name}` : line);
}

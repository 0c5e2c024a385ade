// The review page (plain ES module, no build step, no CDN): recent verdicts polled every 2 s, a
// detail view, labels, the model update, and the threshold view. The API is one folder up
// (the page is served at <prefix>/review/), called with the bearer token from #token=... .
const api = new URL('../', location.href);
const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  e.append(...children);
  return e;
};
const SVG = 'http://www.w3.org/2000/svg';
const svg = (tag, attrs = {}, text) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
};

const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
if (fromHash) {
  sessionStorage.setItem('reconpatch-token', fromHash);
  history.replaceState(null, '', location.pathname + location.search); // keep the token out of the address bar
}
let token = sessionStorage.getItem('reconpatch-token') ?? '';
const state = { filter: 'all', tag: '', verdicts: [], selected: null, cards: new Map(), urls: new Map(), models: [], thresholdModel: null };

async function call(path, options = {}) {
  const r = await fetch(new URL(path, api), { ...options, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...options.headers } });
  if (r.status === 401) {
    $('login').hidden = false;
    throw new Error('the service wants a token');
  }
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw new Error(body.error ? `${body.error.message} [${body.error.code}]` : `${r.status} ${r.statusText}`);
  }
  return r;
}
const json = async (path, options) => (await call(path, options)).json();

/** A verdict's image or heatmap as an object URL (fetched once, with the token). */
function bytesUrl(id, kind) {
  const key = `${id}/${kind}`;
  if (!state.urls.has(key)) state.urls.set(key, call(`verdicts/${id}/${kind}`).then(async (r) => URL.createObjectURL(await r.blob())).catch(() => ''));
  return state.urls.get(key);
}

const kindOf = (v) => (v.borderline ? 'borderline' : v.isAnomaly ? 'anomaly' : v.isAnomaly === false ? 'ok' : 'borderline');
const badgeText = (v) => (v.borderline ? 'BORDERLINE' : v.isAnomaly ? 'ANOMALY' : v.isAnomaly === false ? 'OK' : 'NO THRESHOLD');
const time = (iso) => new Date(iso).toLocaleTimeString([], { hour12: false });
const num = (x, d = 2) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));

function card(v) {
  let c = state.cards.get(v.id);
  if (!c) {
    const img = el('img', { alt: `heatmap of verdict ${v.id}` });
    if (v.hasImage) bytesUrl(v.id, 'heatmap').then((u) => u && (img.src = u));
    c = el('button', { class: 'card', 'data-verdict-id': v.id, type: 'button' }, img, el('div', { class: 'row top' }), el('div', { class: 'row mid' }), el('div', { class: 'row bottom' }));
    c.addEventListener('click', () => select(v.id));
    state.cards.set(v.id, c);
  }
  c.className = `card ${kindOf(v)}${state.selected === v.id ? ' sel' : ''}`;
  c.querySelector('.top').replaceChildren(el('span', { class: `badge ${kindOf(v)}` }, badgeText(v)), el('span', {}, num(v.normalizedScore)));
  c.querySelector('.mid').replaceChildren(el('span', { class: 'version' }, `${v.model} · ${v.version.slice(0, 8)}`));
  c.querySelector('.bottom').replaceChildren(el('span', { class: 'muted' }, `${time(v.time)}${v.tag ? ` · ${v.tag}` : ''}`), el('span', { class: 'label' }, v.label ? (v.label === 'good' ? (v.learnedIn ? 'good · learned' : 'good part') : 'defect') : ''));
  return c;
}

async function refresh() {
  try {
    const q = new URLSearchParams({ filter: state.filter, limit: '60' });
    if (state.tag) q.set('tag', state.tag);
    const [{ verdicts }, { models }] = await Promise.all([json(`verdicts?${q}`), json('models')]);
    state.verdicts = verdicts;
    state.models = models;
    $('list').replaceChildren(...(verdicts.length ? verdicts.map(card) : [el('p', { class: 'empty' }, 'No verdicts match.')]));
    if (state.selected) showDetail(verdicts.find((v) => v.id === state.selected));
    showBatch();
    $('live').className = '';
    $('live').dataset.updated = new Date().toISOString();
  } catch (err) {
    $('live').className = 'stale';
    $('live').title = String(err.message ?? err);
  }
}

function select(id) {
  state.selected = id;
  for (const [cid, c] of state.cards) c.classList.toggle('sel', cid === id);
  const v = state.verdicts.find((x) => x.id === id);
  showDetail(v);
  if (v) loadThreshold(v.model);
}

function showDetail(v) {
  $('detail').hidden = !v;
  if (!v) return;
  $('detail').dataset.verdictId = v.id;
  for (const kind of ['image', 'heatmap']) {
    const img = $(`d-${kind}`);
    if (img.dataset.for !== v.id) {
      img.dataset.for = v.id;
      img.removeAttribute('src');
      if (v.hasImage) bytesUrl(v.id, kind).then((u) => img.dataset.for === v.id && u && (img.src = u));
    }
  }
  const d = $('d-verdict');
  d.className = `verdict ${kindOf(v)}`;
  d.textContent = v.borderline ? `Borderline: ${v.isAnomaly ? 'anomaly' : 'OK'}, close to the threshold` : v.isAnomaly ? 'Anomaly' : v.isAnomaly === false ? 'OK' : 'No threshold';
  // 0.5 (the threshold) sits in the middle; 1.0 and above at the right end.
  $('d-gauge').querySelector('.bar').style.left = `calc(${Math.min(1, Math.max(0, v.normalizedScore ?? 0)) * 100}% - 3px)`;
  const facts = [['score', `${num(v.score, 3)} (threshold ${num(v.threshold, 3)})`], ['normalised', `${num(v.normalizedScore, 3)} (0.5 = threshold)`], ['model', v.model], ['version', v.version], ['time', new Date(v.time).toLocaleString()], ['tag', v.tag ?? '–'], ['name', v.name ?? '–'], ['label', v.label ?? 'none'], ...(v.learnedIn ? [['learned in', v.learnedIn]] : [])];
  $('d-facts').replaceChildren(...facts.flatMap(([k, val]) => [el('dt', {}, k), el('dd', { 'data-fact': k }, val)]));
  $('label-good').classList.toggle('on', v.label === 'good');
  $('label-defect').classList.toggle('on', v.label === 'defect');
}

async function label(which) {
  if (!state.selected) return;
  await json(`verdicts/${state.selected}/label`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ label: which }) });
  await refresh();
  const v = state.verdicts.find((x) => x.id === state.selected);
  if (v) loadThreshold(v.model);
}

function batchModel() {
  const v = state.verdicts.find((x) => x.id === state.selected);
  return state.models.find((m) => m.id === (v?.model ?? state.thresholdModel)) ?? state.models.find((m) => m.goodLabelled > 0) ?? state.models[0];
}

let updating = false;
function showBatch() {
  const m = batchModel();
  $('batch-text').textContent = m ? `${m.goodLabelled} part${m.goodLabelled === 1 ? '' : 's'} of '${m.id}' labelled good, not yet learned (version ${m.version.slice(0, 8)}).` : 'No models in the store.';
  $('update-model').disabled = updating || !m || m.goodLabelled === 0;
  $('update-model').dataset.model = m?.id ?? '';
}

async function updateModel() {
  const m = batchModel();
  if (!m) return;
  updating = true;
  showBatch();
  const bar = $('update-progress');
  bar.hidden = false;
  bar.removeAttribute('value');
  try {
    let job = await json(`models/${encodeURIComponent(m.id)}/update`, { method: 'POST' });
    while (job.state === 'running') {
      $('update-status').textContent = `Updating '${m.id}' from ${job.images} good part${job.images === 1 ? '' : 's'}: ${job.stage}${job.total ? ` ${job.done}/${job.total}` : ''}…`;
      if (job.total) bar.value = job.done / job.total;
      await new Promise((r) => setTimeout(r, 400));
      job = await json(`updates/${job.id}`);
    }
    $('update-status').textContent = job.state === 'done'
      ? `Published version ${job.version} of '${m.id}' (${job.addedRows} new bank rows, threshold ${num(job.threshold, 3)}). New scores use it.`
      : `Update failed: ${job.error?.message} [${job.error?.code}]`;
    $('update-status').dataset.state = job.state;
    $('update-status').dataset.version = job.version ?? '';
  } catch (err) {
    $('update-status').textContent = `Update failed: ${err.message}`;
    $('update-status').dataset.state = 'failed';
  } finally {
    updating = false;
    bar.hidden = true;
    await refresh();
    loadThreshold(m.id);
  }
}

async function loadThreshold(model) {
  state.thresholdModel = model;
  const c = await json(`models/${encodeURIComponent(model)}/calibration`).catch(() => null);
  if (!c || state.thresholdModel !== model) return;
  $('th-model').textContent = `${c.model} · ${c.version.slice(0, 8)}`;
  drawThreshold(c);
}

function drawThreshold(c) {
  const plot = $('th-plot');
  plot.replaceChildren();
  plot.dataset.model = c.model;
  const cal = c.calibration;
  if (!cal) {
    $('th-text').textContent = 'This model has no threshold (fitted without calibration).';
    return;
  }
  const scores = c.nominalScores;
  const all = [...scores, cal.threshold, ...c.labelled.map((l) => l.score)];
  const lo = Math.min(...all), hi = Math.max(...all);
  const pad = (hi - lo) * 0.08 || 1;
  const x0 = lo - pad, x1 = hi + pad;
  const W = 360, H = 170, L = 30, R = 10, T = 14, B = 34;
  const x = (s) => L + ((s - x0) / (x1 - x0)) * (W - L - R);
  const bins = 24;
  const counts = new Array(bins).fill(0);
  for (const s of scores) counts[Math.min(bins - 1, Math.floor(((s - x0) / (x1 - x0)) * bins))]++;
  const top = Math.max(1, ...counts);
  const bw = (W - L - R) / bins;
  plot.append(svg('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: '#888' }));
  counts.forEach((n, i) => {
    if (!n) return;
    const h = (n / top) * (H - B - T);
    plot.append(svg('rect', { x: L + i * bw + 1, y: H - B - h, width: bw - 2, height: h, fill: '#9fb3c8' }, undefined));
  });
  plot.append(svg('text', { x: 2, y: T + 4 }, String(top)), svg('text', { x: 2, y: H - B }, '0'));
  const tx = x(cal.threshold);
  plot.append(svg('line', { x1: tx, x2: tx, y1: T - 6, y2: H - B + 4, stroke: '#c62828', 'stroke-width': 2, 'data-threshold': cal.threshold }));
  const right = tx > W - 90; // the label goes left of the line near the right edge
  plot.append(svg('text', { x: right ? tx - 4 : tx + 4, y: T + 10, fill: '#c62828', 'text-anchor': right ? 'end' : 'start' }, `threshold ${num(cal.threshold)}`));
  // Operator-labelled verdicts: good parts as blue circles, confirmed defects as red crosses, under the axis.
  for (const l of c.labelled) {
    const px = x(l.score);
    if (l.label === 'good') plot.append(svg('circle', { cx: px, cy: H - B + 10, r: 4, fill: 'none', stroke: '#1e5fb4', 'stroke-width': 2, class: 'labelled good' }));
    else plot.append(svg('path', { d: `M${px - 4},${H - B + 6}l8,8m0,-8l-8,8`, stroke: '#c62828', 'stroke-width': 2, class: 'labelled defect' }));
  }
  for (const s of [x0 + pad, (x0 + x1) / 2, x1 - pad]) plot.append(svg('text', { x: x(s) - 10, y: H - 4 }, num(s, 1)));
  plot.append(svg('text', { x: L + 4, y: T - 4, fill: '#666' }, 'good parts per image score (raw)'));
  const far = cal.falseAlarmRate === null ? 'none (threshold set by labels or by hand)' : `${(cal.falseAlarmRate * 100).toFixed(1)}% of good parts`;
  $('th-text').textContent = `${scores.length} nominal scores (${cal.method}); false-alarm target ${far}. Bars: good parts the threshold was set from; ○ labelled good, × labelled defect.${cal.warnings.length ? ` ⚠ ${cal.warnings.join('; ')}` : ''}`;
}

for (const b of document.querySelectorAll('#filters button')) {
  b.addEventListener('click', () => {
    state.filter = b.dataset.filter;
    for (const o of document.querySelectorAll('#filters button')) o.classList.toggle('on', o === b);
    refresh();
  });
}
let tagTimer;
$('tag').addEventListener('input', () => {
  clearTimeout(tagTimer);
  tagTimer = setTimeout(() => {
    state.tag = $('tag').value.trim();
    refresh();
  }, 250);
});
$('label-good').addEventListener('click', () => label('good'));
$('label-defect').addEventListener('click', () => label('defect'));
$('update-model').addEventListener('click', () => updateModel());
$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  token = $('token').value;
  sessionStorage.setItem('reconpatch-token', token);
  $('login').hidden = true;
  refresh().then(() => state.models[0] && !state.thresholdModel && loadThreshold(state.models[0].id));
});

refresh().then(() => state.models[0] && loadThreshold(state.models[0].id));
setInterval(refresh, 2000);

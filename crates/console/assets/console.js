// Polymeter's console. A client of the public APIs like any other: every
// number comes from /v1/projects, /calls/stats and /feedback/aggregate,
// fetched with the user's Weave key; /console/chart only draws the numbers
// it is sent. The view's state lives in the URL; the key lives in this
// tab's session storage and never in the URL.
'use strict';

const KEY = 'polymeter.key';
const PRESETS = { '1h': 3600, '6h': 21600, '24h': 86400, '7d': 604800, '30d': 2592000 };
// One bucket covering any range the console can ask (100 years, in days),
// for per-model totals.
const WHOLE_RANGE = 36500 * 86400;
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- the state

function browserZone() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'; } catch (_) { return 'UTC'; }
}

function readState() {
  const q = new URLSearchParams(location.search);
  const range = q.get('range') || '24h';
  return {
    project: q.get('project') || '',
    range: range === 'custom' || PRESETS[range] ? range : '24h',
    from: q.get('from') || '',
    to: q.get('to') || '',
    tz: q.get('tz') || browserZone(),
    op: q.get('op') || '',
  };
}

function writeState(state, push) {
  const q = new URLSearchParams();
  if (state.project) q.set('project', state.project);
  q.set('range', state.range);
  if (state.range === 'custom') { q.set('from', state.from); q.set('to', state.to); }
  q.set('tz', state.tz);
  if (state.op) q.set('op', state.op);
  const url = location.pathname + '?' + q.toString();
  if (url !== location.pathname + location.search) {
    (push ? history.pushState : history.replaceState).call(history, null, '', url);
  }
}

// --------------------------------------------------------------- the server

class ApiError extends Error {
  constructor(status, reason) { super(reason); this.status = status; }
}

function key() { return sessionStorage.getItem(KEY); }

async function call(method, path, body, asText) {
  // X-Requested-With: a refused key then gets no Basic challenge, which
  // would make the browser ask for a password in a dialog of its own.
  const headers = { Authorization: 'Basic ' + btoa('api:' + key()), 'X-Requested-With': 'XMLHttpRequest' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store',
  });
  if (!response.ok) {
    let reason = response.statusText;
    try { reason = (await response.json()).reason || reason; } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, reason);
  }
  return asText ? response.text() : response.json();
}

// ------------------------------------------------------------------- times

// The UTC offset of `zone` at instant `ms`, in ms.
function offsetMs(zone, ms) {
  const parts = {};
  for (const p of new Intl.DateTimeFormat('en-US', {
    timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(new Date(ms))) parts[p.type] = p.value;
  const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
  return wall - Math.floor(ms / 1000) * 1000;
}

// A wall-clock time ("2024-03-09T14:00") in `zone` → instant (ms).
function wallToMs(wall, zone) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(wall);
  if (!m) return NaN;
  const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  let t = guess - offsetMs(zone, guess);
  const again = guess - offsetMs(zone, t);
  if (again !== t) t = again;
  return t;
}

// An instant → wall-clock time in `zone`, as datetime-local wants it.
function msToWall(ms, zone) {
  return new Date(ms + offsetMs(zone, ms)).toISOString().slice(0, 16);
}

function label(ms, zone, seconds) {
  const options = { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
  if (seconds < 60) options.second = '2-digit';
  return new Intl.DateTimeFormat('sv-SE', options).format(new Date(ms));
}

function validZone(zone) {
  try { new Intl.DateTimeFormat('en-US', { timeZone: zone }); return true; } catch (_) { return false; }
}

// The range asked for: [start, end) in ms, and a bucket width giving
// enough points to see a shape and few enough to read.
function range(state) {
  let start, end;
  if (state.range === 'custom') {
    start = wallToMs(state.from, state.tz);
    end = wallToMs(state.to, state.tz);
    if (!(end > start)) throw new ApiError(400, 'Pick a custom range whose end is after its start.');
  } else {
    end = Math.ceil(Date.now() / 60000) * 60000;
    start = end - PRESETS[state.range] * 1000;
  }
  const seconds = (end - start) / 1000;
  const widths = [60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400];
  let width = widths.find((w) => seconds / w <= 250) || Math.ceil(seconds / 250 / 86400) * 86400;
  return { start, end, width };
}

// ---------------------------------------------------------------- numbers

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
function fmt(v, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  switch (unit) {
    case 'USD': return '$' + (Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3));
    case '%': return v.toFixed(2) + ' %';
    case 'ms': return (v >= 100 ? integer.format(v) : v.toFixed(1)) + ' ms';
    case 'rating': return v.toFixed(3);
    default: return integer.format(v);
  }
}

function sum(values) { return values.reduce((a, v) => a + (v || 0), 0); }

// ------------------------------------------------------------------ views

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

// A table whose cells keep their exact value in data-value.
function table(caption, columns, rows) {
  const head = el('tr', {}, ...columns.map((c) => el('th', { scope: 'col', text: c.title })));
  const body = rows.map((row) => el('tr', {}, ...columns.map((c, i) => {
    const v = row[i];
    const text = c.unit === 'text' ? (v ?? '(none)') : fmt(v, c.unit);
    const cell = el(i === 0 ? 'th' : 'td', { text, class: c.unit === 'text' ? 'text' : '' });
    if (i === 0) cell.setAttribute('scope', 'row');
    cell.dataset.value = v === null || v === undefined ? '' : String(v);
    return cell;
  })));
  return el('div', { class: 'table-wrap' },
    el('table', {}, el('caption', { class: 'visually-hidden', text: caption }), el('thead', {}, head), el('tbody', {}, ...body)));
}

// A chart figure: the SVG the gateway drew, then its table view.
async function figure(title, spec, columns, rows) {
  const holder = el('div', { class: 'chart' });
  const details = el('details', {}, el('summary', { text: `Table: ${title}` }), table(title, columns, rows));
  const wrap = el('figure', { class: 'figure', 'data-chart': title }, el('h3', { text: title }), holder, details);
  holder.innerHTML = await call('POST', '/console/chart', { title, width: 640, height: 260, ...spec }, true);
  return wrap;
}

function panel(id, title, summary) {
  return el('section', { class: 'panel', id, 'aria-label': title },
    el('h2', { text: title }), summary ? el('p', { class: 'summary', text: summary }) : null);
}

function emptyNote(text) { return el('p', { class: 'empty', text }); }

// ------------------------------------------------------------------ loading

async function loadProjects(state, known) {
  const { projects } = known || await call('GET', '/v1/projects');
  $('who').textContent = `Signed in · ${projects.length} project${projects.length === 1 ? '' : 's'}`;
  const select = $('project');
  select.replaceChildren(...projects.map((p) => el('option', {
    value: p.project_id,
    text: `${p.project_id} (${integer.format(p.calls)} calls)`,
  })));
  if (projects.length && !projects.some((p) => p.project_id === state.project)) {
    state.project = projects[0].project_id;
  }
  select.value = state.project;
  return projects;
}

function showControls(state) {
  $('range').value = state.range;
  $('tz').value = state.tz;
  $('op').value = state.op;
  const { start, end } = state.range === 'custom' && state.from && state.to
    ? { start: wallToMs(state.from, state.tz), end: wallToMs(state.to, state.tz) }
    : { start: Date.now() - 86400000, end: Date.now() };
  $('from').value = state.from || msToWall(start, state.tz);
  $('to').value = state.to || msToWall(end, state.tz);
  $('controls').classList.toggle('custom-range', state.range === 'custom');
}

function statsBody(state, r, extra) {
  const body = {
    project_id: state.project,
    start: new Date(r.start).toISOString(),
    end: new Date(r.end).toISOString(),
    timezone: state.tz,
    ...extra,
  };
  if (state.op) body.filter = { op_names: [state.op] };
  return body;
}

// The view's three answers for `state`, with the range they cover.
async function fetchView(state) {
  const r = range(state);
  const [series, models, feedback] = await Promise.all([
    call('POST', '/calls/stats', statsBody(state, r, {
      granularity: r.width,
      call_metrics: [
        { metric: 'call_count' }, { metric: 'error_count' },
        { metric: 'latency_ms', aggregations: [], percentiles: [50, 95, 99] },
      ],
      usage_metrics: [{ metric: 'input_tokens' }, { metric: 'output_tokens' }, { metric: 'total_cost' }],
    })),
    call('POST', '/calls/stats', statsBody(state, r, {
      granularity: WHOLE_RANGE,
      call_metrics_by_model: true,
      call_metrics: [
        { metric: 'call_count' }, { metric: 'error_count' },
        { metric: 'latency_ms', aggregations: [], percentiles: [95] },
      ],
      usage_metrics: [{ metric: 'input_tokens' }, { metric: 'output_tokens' }, { metric: 'total_cost' }],
    })),
    call('POST', '/feedback/aggregate', {
      project_id: state.project,
      after_ms: r.start,
      before_ms: r.end,
      time_bucket_seconds: r.width,
      group_by: ['scorer_id'],
    }),
  ]);
  return { r, series, models, feedback };
}

// Draws the view of `state`; `fetched` is its answers when they were asked
// for already.
async function load(state, fetched) {
  const started = performance.now();
  const status = $('status');
  const panels = $('panels');
  document.body.dataset.ready = 'false';
  status.classList.remove('bad');
  if (!validZone(state.tz)) throw new ApiError(400, `Unknown time zone "${state.tz}".`);
  if (!state.project) {
    panels.replaceChildren(emptyNote('No project of this key has calls yet. Send some (see the README), then reload.'));
    status.textContent = '';
    document.body.dataset.ready = 'true';
    return;
  }
  status.textContent = 'Loading…';
  const { r, series, models, feedback } = await (fetched || fetchView(state));
  const width = series.granularity;
  const built = await Promise.all([
    callsPanel(series, state.tz, width),
    latencyPanel(series, state.tz, width),
    usagePanel(series, models, state.tz, width),
    feedbackPanel(feedback, state.tz, r, state.op),
  ]);
  panels.replaceChildren(...built);
  const ms = Math.round(performance.now() - started);
  status.textContent = `${state.project} · ${label(r.start, state.tz, width)} to ${label(r.end, state.tz, width)} (${state.tz}) · buckets of ${width >= 3600 ? width / 3600 + ' h' : width / 60 + ' min'} · loaded in ${ms} ms`;
  // For measuring: when every panel is drawn, from the navigation's start.
  window.polymeterReadyAt = performance.now();
  document.body.dataset.ready = 'true';
}

// ------------------------------------------------------------------ panels

function times(buckets) { return buckets.map((b) => Date.parse(b.timestamp)); }

async function callsPanel(series, zone, width) {
  const b = series.call_buckets;
  const calls = b.map((x) => x.sum_call_count);
  const errors = b.map((x) => x.sum_error_count);
  const rate = calls.map((c, i) => (c ? (errors[i] / c) * 100 : null));
  const total = sum(calls);
  const failed = sum(errors);
  const node = panel('panel-calls', 'Calls and errors', total
    ? `${integer.format(total)} calls · ${integer.format(failed)} errors (${fmt((failed / total) * 100, '%')})`
    : null);
  if (!total) { node.append(emptyNote('No calls in this range.')); return node; }
  const x = times(b);
  const rows = x.map((t, i) => [label(t, zone, width), calls[i], errors[i], rate[i]]);
  const columns = [{ title: `Bucket (${zone})`, unit: 'text' }, { title: 'Calls' }, { title: 'Errors' }, { title: 'Error rate', unit: '%' }];
  node.append(
    await figure('Calls and errors', { kind: 'line', unit: 'calls', zone, bucket_seconds: width, buckets: x,
      series: [{ name: 'calls', values: calls }, { name: 'errors', values: errors }] }, columns, rows),
    await figure('Error rate', { kind: 'line', unit: '%', zone, bucket_seconds: width, buckets: x,
      series: [{ name: 'error rate', values: rate }] }, columns, rows),
  );
  return node;
}

async function latencyPanel(series, zone, width) {
  const b = series.call_buckets;
  const node = panel('panel-latency', 'Latency');
  const p = ['p50', 'p95', 'p99'].map((k) => b.map((x) => x[`${k}_latency_ms`]));
  if (!p[0].some((v) => v !== null && v !== undefined)) {
    node.append(emptyNote('No finished calls in this range.'));
    return node;
  }
  const x = times(b);
  node.append(await figure('Latency percentiles', {
    kind: 'line', unit: 'ms', zone, bucket_seconds: width, buckets: x,
    series: ['p50', 'p95', 'p99'].map((name, i) => ({ name, values: p[i] })),
  }, [{ title: `Bucket (${zone})`, unit: 'text' }, { title: 'p50', unit: 'ms' }, { title: 'p95', unit: 'ms' }, { title: 'p99', unit: 'ms' }],
  x.map((t, i) => [label(t, zone, width), p[0][i], p[1][i], p[2][i]])));
  return node;
}

async function usagePanel(series, models, zone, width) {
  const u = series.usage_buckets;
  const names = [...new Set(u.map((x) => x.model))];
  const x = [...new Set(u.map((x) => x.timestamp))].map(Date.parse);
  const at = new Map(x.map((t, i) => [t, i]));
  const of = (key) => names.map((name) => {
    const values = x.map(() => 0);
    for (const row of u) if (row.model === name) values[at.get(Date.parse(row.timestamp))] = row[key];
    return { name: name ?? '(no model)', values };
  });
  const top = topModels(models);
  const node = panel('panel-usage', 'Tokens and cost by model', top.length
    ? `${integer.format(sum(top.map((m) => m[2] + m[3])))} tokens · ${fmt(sum(top.map((m) => m[4])), 'USD')}`
    : null);
  if (!top.length) { node.append(emptyNote('No token usage in this range.')); return node; }
  node.append(el('h3', { text: 'Top models' }), table('Top models', [
    { title: 'Model', unit: 'text' }, { title: 'Calls' }, { title: 'Input tokens' }, { title: 'Output tokens' },
    { title: 'Cost', unit: 'USD' }, { title: 'Error rate', unit: '%' }, { title: 'p95 latency', unit: 'ms' },
  ], top));
  const rows = u.filter((row) => row.count > 0).map((row) => [
    label(Date.parse(row.timestamp), zone, width), row.model, row.sum_input_tokens, row.sum_output_tokens, row.sum_total_cost,
  ]);
  const columns = [{ title: `Bucket (${zone})`, unit: 'text' }, { title: 'Model', unit: 'text' },
    { title: 'Input tokens' }, { title: 'Output tokens' }, { title: 'Cost', unit: 'USD' }];
  const chart = (title, unit, key) => figure(title, { kind: 'stacked', unit, zone, bucket_seconds: width, buckets: x, series: of(key) }, columns, rows);
  node.classList.add('wide');
  node.append(el('div', { class: 'figures' }, ...await Promise.all([
    chart('Input tokens by model', 'tokens', 'sum_input_tokens'),
    chart('Output tokens by model', 'tokens', 'sum_output_tokens'),
    chart('Cost by model', 'USD', 'sum_total_cost'),
  ])));
  return node;
}

// Per model over the whole range: [model, calls, input, output, cost,
// error rate, p95], most calls first.
function topModels(models) {
  const byModel = new Map();
  for (const b of models.usage_buckets) {
    const m = byModel.get(b.model) || { calls: 0, input: 0, output: 0, cost: 0, errors: 0, p95: null, weight: 0 };
    m.calls += b.count; m.input += b.sum_input_tokens || 0; m.output += b.sum_output_tokens || 0; m.cost += b.sum_total_cost || 0;
    byModel.set(b.model, m);
  }
  for (const b of models.call_buckets) {
    const m = byModel.get(b.model);
    if (!m) continue;
    m.errors += b.sum_error_count || 0;
    if (b.count > m.weight && b.p95_latency_ms !== null) { m.p95 = b.p95_latency_ms; m.weight = b.count; }
  }
  return [...byModel.entries()]
    .filter(([, m]) => m.calls > 0)
    .sort((a, b) => b[1].calls - a[1].calls || String(a[0]).localeCompare(String(b[0])))
    .map(([name, m]) => [name, m.calls, m.input, m.output, m.cost, (m.errors / m.calls) * 100, m.p95]);
}

async function feedbackPanel(feedback, zone, r, op) {
  const node = panel('panel-feedback', 'Feedback');
  if (op) node.append(el('p', { class: 'summary', text: 'Feedback is not filtered by op name.' }));
  const buckets = feedback.buckets.filter((b) => b.total_count > 0);
  if (!buckets.length) { node.append(emptyNote('No feedback in this range.')); return node; }
  const w = r.width * 1000;
  const x = [];
  for (let t = Math.floor(r.start / w) * w; t < r.end; t += w) x.push(t);
  const at = new Map(x.map((t, i) => [t, i]));
  // Average rating per scorer (and rating name, when a scorer gives several).
  const ratings = new Map();
  const tags = new Map();
  for (const b of buckets) {
    const i = at.get(b.time_bucket_start_ms);
    if (i === undefined) continue;
    const scorer = b.group.scorer_id || '(no scorer)';
    for (const [name, count] of Object.entries(b.rating_counts)) {
      const k = name === '_rating_' || name === scorer ? scorer : `${scorer} · ${name}`;
      const s = ratings.get(k) || { sums: x.map(() => 0), counts: x.map(() => 0) };
      s.sums[i] += b.rating_sums[name]; s.counts[i] += count;
      ratings.set(k, s);
    }
    for (const [tag, count] of Object.entries(b.tag_counts)) {
      const s = tags.get(tag) || x.map(() => 0);
      s[i] += count;
      tags.set(tag, s);
    }
  }
  const total = sum(buckets.map((b) => b.total_count));
  node.append(el('p', { class: 'summary', text: `${integer.format(total)} feedback records` }));
  const bucketColumn = { title: `Bucket (${zone}, UTC-aligned)`, unit: 'text' };
  if (ratings.size) {
    const series = [...ratings.entries()].sort().map(([name, s]) => ({
      name, values: s.sums.map((v, i) => (s.counts[i] ? v / s.counts[i] : null)),
    }));
    const rows = [];
    for (const s of series) s.values.forEach((v, i) => { if (v !== null) rows.push([label(x[i], zone, r.width), s.name, v, ratings.get(s.name).counts[i]]); });
    node.append(await figure('Average rating by scorer', { kind: 'line', unit: 'rating', zone, bucket_seconds: r.width, buckets: x, series },
      [bucketColumn, { title: 'Scorer', unit: 'text' }, { title: 'Average', unit: 'rating' }, { title: 'Ratings' }], rows));
  } else {
    node.append(emptyNote('No ratings in this range.'));
  }
  if (tags.size) {
    const series = [...tags.entries()].sort((a, b) => sum(b[1]) - sum(a[1]) || a[0].localeCompare(b[0])).map(([name, values]) => ({ name, values }));
    node.append(await figure('Tags', { kind: 'stacked', unit: 'feedback', zone, bucket_seconds: r.width, buckets: x, series },
      [{ title: 'Tag', unit: 'text' }, { title: 'Count' }], series.map((s) => [s.name, sum(s.values)])));
  } else {
    node.append(emptyNote('No tags in this range.'));
  }
  return node;
}

// ------------------------------------------------------------------ wiring

function fail(error) {
  const status = $('status');
  if (error instanceof ApiError && error.status === 401) {
    signOut(`The key was refused: ${error.message}`);
    return;
  }
  status.textContent = error instanceof ApiError ? error.message : `Something went wrong: ${error.message}`;
  status.classList.add('bad');
  document.body.dataset.ready = 'error';
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  $('view').hidden = true;
  $('sign-out').hidden = true;
  $('who').textContent = '';
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message || '';
  $('key').value = '';
  $('key').focus();
  document.body.dataset.ready = message ? 'refused' : 'signed-out';
}

// Shows the view the URL names; `projects` is the key's list when it was
// just read (at sign-in).
async function show(push, projects) {
  document.body.dataset.ready = 'false';
  const state = readState();
  // A view that names its project (a bookmark, a shared link) is asked for
  // beside the project list, so its first paint waits on one round of
  // answers, not two. The answers are used only if the key sees that
  // project; a failure is reported only then (never as an unhandled one).
  const asked = state.project;
  const early = asked && validZone(state.tz)
    ? fetchView(state).then((view) => ({ view }), (error) => ({ error }))
    : null;
  try {
    $('sign-in').hidden = true;
    $('view').hidden = false;
    $('sign-out').hidden = false;
    await loadProjects(state, projects);
    showControls(state);
    writeState(state, push);
    let fetched = null;
    if (early && state.project === asked) {
      const { view, error } = await early;
      if (error) throw error;
      fetched = view;
    }
    await load(state, fetched);
  } catch (error) {
    fail(error);
  }
}

function fromControls() {
  const state = {
    project: $('project').value,
    range: $('range').value,
    from: $('from').value,
    to: $('to').value,
    tz: $('tz').value.trim() || browserZone(),
    op: $('op').value.trim(),
  };
  return state;
}

function init() {
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  $('zones').replaceChildren(...['UTC', ...zones].map((z) => el('option', { value: z })));
  $('sign-in-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $('key').value.trim());
    let projects;
    try {
      projects = await call('GET', '/v1/projects');
    } catch (error) {
      signOut(error instanceof ApiError && error.status === 401 ? `The key was refused: ${error.message}` : error.message);
      return;
    }
    $('sign-in-error').textContent = '';
    show(false, projects);
  });
  $('sign-out').addEventListener('click', () => signOut());
  $('range').addEventListener('change', () => $('controls').classList.toggle('custom-range', $('range').value === 'custom'));
  $('controls').addEventListener('submit', (event) => {
    event.preventDefault();
    writeState(fromControls(), true);
    show(false);
  });
  $('project').addEventListener('change', () => { writeState(fromControls(), true); show(false); });
  window.addEventListener('popstate', () => show(false));
  if (key()) show(false); else signOut();
}

init();

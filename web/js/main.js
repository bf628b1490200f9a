// The dashboard: tabs, controls, and rendering of the live metrics.

import { barChart, doughnutChart, resizeWithin, setBars, setSeries, timeChart } from './charts.js';
import { brief, clock, colour, el, nthColour, number, setOptions } from './format.js';
import { Live } from './live.js';
import { watchAlerts } from './alerts.js';
import { View, describeRange, equals, field, fromLocalInput, toLocalInput } from './view.js';

const MAX_EVENTS = 50;
const $ = (id) => document.getElementById(id);

const state = {
  metrics: null,
  events: [],
  paused: false,
  pending: false,
  view: View.fromSearch(location.search),
};

// ---- tabs -------------------------------------------------------------
const tabs = [...document.querySelectorAll('[role="tab"]')];
function selectTab(tab, { remember = true } = {}) {
  if (remember) {
    state.view.tab = tab.id === tabs[0].id ? null : tab.id.replace(/^tab-/, '');
    saveView();
  }
  for (const t of tabs) {
    const selected = t === tab;
    t.setAttribute('aria-selected', String(selected));
    t.tabIndex = selected ? 0 : -1;
    $(t.getAttribute('aria-controls')).hidden = !selected;
  }
  resizeWithin($(tab.getAttribute('aria-controls')));
  render();
}
for (const tab of tabs) {
  tab.addEventListener('click', () => selectTab(tab));
  tab.addEventListener('keydown', (e) => {
    const i = tabs.indexOf(tab);
    const next = e.key === 'ArrowRight' ? tabs[(i + 1) % tabs.length] : e.key === 'ArrowLeft' ? tabs[(i + tabs.length - 1) % tabs.length] : null;
    if (next) { next.focus(); selectTab(next); }
  });
}
const visible = (id) => !$(id).hidden;

// ---- charts (created once) ----------------------------------------------
const charts = {
  byType: barChart($('chart-by-type'), { horizontal: true }),
  throughput: timeChart($('chart-throughput'), { stacked: true }),
  series: timeChart($('chart-series')),
  typesOverTime: timeChart($('chart-types-over-time')),
  distribution: doughnutChart($('chart-distribution')),
  compare: barChart($('chart-compare'), { horizontal: true, logarithmic: true }),
};

/** Clicking a bar or a slice calls `pick` with its index. */
function pickable(chart, pick) {
  chart.options.onClick = (_event, elements) => {
    if (elements.length) pick(elements[0].index);
  };
  chart.options.onHover = (event, elements) => {
    event.native.target.style.cursor = elements.length ? 'pointer' : 'default';
  };
}
// A click filters by what was clicked.
pickable(charts.byType, (i) => addFilter(equals('type', charts.byType.data.labels[i])));
pickable(charts.distribution, (i) => {
  const value = charts.distribution.$values[i];
  if (value !== null) addFilter(equals(field($('dist-dimension').value), value));
});

// ---- the view: range, filters, breakdown; kept in the URL ----------------
function saveView() {
  history.replaceState(null, '', location.pathname + state.view.search());
}

const windowSelect = $('window');
const rangeForm = $('range');

function showRange() {
  const v = state.view;
  windowSelect.value = v.custom ? 'custom' : v.window;
  rangeForm.hidden = !v.custom;
  if (v.custom) {
    $('range-from').value = toLocalInput(v.from);
    $('range-to').value = v.to ? toLocalInput(v.to) : '';
  }
  $('window-label').textContent = v.custom ? describeRange(v.from, v.to)
    : windowSelect.selectedOptions[0].textContent.toLowerCase();
}

windowSelect.addEventListener('change', () => {
  if (windowSelect.value === 'custom') {
    // Start from the range shown now; applied with the form's button.
    const now = Date.now();
    $('range-from').value = toLocalInput(state.view.from || new Date(now - 3600e3).toISOString());
    $('range-to').value = state.view.to ? toLocalInput(state.view.to) : '';
    rangeForm.hidden = false;
    $('range-from').focus();
    return;
  }
  Object.assign(state.view, { window: windowSelect.value, from: null, to: null });
  changeView();
});

rangeForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const from = fromLocalInput($('range-from').value);
  const to = fromLocalInput($('range-to').value);
  if (!from) return;
  if (to && Date.parse(to) <= Date.parse(from)) {
    showFilterError('The range must end after it starts.');
    return;
  }
  Object.assign(state.view, { window: null, from, to });
  changeView();
});

function renderChips() {
  $('chips').replaceChildren(...state.view.filters.map((filter, i) => {
    const chip = el('li', null, 'chip');
    chip.dataset.filter = filter;
    const remove = el('button', '×');
    remove.type = 'button';
    remove.setAttribute('aria-label', `Remove filter ${filter}`);
    remove.addEventListener('click', () => {
      state.view.filters.splice(i, 1);
      changeView();
    });
    chip.append(el('span', filter), remove);
    return chip;
  }));
}

function showFilterError(message) {
  const error = $('filter-error');
  error.textContent = message || '';
  error.hidden = !message;
}

/** Adds a filter once the server accepts it (it names a known field and parses). */
async function addFilter(filter) {
  if (state.view.filters.includes(filter)) return true;
  // Checked over the last 10 s only: the fields are checked whatever the
  // range, and the answer costs next to nothing.
  try {
    const response = await fetch('/api/query', {
      method: 'POST',
      headers: { ...authHeaders(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ window: '10s', where: [...state.view.filters, filter] }),
    });
    if (response.status === 400) {
      const body = await response.json().catch(() => ({}));
      showFilterError(body.message || 'The server refused this filter.');
      return false;
    }
  } catch {
    // Offline: keep it; the connection reports the server's answer.
  }
  state.view.filters.push(filter);
  changeView();
  return true;
}

$('filter-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('filter-input');
  const text = input.value.trim();
  if (!text) return;
  if (await addFilter(text)) input.value = '';
});

function authHeaders() {
  return live.token ? { Authorization: `Bearer ${live.token}` } : {};
}

/** The view changed: show it, keep it in the URL, and watch it. */
function changeView() {
  showFilterError(null);
  showRange();
  renderChips();
  saveView();
  state.breakdownAt = 0;
  connect();
}

$('pause').addEventListener('click', () => {
  state.paused = !state.paused;
  $('pause').setAttribute('aria-pressed', String(state.paused));
  $('pause').textContent = state.paused ? 'Resume' : 'Pause';
  if (!state.paused && state.pending) render();
});
for (const id of ['series-type', 'series-field', 'dist-type', 'dist-dimension', 'compare-stat']) {
  $(id).addEventListener('change', render);
}
for (const id of ['breakdown-type', 'breakdown-by']) {
  $(id).addEventListener('change', () => {
    state.view.breakdownType = $('breakdown-type').value || null;
    state.view.breakdownBy = $('breakdown-by').value || null;
    saveView();
    state.breakdownAt = 0;
    render();
  });
}

// ---- live data ------------------------------------------------------------
const statusEl = $('status');
const live = new Live(onMessage, (s, text) => {
  statusEl.dataset.state = s;
  statusEl.textContent = text;
}, askForToken, showFilterError);

// A token for a server started with --read-token: from the link
// (#token=...), else from this browser's storage.
const TOKEN_KEY = 'rta-token';
function initialToken() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromLink) {
    localStorage.setItem(TOKEN_KEY, fromLink);
    history.replaceState(null, '', location.pathname + location.search);
    return fromLink;
  }
  return localStorage.getItem(TOKEN_KEY) || '';
}

function askForToken() {
  $('auth-error').hidden = !live.token;
  $('auth').hidden = false;
  $('empty').hidden = true;
  document.body.classList.add('is-locked');
  $('auth-token').focus();
}

$('auth-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('auth-token').value.trim();
  localStorage.setItem(TOKEN_KEY, token);
  $('auth').hidden = true;
  document.body.classList.remove('is-locked');
  live.connect(state.view.params(), token);
});

function connect() {
  live.connect(state.view.params());
}

function onMessage(message) {
  if (!message || !message.metrics) return;
  state.metrics = message.metrics;
  const fresh = Array.isArray(message.events) ? message.events : [];
  if (message.kind === 'snapshot') {
    state.events = fresh.slice(0, MAX_EVENTS);
  } else if (fresh.length) {
    const seen = new Set(fresh.map((e) => e.seq));
    state.events = fresh.concat(state.events.filter((e) => !seen.has(e.seq))).slice(0, MAX_EVENTS);
  }
  if (state.paused) {
    state.pending = true;
    return;
  }
  render();
}

// ---- rendering ------------------------------------------------------------
function render() {
  const m = state.metrics;
  state.pending = false;
  if (!m) return;
  // Colours go to types in name order, so every chart agrees.
  for (const name of Object.keys(m.eventsByType).sort()) colour(name);
  const empty = m.totalEvents === 0;
  $('empty').hidden = !empty;
  document.body.classList.toggle('is-empty', empty);
  renderOverview(m);
  if (visible('panel-engineering')) renderEngineering(m);
  if (visible('panel-stream')) renderStream(m);
  if (visible('panel-viz')) renderViz(m);
}

function renderOverview(m) {
  $('total-events').textContent = number(m.totalEvents);
  const rate = m.types.reduce((sum, t) => sum + (m.windowSeconds ? 0 : t.rate), 0);
  // A fixed range has no "last minute": its average rate.
  // Nor does a series whose steps are longer than a minute.
  const fixed = m.windowSeconds && (state.view.custom || m.timeSeriesData.stepSeconds > 60);
  $('rate-hint').textContent = state.view.custom ? 'over the range' : fixed ? 'average' : 'last minute';
  $('events-per-second').textContent = number(fixed ? (m.windowEvents || 0) / m.windowSeconds
    : m.windowSeconds ? lastMinuteRate(m) : rate);
  $('window-events').textContent = number(m.windowEvents ?? m.totalEvents);
  $('type-count').textContent = number(Object.keys(m.eventsByType).length);
}

/** Events per second over the last minute, from the series. */
function lastMinuteRate(m) {
  const step = m.timeSeriesData.stepSeconds;
  const n = Math.max(1, Math.round(60 / step));
  let count = 0;
  for (const points of Object.values(m.timeSeriesData.types)) {
    for (const p of points.slice(-n)) count += p.count;
  }
  return count / (n * step);
}

function seriesPoints(points, value) {
  return points.map((p) => ({ x: Date.parse(p.t), y: value(p) }));
}

function renderEngineering(m) {
  const types = [...m.types].sort((a, b) => b.count - a.count || a.name.localeCompare(b.name));
  setBars(charts.byType, types.map((t) => t.name), types.map((t) => t.count), types.map((t) => colour(t.name)));
  const ts = m.timeSeriesData;
  setSeries(charts.throughput, Object.entries(ts.types).map(([name, points]) => ({
    name, points: seriesPoints(points, (p) => p.count),
  })), ts.stepSeconds, { fill: true });
  renderEvents();
}

function renderEvents() {
  const body = $('recent-events');
  const rows = state.events.map((e) => {
    const tr = el('tr');
    tr.append(el('td', clock(e.timestamp)));
    const typeCell = el('td');
    const badge = el('span', e.type, 'badge');
    badge.style.background = colour(e.type);
    typeCell.append(badge);
    tr.append(typeCell, el('td', e.source));
    const values = Object.entries(e.values || {}).map(([k, v]) => `${k}=${typeof v === 'number' ? number(v) : v}`);
    tr.append(el('td', values.join('  ·  '), 'values'));
    return tr;
  });
  body.replaceChildren(...rows);
}

function measuresOf(m, typeName) {
  const t = m.types.find((x) => x.name === typeName);
  return t ? t.measures.map((x) => x.name) : [];
}

function renderStream(m) {
  const typeNames = m.types.map((t) => t.name);
  const type = setOptions($('series-type'), typeNames);
  const field = setOptions($('series-field'), ['events (count)', ...measuresOf(m, type)], measuresOf(m, type)[0]);
  const ts = m.timeSeriesData;
  const points = ts.types[type] || [];
  const series = field === 'events (count)'
    ? seriesPoints(points, (p) => p.count)
    : seriesPoints(points, (p) => (field in p.mean ? p.mean[field] : null));
  setSeries(charts.series, type ? [{ name: `${type} · ${field}`, points: series }] : [], ts.stepSeconds);
  setSeries(charts.typesOverTime, Object.entries(ts.types).map(([name, pts]) => ({
    name, points: seriesPoints(pts, (p) => p.count),
  })), ts.stepSeconds);
}

function renderViz(m) {
  const withDims = m.types.filter((t) => t.dimensions.length);
  const type = setOptions($('dist-type'), withDims.map((t) => t.name));
  const t = withDims.find((x) => x.name === type);
  const dimension = setOptions($('dist-dimension'), t ? t.dimensions.map((d) => d.name) : []);
  const d = t && t.dimensions.find((x) => x.name === dimension);
  const labels = d ? d.top.map((v) => v.value) : [];
  const values = d ? d.top.map((v) => v.count) : [];
  charts.distribution.$values = [...labels];
  if (d && d.others > 0) { labels.push('others'); values.push(d.others); charts.distribution.$values.push(null); }
  charts.distribution.data.labels = labels;
  charts.distribution.data.datasets[0].data = values;
  charts.distribution.data.datasets[0].backgroundColor = labels.map((l, i) => (l === 'others' ? '#98a2b3' : nthColour(i)));
  charts.distribution.update('none');

  const stat = $('compare-stat').value;
  const bars = m.types.flatMap((x) => x.measures.map((ms) => ({ label: `${x.name} · ${ms.name}`, value: ms[stat], type: x.name })))
    .filter((b) => typeof b.value === 'number' && b.value > 0);
  setBars(charts.compare, bars.map((b) => b.label), bars.map((b) => b.value), bars.map((b) => colour(b.type)));
  renderBreakdown(m);
  renderTiles(m);
}

// ---- breakdown: POST /api/query over the view ------------------------------
const BREAKDOWN_REFRESH_MS = 5000;

async function renderBreakdown(m) {
  const withDims = m.types.filter((t) => t.dimensions.length);
  const type = setOptions($('breakdown-type'), withDims.map((t) => t.name), state.view.breakdownType);
  const t = withDims.find((x) => x.name === type);
  const by = setOptions($('breakdown-by'), t ? t.dimensions.map((d) => d.name) : [], state.view.breakdownBy);
  if (!type || !by) {
    $('breakdown-head').replaceChildren();
    $('breakdown-body').replaceChildren();
    return;
  }
  // Asked again when the view or the choice changes, else every few seconds.
  const key = JSON.stringify([state.view.params(), type, by]);
  if (key === state.breakdownKey && Date.now() - state.breakdownAt < BREAKDOWN_REFRESH_MS) return;
  if (state.breakdownBusy) {
    state.breakdownStale = true; // asked again when the answer in flight arrives
    return;
  }
  Object.assign(state, { breakdownKey: key, breakdownAt: Date.now(), breakdownBusy: true });
  try {
    const body = { ...state.view.queryBody(), type, by: [field(by)], top: 10 };
    const response = await fetch('/api/query', {
      method: 'POST',
      headers: { ...authHeaders(), 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (key !== state.breakdownKey) return;
    if (!response.ok) {
      const row = el('tr');
      row.append(el('td', answer.message || `The query failed (${response.status}).`));
      $('breakdown-head').replaceChildren();
      $('breakdown-body').replaceChildren(row);
      return;
    }
    drawBreakdown(answer, by);
  } catch {
    // Offline: the status shows it; the next update asks again.
  } finally {
    state.breakdownBusy = false;
    if (state.breakdownStale) {
      state.breakdownStale = false;
      renderBreakdown(state.metrics);
    }
  }
}

function drawBreakdown(answer, by) {
  const head = el('tr');
  head.append(el('th', by), el('th', 'events', 'num'), el('th', 'share', 'num'),
    ...answer.columns.map((c) => el('th', c, 'num')));
  $('breakdown-head').replaceChildren(head);
  const total = answer.matchedEvents || 0;
  const line = (row, label, clickable) => {
    const tr = el('tr');
    const first = el('td');
    if (clickable) {
      const button = el('button', label, 'value');
      button.type = 'button';
      button.addEventListener('click', () => addFilter(equals(field(by), label)));
      first.append(button);
    } else {
      first.textContent = label;
    }
    tr.append(first, el('td', number(row.events), 'num'),
      el('td', total ? `${(100 * row.events / total).toFixed(1)}%` : '–', 'num'),
      ...answer.columns.map((c) => el('td', number(row.stats[c]), 'num')));
    return tr;
  };
  const rows = answer.rows.map((row) => {
    const value = row.key[field(by)];
    return value === null ? line(row, '(none)', false) : line(row, value, true);
  });
  if (answer.others) {
    const others = line(answer.others, 'others', false);
    others.className = 'others';
    rows.push(others);
  }
  $('breakdown-body').replaceChildren(...rows);
}

function renderTiles(m) {
  const container = $('metric-tiles');
  const tiles = m.types.flatMap((t) => t.measures.map((ms) => {
    const tile = el('div', null, 'tile');
    tile.dataset.metric = `${t.name}.${ms.name}`;
    tile.append(el('span', `${t.name} · ${ms.name}`, 'label'), el('span', number(ms.last), 'value'));
    const stats = el('span', null, 'stats');
    stats.append(el('span', `mean ${brief(ms.mean)}`), el('span', `p95 ${brief(ms.p95)}`));
    tile.append(stats);
    return tile;
  }));
  container.replaceChildren(...tiles);
}

showRange();
renderChips();
const openTab = tabs.find((t) => t.id === `tab-${state.view.tab}`);
if (openTab) selectTab(openTab, { remember: false });
live.connect(state.view.params(), initialToken());
watchAlerts(authHeaders);

// The dashboard: tabs, controls, and rendering of the live metrics.

import { barChart, doughnutChart, resizeWithin, setBars, setSeries, timeChart } from './charts.js';
import { brief, clock, colour, el, nthColour, number, setOptions } from './format.js';
import { Live } from './live.js';

const MAX_EVENTS = 50;
const $ = (id) => document.getElementById(id);

const state = {
  metrics: null,
  events: [],
  paused: false,
  pending: false,
  window: new URLSearchParams(location.search).get('window') || '5m',
};

// ---- tabs -------------------------------------------------------------
const tabs = [...document.querySelectorAll('[role="tab"]')];
function selectTab(tab) {
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

// ---- controls -----------------------------------------------------------
const windowSelect = $('window');
windowSelect.value = state.window;
windowSelect.addEventListener('change', () => {
  state.window = windowSelect.value;
  $('window-label').textContent = windowSelect.selectedOptions[0].textContent.toLowerCase();
  connect();
});
$('pause').addEventListener('click', () => {
  state.paused = !state.paused;
  $('pause').setAttribute('aria-pressed', String(state.paused));
  $('pause').textContent = state.paused ? 'Resume' : 'Pause';
  if (!state.paused && state.pending) render();
});
for (const id of ['series-type', 'series-field', 'dist-type', 'dist-dimension', 'compare-stat']) {
  $(id).addEventListener('change', render);
}

// ---- live data ------------------------------------------------------------
const statusEl = $('status');
const live = new Live(onMessage, (s, text) => {
  statusEl.dataset.state = s;
  statusEl.textContent = text;
}, askForToken);

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
  live.connect({ window: state.window }, token);
});

function connect() {
  live.connect({ window: state.window });
}

function onMessage(message) {
  if (!message || !message.metrics) return;
  state.metrics = message.metrics;
  const fresh = Array.isArray(message.events) ? message.events : [];
  if (message.kind === 'snapshot') {
    state.events = fresh.slice(0, MAX_EVENTS);
  } else if (fresh.length) {
    state.events = fresh.concat(state.events).slice(0, MAX_EVENTS);
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
  $('events-per-second').textContent = number(m.windowSeconds ? lastMinuteRate(m) : rate);
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
  if (d && d.others > 0) { labels.push('others'); values.push(d.others); }
  charts.distribution.data.labels = labels;
  charts.distribution.data.datasets[0].data = values;
  charts.distribution.data.datasets[0].backgroundColor = labels.map((l, i) => (l === 'others' ? '#98a2b3' : nthColour(i)));
  charts.distribution.update('none');

  const stat = $('compare-stat').value;
  const bars = m.types.flatMap((x) => x.measures.map((ms) => ({ label: `${x.name} · ${ms.name}`, value: ms[stat], type: x.name })))
    .filter((b) => typeof b.value === 'number' && b.value > 0);
  setBars(charts.compare, bars.map((b) => b.label), bars.map((b) => b.value), bars.map((b) => colour(b.type)));
  renderTiles(m);
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

$('window-label').textContent = windowSelect.selectedOptions[0].textContent.toLowerCase();
live.connect({ window: state.window }, initialToken());

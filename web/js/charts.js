// Chart.js helpers: every chart is created once and updated in place, with
// colours taken from the page's theme.

import { axisTime, colour, number as compactNumber } from './format.js';

const Chart = window.Chart;

function theme() {
  const css = getComputedStyle(document.documentElement);
  return {
    text: css.getPropertyValue('--text').trim(),
    muted: css.getPropertyValue('--muted').trim(),
    grid: css.getPropertyValue('--grid').trim(),
  };
}

function baseOptions() {
  const t = theme();
  return {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    interaction: { mode: 'nearest', intersect: false },
    plugins: {
      legend: { labels: { color: t.muted, boxWidth: 12, boxHeight: 12 } },
      tooltip: { enabled: true },
    },
  };
}

function axis(extra = {}) {
  const t = theme();
  return { grid: { color: t.grid }, ticks: { color: t.muted, maxRotation: 0 }, border: { color: t.grid }, ...extra };
}

const charts = new Set();

/** Re-reads the theme colours when the system switches between light and dark. */
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
  const t = theme();
  for (const chart of charts) {
    for (const scale of Object.values(chart.options.scales || {})) {
      scale.grid.color = t.grid;
      scale.ticks.color = t.muted;
      if (scale.border) scale.border.color = t.grid;
    }
    chart.options.plugins.legend.labels.color = t.muted;
    chart.update('none');
  }
});

function make(canvas, config) {
  const chart = new Chart(canvas, config);
  charts.add(chart);
  return chart;
}

/**
 * Sizes the charts inside `element` now. A chart made while its panel was
 * hidden has no size until Chart.js notices the panel shown, a frame later.
 */
export function resizeWithin(element) {
  for (const chart of charts) {
    if (element.contains(chart.canvas)) chart.resize();
  }
}

/** A time-series line chart; x values are milliseconds. */
export function timeChart(canvas, { stacked = false, yTitle = '' } = {}) {
  return make(canvas, {
    type: 'line',
    data: { datasets: [] },
    options: {
      ...baseOptions(),
      parsing: false,
      normalized: true,
      scales: {
        x: axis({ type: 'linear', ticks: { color: theme().muted, maxRotation: 0, autoSkipPadding: 16,
          // `this` is the scale; the step is set by setSeries.
          callback(v) { return axisTime(v, this.chart.$step || 1); } } }),
        y: axis({ beginAtZero: true, stacked, title: { display: !!yTitle, text: yTitle, color: theme().muted } }),
      },
      elements: { point: { radius: 0, hitRadius: 6 }, line: { tension: 0.25, borderWidth: 2 } },
    },
  });
}

/** A bar chart over categories. */
export function barChart(canvas, { horizontal = false, logarithmic = false, legend = false } = {}) {
  const valueAxis = axis({ type: logarithmic ? 'logarithmic' : 'linear', beginAtZero: !logarithmic });
  if (logarithmic) {
    // Label powers of ten only, so labels never collide.
    valueAxis.ticks.callback = (v) => (Number.isInteger(Math.log10(v)) ? compactNumber(v) : '');
  }
  const options = baseOptions();
  options.indexAxis = horizontal ? 'y' : 'x';
  options.plugins.legend.display = legend;
  options.scales = horizontal ? { x: valueAxis, y: axis() } : { x: axis(), y: valueAxis };
  return make(canvas, { type: 'bar', data: { labels: [], datasets: [] }, options });
}

/** A doughnut of shares. */
export function doughnutChart(canvas) {
  const options = baseOptions();
  options.plugins.legend.position = 'right';
  options.cutout = '60%';
  options.elements = { arc: { borderColor: getComputedStyle(document.documentElement).getPropertyValue('--surface').trim() } };
  return make(canvas, { type: 'doughnut', data: { labels: [], datasets: [{ data: [], backgroundColor: [] }] }, options });
}

/**
 * Replaces a time chart's series in place: a dataset per name, reused
 * across updates so the chart is never re-created.
 * @param {Array<{name: string, points: Array<{x: number, y: number|null}>}>} series
 */
export function setSeries(chart, series, stepSeconds, { fill = false } = {}) {
  chart.$step = stepSeconds;
  const byName = new Map(chart.data.datasets.map((d) => [d.label, d]));
  chart.data.datasets = series.map(({ name, points }) => {
    const dataset = byName.get(name) || {
      label: name,
      borderColor: colour(name),
      backgroundColor: `${colour(name)}33`,
      pointBackgroundColor: colour(name),
      fill,
      spanGaps: true,
    };
    dataset.data = points;
    // A line needs two values: a lone one (a first burst of events) is drawn as a dot.
    dataset.pointRadius = points.filter((p) => p.y != null).length < 2 ? 3 : 0;
    return dataset;
  });
  chart.update('none');
}

/** Replaces a category chart's labels and values in place. */
export function setBars(chart, labels, values, colours) {
  chart.data.labels = labels;
  if (!chart.data.datasets.length) chart.data.datasets.push({ data: [], borderRadius: 4, maxBarThickness: 28 });
  const dataset = chart.data.datasets[0];
  dataset.data = values;
  dataset.backgroundColor = colours;
  const valueScale = chart.options.scales[chart.options.indexAxis === 'y' ? 'x' : 'y'];
  if (valueScale.type === 'logarithmic') {
    // Start a decade below the smallest bar, so every bar is visible.
    const smallest = Math.min(...values.filter((v) => v > 0));
    valueScale.min = Number.isFinite(smallest) ? 10 ** (Math.floor(Math.log10(smallest)) - 1) : undefined;
  }
  chart.update('none');
}

// Time-series charts with the vendored uPlot (console/vendor, MIT). Each chart comes with
// its numbers as text (a list of totals), for screen readers and for anyone who wants the
// figure rather than the curve.

import { h, usd } from './ui.js';

const PALETTE = ['#2f6fde', '#d9480f', '#2b8a3e', '#9c36b5', '#e67700', '#0c8599', '#c2255c', '#5c940d'];

/**
 * `series`: `[{label, values}]` over the shared `xs` (unix seconds). Returns the element
 * (chart + totals) to insert.
 */
export function spendChart(title, xs, series) {
  const plotBox = h('div', { class: 'chart', role: 'img', 'aria-label': `${title}: line chart of spend in USD over time` });
  const totals = h('ul', { class: 'chart-totals', 'aria-label': `${title}: totals` },
    series.map((s, i) => h('li', { 'data-series': s.label },
      h('span', { class: `swatch c${i % PALETTE.length}`, 'aria-hidden': 'true' }),
      `${s.label}: `, h('strong', { 'data-total': '' }, usd(s.values.reduce((a, b) => a + (b || 0), 0))))));
  const box = h('figure', { class: 'chart-figure' }, h('figcaption', {}, title), plotBox, totals);
  // uPlot measures its container: draw once the figure is in the document.
  requestAnimationFrame(() => draw(plotBox, xs, series));
  return box;
}

function draw(el, xs, series) {
  if (!window.uPlot || !el.isConnected) return;
  const ink = getComputedStyle(document.body).color;
  const grid = { stroke: 'rgba(128,128,128,0.25)', width: 1 };
  const opts = {
    width: Math.max(280, el.clientWidth),
    height: 260,
    scales: { x: { time: true } },
    legend: { live: false },
    axes: [
      { stroke: ink, grid, ticks: grid },
      { stroke: ink, grid, ticks: grid, size: 90, values: (u, vals) => vals.map((v) => `$${+v.toPrecision(3)}`) },
    ],
    series: [{}, ...series.map((s, i) => ({
      label: s.label,
      stroke: PALETTE[i % PALETTE.length],
      width: 2,
      points: { show: xs.length < 60 },
      value: (u, v) => (v === null ? '—' : usd(v)),
    }))],
  };
  const plot = new window.uPlot(opts, [xs, ...series.map((s) => s.values)], el);
  new ResizeObserver(() => {
    if (el.clientWidth) plot.setSize({ width: el.clientWidth, height: 260 });
  }).observe(el);
}

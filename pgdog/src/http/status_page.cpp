#include "http/status_page.hpp"

#include <string>
#include <utility>

namespace pgdog::http {

std::string_view status_page() {
  static constexpr std::string_view kPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pgdog: mirror readiness</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem; color: #1d2330; background: #f6f7f9; }
  h1 { font-size: 1.4rem; margin: 0 0 .3rem; }
  .sub { color: #5b6475; margin-bottom: 1.5rem; }
  .mirror { background: #fff; border-radius: 8px; padding: 1rem 1.25rem; margin-bottom: 1rem;
            box-shadow: 0 1px 3px rgba(0,0,0,.08); }
  .verdict { display: inline-block; padding: .15rem .6rem; border-radius: 999px; font-weight: 600; }
  .ready { background: #d8f5df; color: #13632c; }
  .not-ready { background: #fde2e1; color: #8a1c16; }
  table { border-collapse: collapse; width: 100%; margin-top: .75rem; }
  td, th { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #eceef2; vertical-align: top; }
  td.ok { color: #13632c; } td.fail { color: #8a1c16; font-weight: 600; }
  .numbers span { margin-right: 1.25rem; }
  #error { color: #8a1c16; }
  .history { display: flex; flex-wrap: wrap; gap: .5rem 1rem; margin-top: .9rem; }
  svg.chart { background: #fafbfc; border-radius: 4px; }
  svg.chart text { font: 10px system-ui, sans-serif; fill: #5b6475; }
  svg.chart text.title { font-weight: 600; fill: #1d2330; }
  svg.chart text.current { font-size: 12px; font-weight: 700; fill: #1d2330; }
  svg.chart line.axis { stroke: #dde1e8; }
  #cutovers .mirror h2 { font-size: 1.05rem; margin: 0; }
  td.result-ok { color: #13632c; } td.result-failed, td.result-refused { color: #8a1c16; }
  svg.chart polyline { fill: none; stroke: #2f6fdb; stroke-width: 1.5; stroke-linejoin: round; stroke-linecap: round; }
</style>
</head>
<body>
<h1>pgdog mirror readiness</h1>
<div class="sub">Refreshes every 2 s from <code>/mirrors</code> and <code>/mirrors/history</code> (the last 15 minutes, one reading a second). Full criteria and PromQL: docs/migration-readiness.md.</div>
<div id="error"></div>
<div id="cutovers"></div>
<div id="mirrors">Loading…</div>
<script>
function text(s) { return String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c])); }

function renderVerdict(m) {
  const t = m.totals;
  const rows = m.criteria.map(c =>
    '<tr><td class="' + (c.ok ? 'ok' : 'fail') + '">' + (c.ok ? 'pass' : 'FAIL') + '</td>' +
    '<td>' + text(c.name) + '</td><td>' + text(c.reason) + '</td></tr>').join('');
  return '<h2>' + text(m.cluster) + ' <span class="verdict ' + (m.ready ? 'ready">READY' : 'not-ready">NOT READY') +
    '</span></h2>' +
    '<div class="numbers"><span>window ' + Math.round(m.window_seconds) + ' s</span>' +
    '<span>mirrored ' + t.handed + '</span><span>success ' + t.success + '</span>' +
    '<span>failed ' + t.failure + '</span><span>dropped ' + t.dropped + '</span>' +
    '<span>divergent ' + t.divergences + '</span></div>' +
    '<table><tr><th></th><th>criterion</th><th>why</th></tr>' + rows + '</table>';
}

const percent = v => (100 * v).toFixed(1) + '%';
const count = v => String(Math.round(v));
const duration = v => v === 0 ? '0 ms' : v < 1 ? (1000 * v).toPrecision(3) + ' ms' : v.toFixed(2) + ' s';

// One chart per reading of /mirrors/history. `floor`: a value the y axis always shows (0 for
// amounts); `ceiling` likewise (1 for the ratio).
const CHARTS = [
  {key: 'success_ratio', title: 'success ratio', format: percent, ceiling: 1},
  {key: 'queue_depth', title: 'queue depth', format: count, floor: 0},
  {key: 'lag_seconds', title: 'lag', format: duration, floor: 0},
  {key: 'primary_p99_seconds', title: 'primary p99', format: duration, floor: 0},
  {key: 'mirror_p99_seconds', title: 'mirror p99', format: duration, floor: 0},
  {key: 'divergences', title: 'divergences / s', format: count, floor: 0},
];
const W = 260, H = 84, LEFT = 46, RIGHT = 254, TOP = 20, BOTTOM = 66;

function yRange(values, chart) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (chart.floor !== undefined) lo = Math.min(lo, chart.floor);
  if (chart.ceiling !== undefined) hi = Math.max(hi, chart.ceiling);
  if (hi === lo) { if (hi > 0) lo = 0; else hi = lo + 1; }
  return [lo, hi];
}

// Runs of consecutive readings that have a value, as "x,y x,y" strings: a second without one
// (no mirrored transaction ended) breaks the line instead of being drawn as zero.
function segments(readings, key, x, y) {
  const runs = [];
  let run = [];
  for (const r of readings) {
    if (r[key] === null) { if (run.length) runs.push(run); run = []; continue; }
    run.push(x(r.at).toFixed(1) + ',' + y(r[key]).toFixed(1));
  }
  if (run.length) runs.push(run);
  return runs.map(points => points.join(' '));
}

// Over the whole history: every request that ended, not the average of per-second ratios.
function overallSuccess(readings) {
  let success = 0, ended = 0;
  for (const r of readings) { success += r.success; ended += r.success + r.failure; }
  return ended ? percent(success / ended) : 'nothing ended';
}

function svgText(cls, x, y, anchor, s) {
  return '<text class="' + cls + '" x="' + x + '" y="' + y + '" text-anchor="' + anchor + '">' + text(s) + '</text>';
}

function renderChart(readings, chart) {
  const values = readings.map(r => r[chart.key]).filter(v => v !== null);
  const latest = readings.length ? readings[readings.length - 1][chart.key] : null;
  const t0 = readings.length ? readings[0].at : 0;
  const span = readings.length ? readings[readings.length - 1].at - t0 : 0;
  let body = svgText('title', 2, 12, 'start', chart.title) +
    svgText('current', RIGHT, 12, 'end', latest === null ? 'idle' : chart.format(latest));
  if (values.length) {
    const [lo, hi] = yRange(values, chart);
    const x = at => span > 0 ? LEFT + (at - t0) / span * (RIGHT - LEFT) : (LEFT + RIGHT) / 2;
    const y = v => BOTTOM - (v - lo) / (hi - lo) * (BOTTOM - TOP);
    body += svgText('ymax', LEFT - 4, TOP + 4, 'end', chart.format(hi)) +
      svgText('ymin', LEFT - 4, BOTTOM, 'end', chart.format(lo)) +
      segments(readings, chart.key, x, y).map(p => '<polyline points="' + p + '"/>').join('');
  } else {
    body += svgText('empty', (LEFT + RIGHT) / 2, (TOP + BOTTOM) / 2 + 4, 'middle', 'no data yet');
  }
  body += svgText('time', LEFT, H - 4, 'start', '−' + Math.round(span) + ' s') + svgText('time', RIGHT, H - 4, 'end', 'now');
  if (chart.key === 'success_ratio') body += svgText('overall', (LEFT + RIGHT) / 2, H - 4, 'middle', 'all: ' + overallSuccess(readings));
  return '<svg class="chart" data-metric="' + chart.key + '" data-points="' + values.length +
    '" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + ' ' + H + '" role="img" aria-label="' +
    text(chart.title) + '"><line class="axis" x1="' + LEFT + '" y1="' + BOTTOM + '" x2="' + RIGHT + '" y2="' + BOTTOM + '"/>' +
    body + '</svg>';
}

function renderHistory(readings) {
  if (readings === undefined) return '';
  return '<div class="history">' + CHARTS.map(c => renderChart(readings, c)).join('') + '</div>';
}

// history: GET /mirrors/history, or null when it could not be read (the verdicts still show).
function render(data, history) {
  const root = document.getElementById('mirrors');
  if (!data.mirrors.length) { root.innerHTML = '<p>No mirror is configured.</p>'; return; }
  const readings = {};
  for (const h of (history ? history.mirrors : [])) readings[h.cluster] = h.readings;
  root.innerHTML = data.mirrors.map(m =>
    '<div class="mirror" data-cluster="' + text(m.cluster) + '">' + renderVerdict(m) +
    renderHistory(readings[m.cluster]) + '</div>').join('');
}

// GET /cutovers: which cluster serves each database with mirrors, and every cutover since the
// start, newest first. Read-only: cutovers are made on the admin console (docs/cutover.md).
function renderCutovers(c) {
  const root = document.getElementById('cutovers');
  if (!c || (!c.serving.length && !c.events.length)) { root.innerHTML = ''; return; }
  const serving = c.serving.map(s => '<span>' + text(s.database) + ' &rarr; <b>' + text(s.cluster) +
    '</b> (' + text(s.server) + ')</span>').join('');
  const rows = c.events.slice().reverse().map(e => '<tr><td>' + text(e.at) + '</td><td>' +
    text(e.database) + '</td><td>' + text(e.from) + ' &rarr; ' + text(e.to) + '</td><td>' +
    (e.followed ? 'followed' : 'here') + '</td><td>' + (e.held_seconds * 1000).toFixed(0) +
    ' ms</td><td class="result-' + text(e.result) + '">' + text(e.result) + '</td><td>' +
    text(e.step ? e.step + ': ' + e.error : '') + '</td></tr>').join('');
  root.innerHTML = '<div class="mirror"><h2>Serving now</h2><div class="numbers">' + serving +
    '</div>' + (rows ? '<table class="cutover-history"><tr><th>at</th><th>database</th>' +
    '<th>from &rarr; to</th><th>origin</th><th>held</th><th>result</th><th>why</th></tr>' + rows +
    '</table>' : '<p>No cutover yet.</p>') + '</div>';
}

async function getJson(path) {
  const r = await fetch(path, {cache: 'no-store'});
  if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
  return r.json();
}

async function refresh() {
  try {
    const [data, history, cutovers] = await Promise.all([getJson('/mirrors'),
      getJson('/mirrors/history').catch(() => null), getJson('/cutovers').catch(() => null)]);
    render(data, history);
    renderCutovers(cutovers);
    document.getElementById('error').textContent = '';
  } catch (e) {
    document.getElementById('error').textContent = 'Cannot reach pgdog: ' + e;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
)html";
  return kPage;
}

void add_readiness_routes(Server& server, std::function<std::vector<stats::Verdict>()> verdicts) {
  server.add_route("/mirrors", [verdicts = std::move(verdicts)](std::string_view) {
    return Response{200, "application/json", stats::to_json(verdicts())};
  });
  server.add_route("/", [](std::string_view) {
    return Response{200, "text/html; charset=utf-8", std::string(status_page())};
  });
}

void add_history_route(Server& server, std::shared_ptr<const stats::MirrorHistories> history) {
  server.add_route("/mirrors/history", [history = std::move(history)](std::string_view) {
    return Response{200, "application/json", stats::to_json(history->snapshot())};
  });
}

}  // namespace pgdog::http

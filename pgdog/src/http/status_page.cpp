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
</style>
</head>
<body>
<h1>pgdog mirror readiness</h1>
<div class="sub">Refreshes every 2 s from <code>/mirrors</code>. Full criteria and PromQL: docs/migration-readiness.md.</div>
<div id="error"></div>
<div id="mirrors">Loading…</div>
<script>
function text(s) { return String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c])); }
function render(data) {
  const root = document.getElementById('mirrors');
  if (!data.mirrors.length) { root.innerHTML = '<p>No mirror is configured.</p>'; return; }
  root.innerHTML = data.mirrors.map(m => {
    const t = m.totals;
    const rows = m.criteria.map(c =>
      '<tr><td class="' + (c.ok ? 'ok' : 'fail') + '">' + (c.ok ? 'pass' : 'FAIL') + '</td>' +
      '<td>' + text(c.name) + '</td><td>' + text(c.reason) + '</td></tr>').join('');
    return '<div class="mirror" data-cluster="' + text(m.cluster) + '">' +
      '<h2>' + text(m.cluster) + ' <span class="verdict ' + (m.ready ? 'ready">READY' : 'not-ready">NOT READY') +
      '</span></h2>' +
      '<div class="numbers"><span>window ' + Math.round(m.window_seconds) + ' s</span>' +
      '<span>mirrored ' + t.handed + '</span><span>success ' + t.success + '</span>' +
      '<span>failed ' + t.failure + '</span><span>dropped ' + t.dropped + '</span>' +
      '<span>divergent ' + t.divergences + '</span></div>' +
      '<table><tr><th></th><th>criterion</th><th>why</th></tr>' + rows + '</table></div>';
  }).join('');
}
async function refresh() {
  try {
    const r = await fetch('/mirrors', {cache: 'no-store'});
    render(await r.json());
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

}  // namespace pgdog::http

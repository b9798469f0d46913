// Ferry console: the dashboard (statistics API, behind the admin token).
"use strict";

const dashboard = { token: sessionStorage.getItem("ferry.admin") || "", timer: null };

async function showDashboard() {
  const span = Number($("#window").value);
  const token = dashboard.token;
  const now = Date.now();
  const buckets = 12, step = span * 1000 / buckets;
  const since = `${span}s`;
  const [byNetwork, byScenario, overall, recent] = await Promise.all([
    fetchJSON(`/admin/stats?since=${since}&by=network`, token),
    fetchJSON(`/admin/stats?since=${since}&by=scenario`, token),
    fetchJSON(`/admin/stats?since=${since}`, token),
    fetchJSON(`/admin/uploads?since=${since}&limit=500`, token),
  ]);
  // Success rate and goodput over time: one aggregate per bucket of the window.
  const by = $("#chart-by").value;
  for (const label of document.querySelectorAll(".chart-by")) label.textContent = $("#chart-by").selectedOptions[0].text;
  const series = await Promise.all([...Array(buckets).keys()].map(async i => {
    const from = new Date(now - span * 1000 + i * step), to = new Date(now - span * 1000 + (i + 1) * step);
    const report = await fetchJSON(`/admin/stats?from=${from.toISOString()}&to=${to.toISOString()}&by=${by}`, token);
    return { at: to, groups: report.groups };
  }));
  const all = overall.groups[0] || {};
  $("#active").textContent = overall.active;
  $("#created").textContent = all.created ?? 0;
  $("#success").textContent = formatPercent(all.successRate);
  $("#ttc").textContent = formatSeconds(all.timeToComplete?.p50);
  $("#goodput").textContent = formatRate(all.goodput?.p50);
  $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;

  const keys = [...new Set(series.flatMap(b => b.groups.map(g => g.key[by])))].sort();
  const line = (measure) => keys.map(key => ({
    name: key,
    points: series.map(b => ({ x: b.at, y: measure(b.groups.find(g => g.key[by] === key)) })),
  }));
  lineChart($("#chart-success"), line(g => g?.successRate ?? null), { format: v => `${Math.round(v * 100)}%`, maxY: 1 });
  lineChart($("#chart-goodput"), line(g => g?.goodput?.p50 ?? null), { format: v => formatRate(v) });
  barChart($("#chart-scenarios"), byScenario.groups.map(g => ({
    name: g.key.scenario,
    segments: [{ value: g.completed }, { value: g.expired + g.terminated }, { value: g.open }],
  })), ["completed", "failed", "open"], ["#1a7f37", "#cf222e", "#8c959f"]);

  groupTable($("#by-network"), "network", byNetwork.groups);
  groupTable($("#by-scenario"), "scenario", byScenario.groups);
  troubledTable(recent.uploads.filter(u => u.state === "expired" || u.state === "terminated" || u.interrupted >= 3));
}

function groupTable(table, dimension, groups) {
  const head = el("tr", {}, ...[dimension, "created", "completed", "failed", "open", "success", "time p50", "time p90", "time p99",
    "goodput p50", "goodput p90", "data", "instant (saved)", "resumed / upload"].map((name, i) => el("th", { class: i ? "num" : "" }, name)));
  const rows = groups.map(g => el("tr", {},
    el("td", {}, g.key[dimension]),
    ...[g.created, g.completed, g.expired + g.terminated, g.open, formatPercent(g.successRate),
      formatSeconds(g.timeToComplete.p50), formatSeconds(g.timeToComplete.p90), formatSeconds(g.timeToComplete.p99),
      formatRate(g.goodput.p50), formatRate(g.goodput.p90), formatBytes(g.bytes),
      g.instant ? `${g.instant} (${formatBytes(g.bytesSaved)})` : "0", g.resumptionsPerUpload.toFixed(2)]
      .map(value => el("td", { class: "num" }, value))));
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...(rows.length ? rows : [el("tr", {}, el("td", { class: "muted" }, "no uploads in this window"))])));
}

function troubledTable(list) {
  const body = $("#troubled tbody");
  body.replaceChildren(...list.map(u => el("tr", { class: "clickable", onclick: () => showDetail(u.id), "data-id": u.id },
    el("td", {}, el("code", {}, u.id.slice(0, 12) + "…")), el("td", {}, u.scenario), el("td", {}, u.network), el("td", {}, u.client),
    el("td", { class: `state-${u.state}` }, u.state), el("td", { class: "num" }, u.interrupted), el("td", { class: "num" }, u.resumptions),
    el("td", {}, new Date(u.createdAt).toLocaleString()))));
  if (list.length === 0) body.append(el("tr", {}, el("td", { class: "muted", colspan: 8 }, "none in this window")));
}

async function showDetail(id) {
  const detail = await fetchJSON(`/admin/uploads/${id}`, dashboard.token);
  const box = $("#detail");
  box.classList.remove("hidden");
  if (detail.status === "pending") {
    box.replaceChildren(el("p", {}, `Upload ${id}: statistics pending, try again in a second.`));
    return;
  }
  const u = detail.upload;
  box.replaceChildren(
    el("h2", {}, `Upload ${u.id}`),
    el("p", {}, `${u.scenario} · ${u.dialect} · ${u.client} on ${u.network} · ${u.state} · ${formatBytes(u.bytes)} received of ${formatBytes(u.length)} · `,
      `${u.requests} requests, ${u.interrupted} interrupted, ${u.resumptions} resumptions`),
    el("table", {}, el("thead", {}, el("tr", {}, ...["time", "request", "from offset", "bytes", "seconds", "outcome"].map(h => el("th", {}, h)))),
      el("tbody", {}, ...detail.requests.map(r => el("tr", {}, el("td", {}, new Date(r.at).toLocaleTimeString()), el("td", {}, r.method),
        el("td", { class: "num" }, formatBytes(r.offset)), el("td", { class: "num" }, formatBytes(r.bytes)),
        el("td", { class: "num" }, r.seconds.toFixed(2)), el("td", { class: r.outcome === "ok" ? "" : "state-failed" }, r.outcome))))),
    el("p", { class: "muted" }, detail.events.length ? `events: ${detail.events.map(e => `${e.type} ${e.state}`).join(", ")}` : "no webhook events"),
  );
  box.scrollIntoView({ behavior: "smooth" });
}

async function startDashboard() {
  clearInterval(dashboard.timer);
  try {
    await showDashboard();
    $("#login").classList.add("hidden");
    $("#dashboard").classList.remove("hidden");
    $("#login-error").textContent = "";
    dashboard.timer = setInterval(() => showDashboard().catch(() => {}), 5000);
  } catch (error) {
    $("#login").classList.remove("hidden");
    $("#dashboard").classList.add("hidden");
    $("#login-error").textContent = error.status === 401 ? "the admin token was refused" : `the statistics could not be read: ${error.message}`;
  }
}

$("#login").addEventListener("submit", event => {
  event.preventDefault();
  dashboard.token = $("#admin-token").value.trim();
  sessionStorage.setItem("ferry.admin", dashboard.token);
  startDashboard();
});
$("#window").addEventListener("change", () => startDashboard());
$("#chart-by").addEventListener("change", () => startDashboard());
document.addEventListener("ferry:view", event => {
  if (event.detail === "dashboard" && dashboard.token) startDashboard();
  if (event.detail !== "dashboard") clearInterval(dashboard.timer);
});

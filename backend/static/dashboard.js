// The leads' dashboard in the browser: draws the server's plotly figures, sorts tables, and drives the routing
// override, rollback and live run progress through the platform API. Requests are same-origin, so the browser
// sends the credentials it used for the page (basic auth) with each of them.
"use strict";

function say(text, isError) {
  const box = document.getElementById("message");
  if (!box) return;
  box.textContent = text;
  box.className = isError ? "error" : "";
}

async function callApi(method, url, body) {
  const reply = await fetch(url, {
    method: method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = null;
  try {
    data = await reply.json();
  } catch (err) {
    data = null;
  }
  if (!reply.ok) {
    const reason = data && (data.error || data.detail) ? data.error || JSON.stringify(data.detail) : reply.statusText;
    throw new Error(`${method} ${url}: ${reply.status} ${reason}`);
  }
  return data;
}

function drawCharts() {
  const source = document.getElementById("charts");
  if (!source || typeof Plotly === "undefined") return;
  const charts = JSON.parse(source.textContent);
  for (const [id, figure] of Object.entries(charts)) {
    const element = document.getElementById(`chart-${id}`);
    if (element) Plotly.newPlot(element, figure.data, figure.layout, { displaylogo: false, responsive: true });
  }
}

// Tables sort by a header click: the cell's data-sort when it has one, numerically for data-type="number".
function cellValue(row, index, numeric) {
  const cell = row.cells[index];
  if (!cell) return numeric ? -Infinity : "";
  const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
  if (!numeric) return raw.toLowerCase();
  const value = parseFloat(raw.replace(/,/g, ""));
  return Number.isNaN(value) ? -Infinity : value;
}

function makeSortable(table) {
  const headers = Array.from(table.tHead ? table.tHead.rows[0].cells : []);
  headers.forEach((th, index) => {
    th.addEventListener("click", () => {
      const numeric = th.dataset.type === "number";
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      headers.forEach((other) => other.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows).filter((r) => r.cells.length === headers.length);
      rows.sort((a, b) => {
        const x = cellValue(a, index, numeric);
        const y = cellValue(b, index, numeric);
        const order = x < y ? -1 : x > y ? 1 : 0;
        return ascending ? order : -order;
      });
      rows.forEach((r) => body.appendChild(r));
    });
  });
}

function wireRouting() {
  document.querySelectorAll("button.route-apply").forEach((button) => {
    button.addEventListener("click", async () => {
      const row = button.closest("tr");
      const route = row.querySelector("select.route-choice").value;
      const label = button.dataset.label;
      button.disabled = true;
      try {
        const url = `/api/projects/${button.dataset.project}/routing/${encodeURIComponent(label)}`;
        const table = await callApi("PUT", url, { route: route });
        const entry = table.routes.find((r) => r.label === label);
        row.querySelector(".route").textContent = entry.route;
        row.querySelector(".source").textContent = entry.source;
        say(`${label} is routed to the ${entry.route === "llm" ? "LLM" : "model"} (${entry.source})`, false);
      } catch (err) {
        say(err.message, true);
      } finally {
        button.disabled = false;
      }
    });
  });
}

function wireRollback() {
  document.querySelectorAll("button.rollback").forEach((button) => {
    button.addEventListener("click", async () => {
      const version = button.dataset.version;
      if (!window.confirm(`Serve ${version} again? The pool is rescored with it.`)) return;
      button.disabled = true;
      try {
        const reply = await callApi("POST", `/api/projects/${button.dataset.project}/rollback`, { version: version });
        say(`now serving ${reply.current_version}`, false);
        window.location.reload();
      } catch (err) {
        say(err.message, true);
        button.disabled = false;
      }
    });
  });
}

// Runs that are queued or training: their stage, percent and ETA follow /api/runs/{id}; the page reloads when one
// ends, to show its version and decision.
function followRuns() {
  const live = Array.from(document.querySelectorAll("tr[data-run]")).filter((row) =>
    ["queued", "running"].includes(row.dataset.status),
  );
  if (!live.length) return;
  const tick = async () => {
    let ended = false;
    for (const row of live) {
      try {
        const run = await callApi("GET", `/api/runs/${row.dataset.run}`);
        row.querySelector(".status").textContent = run.status;
        row.querySelector(".stage").textContent = run.stage;
        row.querySelector(".progress progress").value = run.progress;
        row.querySelector(".progress span").textContent = `${Math.round(100 * run.progress)}%`;
        row.querySelector(".eta").textContent =
          run.eta_s && run.status === "running" ? `${Math.round(run.eta_s)} s` : "-";
        ended = ended || !["queued", "running"].includes(run.status);
      } catch (err) {
        say(err.message, true);
      }
    }
    if (ended) window.location.reload();
    else window.setTimeout(tick, 3000);
  };
  window.setTimeout(tick, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  drawCharts();
  document.querySelectorAll("table.sortable").forEach(makeSortable);
  wireRouting();
  wireRollback();
  followRuns();
});

// Progressive enhancement only: every page works without this file. Where it runs, it makes the
// same requests the page's forms and links make, and shows the server's answers in place: the
// server stays the only place that reads, changes and judges a policy document.
document.documentElement.classList.add("js");

document.addEventListener("DOMContentLoaded", () => {
  copyButtons();
  const editor = document.getElementById("policy-editor");
  if (editor) policyEditor(editor);
  const tail = document.getElementById("live-tail");
  if (tail) liveTail(tail);
  const filters = document.getElementById("audit-filters");
  if (filters) auditFilters(filters);
});

// Copy buttons are hidden in the HTML and shown here, where the clipboard can be reached.
function copyButtons() {
  for (const button of document.querySelectorAll("button.copy[data-copy]")) {
    const target = document.getElementById(button.dataset.copy);
    if (!target || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = "value" in target && target.value !== undefined ? target.value : target.textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        if (target.select) target.select();
        button.textContent = "Press Ctrl+C";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// The policy editor: the builder and the JSON kept in sync through the server's draft action.
// A builder change posts `op=build` and puts the rewritten document into the text area; typing
// posts `op=check` and re-reads the builder from the document; "Try" posts `op=try`. Posts run one
// at a time, so an answer always belongs to the latest state it was asked about.
function policyEditor(form) {
  const url = form.dataset.draft;
  const source = form.querySelector("#source");
  const gutter = form.querySelector("#gutter");
  const findings = form.querySelector("#findings");
  const builder = form.querySelector("#builder");
  const tryResult = form.querySelector("#try-result");
  const syncState = form.querySelector("#sync-state");
  // Start from what the server rendered (a failed publish shows its findings at their lines).
  let marks = Array.from(gutter.querySelectorAll("li.has-finding"), (li) => ({
    line: Number(li.textContent),
    severity: li.classList.contains("error") ? "error" : "warning",
    message: li.title,
  }));
  const hits = gutter.querySelectorAll("li.rule-hit");
  let rule = hits.length
    ? { first_line: Number(hits[0].textContent), last_line: Number(hits[hits.length - 1].textContent) }
    : null;
  let busy = false;
  const pending = new Set();

  function renderGutter() {
    const lines = source.value.split("\n").length;
    source.rows = Math.max(16, lines) + 1;
    const byLine = new Map();
    for (const m of marks) {
      const seen = byLine.get(m.line) ?? { severity: "warning", messages: [] };
      if (m.severity === "error") seen.severity = "error";
      seen.messages.push(m.message);
      byLine.set(m.line, seen);
    }
    const items = document.createDocumentFragment();
    for (let n = 1; n <= lines; n++) {
      const li = document.createElement("li");
      li.id = `line-${n}`;
      li.textContent = n;
      const mark = byLine.get(n);
      if (mark) {
        li.classList.add("has-finding", mark.severity);
        li.title = mark.messages.join("\n");
      }
      if (rule && n >= rule.first_line && n <= rule.last_line) li.classList.add("rule-hit");
      items.append(li);
    }
    gutter.replaceChildren(items);
  }

  function showLine(n) {
    const lines = source.value.split("\n");
    let start = 0;
    for (let i = 0; i < n - 1 && i < lines.length; i++) start += lines[i].length + 1;
    const end = start + (lines[n - 1] ?? "").length;
    source.focus({ preventScroll: true });
    source.setSelectionRange(start, end);
    document.getElementById(`line-${n}`)?.scrollIntoView({ block: "center", behavior: "smooth" });
  }

  async function send(op) {
    busy = true;
    const sent = source.value;
    const body = new URLSearchParams(new FormData(form));
    body.set("op", op);
    syncState.textContent = op === "try" ? "Deciding…" : "Checking…";
    try {
      const response = await fetch(url, {
        method: "POST",
        body,
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const answer = await response.json();
      if (op === "build" && answer.changed) {
        if (source.value === sent) source.value = answer.source;
        else pending.add("build"); // typed meanwhile: apply the builder again to the new text
      }
      findings.innerHTML = answer.findings_html;
      if (answer.builder_html !== null) {
        builder.innerHTML = answer.builder_html;
      }
      builder.querySelector("#builder-paused")?.toggleAttribute("hidden", !answer.paused && !builder.querySelector("fieldset[disabled]"));
      if (answer.try_html !== null) tryResult.innerHTML = answer.try_html;
      marks = answer.marks;
      rule = op === "try" ? answer.rule : null;
      renderGutter();
      const errors = marks.filter((m) => m.severity === "error").length;
      syncState.textContent = errors ? `${errors} error${errors === 1 ? "" : "s"}` : "In sync · valid";
      syncState.dataset.state = errors ? "error" : "ok";
    } catch (e) {
      syncState.textContent = "Could not reach Gatehouse; the buttons still work.";
      syncState.dataset.state = "error";
    } finally {
      busy = false;
      next();
    }
  }

  // Builder changes first (they include a check), then a tried call, then a plain check.
  function next() {
    if (busy) return;
    for (const op of ["build", "try", "check"]) {
      if (pending.has(op)) {
        pending.delete(op);
        if (op !== "check") pending.delete("check");
        send(op);
        return;
      }
    }
  }

  function request(op) {
    pending.add(op);
    next();
  }

  const check = debounce(() => request("check"), 350);
  const build = debounce(() => request("build"), 350);

  source.addEventListener("input", () => {
    renderGutter();
    syncState.textContent = "Editing…";
    check();
  });
  builder.addEventListener("change", (e) => {
    if (!e.target.matches("input[type=radio], select")) return;
    const row = e.target.closest(".tool-setting");
    const recommended = row?.querySelector(".seg.is-recommended input");
    if (recommended) row.querySelector(".recommended-note")?.classList.toggle("differs", !recommended.checked);
    request("build");
  });
  builder.addEventListener("input", (e) => {
    if (e.target.matches("input[type=number]")) build();
  });
  form.addEventListener("submit", (e) => {
    const op = e.submitter?.value;
    if (e.submitter && !["build", "check", "try"].includes(op)) return; // publishing: a real post
    e.preventDefault();
    request(op ?? "check");
  });
  form.addEventListener("click", (e) => {
    const link = e.target.closest("a[data-line], #try-result a[href^='#line-']");
    if (!link) return;
    e.preventDefault();
    showLine(Number(link.dataset.line ?? link.getAttribute("href").slice("#line-".length)));
  });
  renderGutter();
}

// The audit log's live tail: polls for events stored after the newest one shown and puts them on
// top of the table. Without JavaScript the page has a refresh link instead.
function liveTail(button) {
  const tbody = document.getElementById("events");
  const table = document.getElementById("events-table");
  const state = document.getElementById("tail-state");
  const MAX_ROWS = 500;
  let timer = null;
  let seen = 0;
  button.hidden = false;

  async function poll() {
    try {
      const response = await fetch(`${button.dataset.tail}&after=${tbody.dataset.after}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const tail = await response.json();
      tbody.dataset.after = tail.after;
      if (tail.count > 0) {
        tbody.insertAdjacentHTML("afterbegin", tail.html);
        for (const row of Array.from(tbody.rows).slice(0, tail.count)) row.classList.add("fresh");
        while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
        table.hidden = false;
        document.getElementById("no-events")?.remove();
        seen += tail.count;
      }
      const at = new Date().toLocaleTimeString();
      state.textContent = `Live · ${seen} new · checked ${at}`;
    } catch {
      state.textContent = "Live tail paused: Gatehouse did not answer. Retrying…";
    }
  }

  button.addEventListener("click", () => {
    const on = timer === null;
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Live tail: on" : "Live tail: off";
    if (on) {
      poll();
      timer = setInterval(poll, 3000);
    } else {
      clearInterval(timer);
      timer = null;
      state.textContent = "";
    }
  });
}

// Choosing a period clears a from/to range (which would win over it); typing a range picks it.
function auditFilters(form) {
  const period = form.querySelector("select[name=period]");
  const range = form.querySelectorAll("input[name=from], input[name=to]");
  period.addEventListener("change", () => {
    if (period.value !== "custom") for (const input of range) input.value = "";
  });
  for (const input of range) {
    input.addEventListener("input", () => { period.value = "custom"; });
  }
}

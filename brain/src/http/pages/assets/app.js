// z4j dashboard: the few things a server-rendered page cannot do alone.
// Sign-in, sign-out and command buttons call the REST API; the live
// channel (/ws/dashboard) refreshes the page's <main> in place when the
// project changes. No inline script anywhere (the CSP forbids it).
"use strict";

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [k, v] = part.trim().split("=");
    if (k === "z4j_csrf" || k === "__Host-z4j_csrf") return decodeURIComponent(v || "");
  }
  return "";
}

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await resp.json(); } catch (_) { /* empty answer */ }
  return { status: resp.status, data };
}

function message(data, fallback) {
  // A 422 lists each bad field.
  if (data && Array.isArray(data.detail)) {
    return data.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  return (data && (data.message || data.detail || (data.error && data.error.message))) || fallback;
}

function setupLogin() {
  const form = document.getElementById("login");
  if (!form) return;
  const error = document.getElementById("login-error");
  const codeRow = document.getElementById("code-row");
  let needCode = false;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const f = new FormData(form);
    if (!needCode) {
      const r = await api("POST", "/api/v1/auth/login", { email: f.get("email"), password: f.get("password") });
      if (r.status !== 200) { error.textContent = message(r.data, "Sign-in failed"); return; }
      if (r.data && r.data.mfa_required) {
        needCode = true;
        codeRow.hidden = false;
        form.querySelector("input[name=code]").focus();
        return;
      }
    } else {
      const r = await api("POST", "/api/v1/auth/mfa/verify", { code: f.get("code") });
      if (r.status !== 200) { error.textContent = message(r.data, "Code not accepted"); return; }
    }
    const next = form.dataset.next;
    // The server only hands out local paths; check again anyway.
    const local = next && next.startsWith("/") && !next.startsWith("//") && !next.includes("\\");
    location.assign(local ? next : "/home");
  });
}

// The first run's form (/setup?token=...): creates the admin, who is
// signed in by the answer.
function setupFirstAdmin() {
  const form = document.getElementById("setup");
  if (!form) return;
  const error = document.getElementById("setup-error");
  const token = new URLSearchParams(location.search).get("token") || "";
  fetch("/api/v1/auth/policy").then((r) => r.json()).then((p) => {
    document.getElementById("hint").textContent = `(at least ${p.min_length} characters)`;
  }).catch(() => { /* the hint is optional */ });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const f = new FormData(form);
    const r = await api("POST", "/api/v1/setup/complete", {
      token, email: f.get("email"), display_name: f.get("display_name") || null, password: f.get("password"),
    });
    if (r.status === 200 || r.status === 201) { location.assign("/home"); return; }
    error.textContent = message(r.data, "Setup failed");
  });
}

// Set while signing out: the live socket's 4401 close must not send the
// browser to sign-in "and back here".
let signingOut = false;

function setupLogout() {
  const b = document.getElementById("logout");
  if (!b) return;
  b.addEventListener("click", async () => {
    signingOut = true;
    await api("POST", "/api/v1/auth/logout");
    location.assign("/login");
  });
}

// Command buttons: issue through the REST API, then follow the command
// until it finishes (the status line lives outside <main>, so live
// refreshes keep it).
function setupCommands() {
  const flash = document.getElementById("flash");
  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-command]");
    if (!b) return;
    const slug = document.body.dataset.projectSlug;
    const what = b.dataset.command;
    b.disabled = true;
    const r = await api("POST", `/api/v1/projects/${slug}/commands/${what}`, {
      agent_id: b.dataset.agent, engine: b.dataset.engine, task_id: b.dataset.task,
    });
    b.disabled = false;
    if (r.status !== 202 || !r.data || !r.data.id) {
      flash.textContent = `${what}: ${message(r.data, "refused (" + r.status + ")")}`;
      return;
    }
    const id = r.data.id;
    flash.textContent = `${what}: ${r.data.status || "pending"}`;
    for (let i = 0; i < 60; i++) {
      await new Promise((ok) => setTimeout(ok, 1000));
      const c = await api("GET", `/api/v1/projects/${slug}/commands/${id}`);
      if (c.status !== 200 || !c.data) break;
      flash.textContent = `${what}: ${c.data.status}${c.data.error ? " (" + c.data.error + ")" : ""}`;
      if (["completed", "failed", "timeout", "cancelled"].includes(c.data.status)) break;
    }
  });
}

// Agents page: mint (the token is shown once, outside the <main> that live
// refreshes replace) and revoke with a confirmation.
function setupAgents() {
  const slug = document.body.dataset.projectSlug;
  const flash = document.getElementById("flash");
  // Delegated: a live refresh replaces the form.
  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (form.id !== "mint") return;
    ev.preventDefault();
    const name = new FormData(form).get("name");
    const r = await api("POST", `/api/v1/projects/${slug}/agents`, { name });
    if (r.status !== 201 || !r.data) { flash.textContent = `mint: ${message(r.data, "refused (" + r.status + ")")}`; return; }
    document.getElementById("minted-token").textContent = r.data.token;
    document.getElementById("minted-secret").textContent = r.data.hmac_secret;
    document.getElementById("minted").hidden = false;
    flash.textContent = `agent ${name} minted`;
    form.reset();
  });
  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-revoke]");
    if (!b) return;
    if (!confirm(`Revoke agent ${b.dataset.name}? Its token stops working at once.`)) return;
    const r = await api("DELETE", `/api/v1/projects/${slug}/agents/${b.dataset.revoke}`);
    flash.textContent = r.status === 204 ? `agent ${b.dataset.name} revoked` : `revoke: ${message(r.data, "refused (" + r.status + ")")}`;
  });
}

// Tasks page: save the current state, priority and search as a personal
// view, or delete one (the REST API validates and owns them).
function setupSavedViews() {
  const slug = document.body.dataset.projectSlug;
  const flash = document.getElementById("flash");
  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (form.id !== "save-view") return;
    ev.preventDefault();
    const params = new URLSearchParams(window.location.search);
    const priority = (params.get("priority") || "").split(",").filter((p) => p);
    const filters = { state: params.get("state") || null, priority, search: params.get("search") || "" };
    const name = new FormData(form).get("view-name");
    const r = await api("POST", `/api/v1/projects/${slug}/saved-views`, { name, filters });
    if (r.status === 201) { window.location.reload(); return; }
    flash.textContent = `save view: ${message(r.data, "refused (" + r.status + ")")}`;
  });
  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-view-delete]");
    if (!b) return;
    if (!confirm(`Delete the view ${b.dataset.name}?`)) return;
    const r = await api("DELETE", `/api/v1/projects/${slug}/saved-views/${b.dataset.viewDelete}`);
    if (r.status === 204) { window.location.reload(); return; }
    flash.textContent = `delete view: ${message(r.data, "refused (" + r.status + ")")}`;
  });
}

// System page: "Check for updates" fetches Z4J_VERSION_CHECK_URL once, on
// this click only; the page then shows the snapshot the brain now holds.
function setupVersionCheck() {
  const b = document.getElementById("check-updates");
  if (!b) return;
  const flash = document.getElementById("flash");
  b.addEventListener("click", async () => {
    b.disabled = true;
    flash.textContent = "checking for updates…";
    const r = await api("POST", "/api/v1/admin/system/versions/check");
    if (r.status === 200) { window.location.reload(); return; }
    flash.textContent = `check for updates: ${message(r.data, "refused (" + r.status + ")")}`;
    b.disabled = false;
  });
}

// Refetches this page and swaps its <main> in place (live updates and
// forms), at most once a second, keeping focus where it was.
let refreshing = false, again = false;
// Set while a write that leaves the page (`data-go`, e.g. a delete) is in
// flight: its own live event must not refetch a page it is removing.
let leaving = false;
// Set once a refresh finds the page's subject deleted: nothing left to refresh.
let gone = false;

// A selector that finds the focused element again in the fresh <main>.
function focusKey(el) {
  if (!el || !el.closest("#main")) return null;
  if (el.id) return `#${CSS.escape(el.id)}`;
  for (const a of ["name", "href", "data-revoke", "data-command"]) {
    const v = el.getAttribute(a);
    if (v) return `${el.tagName.toLowerCase()}[${a}="${CSS.escape(v)}"]`;
  }
  return null;
}

// `afterWrite`: the refresh a form's own successful write asks for, which
// replaces that form even while its (prefilled) field has focus.
async function refreshMain(afterWrite = false) {
  if (leaving || gone) return;
  if (refreshing) { again = true; return; }
  const active = document.activeElement;
  // Never wipe what someone is typing: try again shortly.
  if (!afterWrite && active && active.closest("#main") && active.matches("input, textarea") && active.value !== "" && active.value !== active.defaultValue) {
    setTimeout(refreshMain, 2000);
    return;
  }
  refreshing = true;
  try {
    const resp = await fetch(location.href, { credentials: "same-origin" });
    if (resp.status === 404) {
      // Deleted elsewhere: say so rather than keep showing it as live.
      gone = true;
      document.getElementById("flash").textContent = "What this page shows no longer exists: it was deleted.";
    } else if (resp.ok) {
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      const fresh = doc.getElementById("main");
      const main = document.getElementById("main");
      if (fresh && main) {
        const key = focusKey(document.activeElement);
        main.replaceWith(fresh);
        const target = key && document.querySelector(`#main ${key}`);
        if (target) target.focus();
      }
    }
  } finally {
    setTimeout(() => { refreshing = false; if (again) { again = false; refreshMain(); } }, 1000);
  }
}


// Forms and buttons that call the REST API, declared in the page:
//   data-api="METHOD /path"   the call (the server renders the path)
//   data-label="…"            names the action in messages
//   data-confirm="…"          asks first (destructive actions)
//   data-body='{…}'           a button's JSON body
//   data-after="reveal"       (else the page refreshes in place)
//   data-reveal="a,b.c"       answer fields shown once in #reveal
//   data-must-match="…"       (a form field) must be typed exactly
//   data-go="/path"           where to go after success (sign-in, a
//                             deleted thing's list)
// Form fields become JSON: data-kind="bool" (checkbox), "int", "csv"
// (comma-separated to a list), "list" (multi-select or checked boxes
// sharing a name), "json" (parsed; a bad one names its field); dotted
// names nest; empty optional fields are left out so the API applies its
// defaults. A form with data-only-changed sends only what was edited (a
// PATCH then changes, and audits, just that).
function unchanged(el) {
  if (el.type === "checkbox" || el.type === "radio") return el.checked === el.defaultChecked;
  if (el.tagName === "SELECT") return [...el.options].every((o) => o.selected === o.defaultSelected);
  return el.value === el.defaultValue;
}

function formBody(form) {
  const body = {};
  const onlyChanged = "onlyChanged" in form.dataset;
  for (const el of form.elements) {
    if (!el.name || el.disabled || el.type === "submit") continue;
    if (onlyChanged && unchanged(el)) continue;
    // "config.url" nests: {config: {url: …}}.
    const path = el.name.split(".");
    const key = path.pop();
    let into = body;
    for (const p of path) into = into[p] = into[p] || {};
    const kind = el.dataset.kind || "text";
    if (kind === "bool") { into[key] = el.checked; continue; }
    if (kind === "list") {
      const vals = el.tagName === "SELECT" ? [...el.selectedOptions].map((o) => o.value) : (el.checked ? [el.value] : []);
      into[key] = (into[key] || []).concat(vals);
      continue;
    }
    if (el.type === "checkbox" || el.type === "radio") { if (el.checked) into[key] = el.value; continue; }
    if (el.value === "") continue;
    if (kind === "csv") { into[key] = el.value.split(",").map((v) => v.trim()).filter((v) => v); continue; }
    if (kind === "json") {
      try { into[key] = JSON.parse(el.value); } catch (_) { throw new Error(`${el.name} is not valid JSON`); }
      continue;
    }
    into[key] = kind === "int" ? Number(el.value) : el.value;
  }
  return body;
}

function pick(data, path) {
  return path.split(".").reduce((v, k) => (v == null ? v : v[k]), data);
}

// Shows secrets the brain returns once (tokens, recovery codes) outside
// <main>, so refreshes keep them on screen until the page is left.
function reveal(el, data) {
  const box = document.getElementById("reveal");
  if (!box) return;
  document.getElementById("reveal-title").textContent = el.dataset.revealTitle || "Shown once";
  const facts = document.getElementById("reveal-facts");
  facts.replaceChildren();
  for (const path of el.dataset.reveal.split(",")) {
    const v = pick(data, path.trim());
    const dt = document.createElement("dt");
    dt.textContent = path.trim().replace(/_/g, " ");
    const dd = document.createElement("dd");
    dd.className = "mono";
    dd.textContent = Array.isArray(v) ? v.join("\n") : String(v);
    facts.append(dt, dd);
  }
  box.hidden = false;
  box.focus();
}

// A form's body comes from its fields; a button passes its own.
async function callApi(el, body) {
  const flash = document.getElementById("flash");
  const label = el.dataset.label || "request";
  if (el.tagName === "FORM") {
    // Typed confirmations (a queue's name before a purge).
    for (const f of el.querySelectorAll("[data-must-match]")) {
      if (f.value !== f.dataset.mustMatch) { flash.textContent = `${label}: type ${f.dataset.mustMatch} exactly to confirm`; f.focus(); return; }
    }
    try { body = formBody(el); } catch (e) { flash.textContent = `${label}: ${e.message}`; return; }
    if ("onlyChanged" in el.dataset && !Object.keys(body).length) { flash.textContent = `${label}: nothing changed`; return; }
  }
  if (el.dataset.confirm && !confirm(el.dataset.confirm)) return;
  const sp = el.dataset.api.indexOf(" ");
  const [method, path] = [el.dataset.api.slice(0, sp), el.dataset.api.slice(sp + 1)];
  leaving = Boolean(el.dataset.go);
  let r;
  try { r = await api(method, path, body); } catch (e) {
    leaving = false;
    flash.textContent = `${label}: ${e.message}`;
    return;
  }
  if (r.status < 200 || r.status > 299) {
    leaving = false;
    flash.textContent = `${label}: ${message(r.data, "refused (" + r.status + ")")}`;
    return;
  }
  flash.textContent = `${label}: done`;
  if (el.dataset.go) { location.assign(el.dataset.go); return; }
  if (el.dataset.after === "reveal") reveal(el, r.data);
  if (el.tagName === "FORM") el.reset();
  await refreshMain(true);
}

function setupApiControls() {
  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (!form.dataset || !form.dataset.api) return;
    ev.preventDefault();
    callApi(form);
  });
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-api]");
    if (!b || b.form) return;
    let body;
    try { body = b.dataset.body ? JSON.parse(b.dataset.body) : undefined; } catch (_) { body = undefined; }
    callApi(b, body);
  });
}

// Sign-in links carry their token in the fragment (never sent to a
// server); pages that need it copy it into their form.
function setupFragmentToken() {
  const field = document.querySelector("input[name=token][data-from-fragment]");
  if (!field) return;
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) field.value = decodeURIComponent(m[1]);
  else field.form.hidden = true;
  const preview = field.form && field.form.dataset.preview;
  if (m && preview) {
    api("POST", preview, { token: field.value }).then((r) => {
      const out = document.getElementById("preview");
      if (!out) return;
      out.textContent = r.status === 200 && r.data
        ? `You are invited to ${r.data.project_name} as ${r.data.role} (${r.data.email}).`
        : message(r.data, "This invitation cannot be used.");
    });
  }
}

// Live: one socket per project page; every topic refetches this page and
// swaps <main>, at most once a second. Reconnects with backoff, except
// when the session is gone (4401: sign in again) or access was refused.
function setupLive() {
  const project = document.body.dataset.projectId;
  if (!project || !("WebSocket" in window)) return;
  const badge = document.getElementById("live");
  const delays = [500, 1000, 2000, 5000, 10000, 30000];
  let attempt = 0, pinger = null;

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/dashboard`);
    ws.addEventListener("open", () => {
      attempt = 0;
      ws.send(JSON.stringify({ type: "subscribe", project_id: project }));
      pinger = setInterval(() => ws.send(JSON.stringify({ type: "ping" })), 25000);
    });
    ws.addEventListener("message", (m) => {
      let f = null;
      try { f = JSON.parse(m.data); } catch (_) { return; }
      if (f.type === "ready") { badge.hidden = false; }
      if (f.type === "event") refreshMain();
    });
    ws.addEventListener("close", (ev) => {
      clearInterval(pinger);
      badge.hidden = true;
      if (signingOut) return;
      if (ev.code === 4401) { location.assign("/login?next=" + encodeURIComponent(location.pathname)); return; }
      if (ev.code === 4403 || ev.code === 4402) return;
      setTimeout(connect, delays[Math.min(attempt++, delays.length - 1)]);
    });
  }
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  setupLogin();
  setupFirstAdmin();
  setupLogout();
  setupCommands();
  setupAgents();
  setupVersionCheck();
  setupSavedViews();
  setupApiControls();
  setupFragmentToken();
  setupLive();
});

// blindsight app: the page's script. It talks only to the app's own JSON API (same origin);
// the keys never reach it. No framework, no outside resource.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  overview: null,
  collection: null,
  next: null, // id after which the next library page starts (null: no more)
  loading: false,
  generation: 0, // bumped when the library is reset, so that late pages are dropped
  selected: new Set(),
  searching: 0,
};

// ---- API ----------------------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const message = (body && body.error) || text || `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

const postJson = (path, value) => api(path, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(value),
});

const collectionPath = (suffix = "") =>
  `/api/collections/${encodeURIComponent(state.collection)}${suffix}`;

// ---- messages -----------------------------------------------------------------------------

let toastTimer = 0;
function toast(message, error = false) {
  const t = $("toast");
  t.textContent = message;
  t.classList.toggle("error", error);
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, error ? 9000 : 4000);
}

const fail = (e) => toast(e instanceof Error ? e.message : String(e), true);

function bytes(n) {
  if (!Number.isFinite(n)) return "?";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

const seconds = (s) => (s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`);

// ---- collections --------------------------------------------------------------------------

async function loadOverview(select) {
  const o = await api("/api/overview");
  state.overview = o;
  fillServers($("server"), o.servers);
  fillServers($("create-server"), o.servers);
  const preset = o.keystore.preset;
  const scheme = $("create-scheme");
  if (preset) {
    const fixed = preset.startsWith("bfv") ? "bfv" : "ckks";
    scheme.value = fixed;
    scheme.disabled = true;
    $("create-scheme-note").textContent =
      `Your keystore holds a ${preset} key: its collections use ${fixed.toUpperCase()}. ` +
      "Another scheme needs another keystore (blindsight app --keystore OTHER).";
    $("create-scheme-note").hidden = false;
  } else {
    scheme.disabled = false;
    $("create-scheme-note").textContent = "Creating the first collection makes your keystore.";
    $("create-scheme-note").hidden = false;
  }
  const picker = $("collection");
  picker.replaceChildren();
  for (const c of o.collections) {
    const option = document.createElement("option");
    option.value = c.name;
    option.textContent = c.error ? `${c.name} (cannot open)` : `${c.name} · ${c.images ?? 0} images`;
    picker.append(option);
  }
  const names = o.collections.map((c) => c.name);
  const wanted = select && names.includes(select) ? select
    : names.includes(state.collection) ? state.collection : names[0] ?? null;
  if (!wanted) {
    state.collection = null;
    $("workspace").hidden = true;
    $("show-info").hidden = true;
    picker.hidden = true;
    showCreate(true);
    return;
  }
  picker.hidden = false;
  $("show-info").hidden = false;
  picker.value = wanted;
  if (wanted !== state.collection) {
    state.collection = wanted;
    $("workspace").hidden = false;
    closeSearch();
    resetLibrary();
  } else {
    $("workspace").hidden = false;
  }
  updateCount();
}

// A server as a person reads it: the store on this machine, or its name and URL.
function serverLabel(s) {
  if (s.endpoint.startsWith("sqlite:")) return `this machine (${s.endpoint.slice(7)})`;
  return s.name ? `${s.name} (${s.endpoint})` : s.endpoint;
}

function fillServers(select, servers) {
  select.replaceChildren(...servers.map((s) => {
    const option = document.createElement("option");
    option.value = s.key;
    option.textContent = serverLabel(s);
    option.selected = s.active;
    return option;
  }));
  select.title = servers.find((s) => s.active)?.endpoint ?? "";
}

async function switchServer(key) {
  state.collection = null;
  const o = await postJson("/api/server", { key });
  state.overview = null;
  return o;
}

function current() {
  return state.overview?.collections.find((c) => c.name === state.collection) ?? null;
}

function updateCount() {
  const c = current();
  if (!c) return;
  if (c.error) {
    $("library-count").textContent = c.error;
    return;
  }
  const deleted = c.deleted ? ` (${c.deleted} deleted, purged by Compact)` : "";
  const kind = String(c.vectors ?? "").split(":")[0];
  $("library-count").textContent = `${c.images ?? 0} images${deleted} · ${kind} · ${c.preset ?? ""}`;
  $("library-count").title = `${c.vectors ?? ""} · ${c.preset ?? ""}`;
}

function showCreate(first) {
  $("create-panel").hidden = false;
  $("create-intro").textContent = first
    ? "You have no collection yet. A collection holds your images encrypted on the server; the keys stay on this machine."
    : "A collection holds your images encrypted on the server; the keys stay on this machine.";
  $("create-cancel").hidden = !!first;
  $("create-name").focus();
}

async function createCollection(event) {
  event.preventDefault();
  const name = $("create-name").value.trim();
  if (!name) { toast("Give the collection a name", true); return; }
  const button = event.submitter ?? document.querySelector("#create-form button[type=submit]");
  button.disabled = true;
  toast(`Creating ${name}… (making the encryption keys takes a few seconds)`);
  try {
    const server = $("create-server").value;
    if (server && server !== state.overview?.servers.find((s) => s.active)?.key) await switchServer(server);
    await postJson("/api/collections", {
      name,
      vectors: $("create-kind").value,
      scheme: $("create-scheme").disabled ? null : $("create-scheme").value,
    });
    $("create-panel").hidden = true;
    $("create-form").reset();
    await loadOverview(name);
    toast(`Created ${name}`);
    $("ingest-path").focus();
  } catch (e) {
    fail(e);
  } finally {
    button.disabled = false;
  }
}

// The keystore's parameters as a person reads them: preset, ring, modulus against the
// 128-bit table, t or the scale.
function parameters(i) {
  const p = i.parameters;
  if (!p) return i.preset;
  const exact = p.plain_modulus ? `t = ${p.plain_modulus}` : `scale 2^${p.scale_bits}`;
  return `${p.preset}: ${p.scheme}, N = ${p.degree}, ${p.moduli} primes, log₂ QP = ${p.modulus_bits} ` +
    `(at most ${p.max_secure_modulus_bits} for 128-bit security), ${exact}`;
}

async function showInfo() {
  if (!state.collection) return;
  try {
    const i = await api(collectionPath());
    const rows = [
      ["Collection", i.collection],
      ["Kind", i.vectors],
      ["Parameters", parameters(i)],
      ["Images", `${i.images ?? 0}${i.deleted ? ` (${i.deleted} deleted, purged by Compact)` : ""}`],
      ["Segments", i.segments],
      ["Stored", `${bytes(i.stored_bytes)} (ciphertexts, sealed files, thumbnails, names)`],
      ["Keys", `${bytes(i.key_bytes)} of public evaluation keys`],
      ["Server", state.overview?.server],
    ];
    if (i.quota) rows.push(["Quota", `${i.quota.images} images, ${bytes(i.quota.stored_bytes)} stored`]);
    const list = $("info-list");
    list.replaceChildren();
    for (const [k, v] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v ?? "?";
      list.append(dt, dd);
    }
    $("info-title").textContent = `Collection ${i.collection}`;
    $("info-dialog").showModal();
  } catch (e) {
    fail(e);
  }
}

// ---- tiles --------------------------------------------------------------------------------

function tile(kind, image) {
  const figure = document.createElement("figure");
  figure.className = `tile ${kind}`;
  figure.dataset.testid = kind;
  figure.dataset.imageId = image.id;
  figure.dataset.name = image.name;
  figure.tabIndex = 0;
  figure.setAttribute("role", "listitem");
  figure.setAttribute("aria-selected", state.selected.has(image.id) ? "true" : "false");
  figure.title = image.name;
  if (image.thumbnail) {
    const img = document.createElement("img");
    img.src = image.thumbnail;
    img.alt = image.name;
    img.decoding = "async";
    figure.append(img);
  } else {
    const p = document.createElement("div");
    p.className = "placeholder";
    p.textContent = `${image.name} — no thumbnail yet (Compact makes one)`;
    figure.append(p);
  }
  const check = document.createElement("span");
  check.className = "check";
  check.setAttribute("aria-hidden", "true");
  check.textContent = "✓";
  figure.append(check);
  const caption = document.createElement("figcaption");
  const name = document.createElement("span");
  name.textContent = image.name;
  caption.append(name);
  figure.append(caption);
  const actions = document.createElement("div");
  actions.className = "actions";
  const similar = document.createElement("button");
  similar.type = "button";
  similar.dataset.testid = "similar";
  similar.textContent = "Similar";
  similar.title = `Search for images like ${image.name}`;
  similar.disabled = !image.thumbnail;
  similar.addEventListener("click", (e) => { e.stopPropagation(); searchSimilar(figure); });
  actions.append(similar);
  figure.append(actions);
  figure.addEventListener("click", () => toggleSelected(figure));
  figure.addEventListener("dblclick", () => openViewer(figure));
  figure.addEventListener("keydown", (e) => tileKey(e, figure));
  return figure;
}

function resultTile(r, pixels) {
  const figure = tile("result", r);
  figure.dataset.score = String(r.score);
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = pixels && Array.isArray(r.channels)
    ? `${r.score.toFixed(4)} · R ${r.channels[0].toFixed(3)} G ${r.channels[1].toFixed(3)} B ${r.channels[2].toFixed(3)}`
    : `cosine ${r.score.toFixed(4)}`;
  figure.querySelector("figcaption").prepend(score);
  figure.title = `${r.name} — ${score.textContent}`;
  const original = document.createElement("button");
  original.type = "button";
  original.textContent = "Original";
  original.title = "Fetch the full image by its id: the server learns which image you opened";
  original.addEventListener("click", (e) => { e.stopPropagation(); openOriginal(figure); });
  figure.querySelector(".actions").append(original);
  return figure;
}

function tilesOf(id) {
  return document.querySelectorAll(`.tile[data-image-id="${CSS.escape(id)}"]`);
}

function toggleSelected(figure) {
  const id = figure.dataset.imageId;
  const on = !state.selected.has(id);
  if (on) state.selected.add(id); else state.selected.delete(id);
  for (const t of tilesOf(id)) t.setAttribute("aria-selected", on ? "true" : "false");
  updateSelection();
}

function updateSelection() {
  const n = state.selected.size;
  $("selection-count").textContent = n ? `${n} selected` : "";
  $("select-none").hidden = n === 0;
}

function clearSelection() {
  state.selected.clear();
  for (const t of document.querySelectorAll('.tile[aria-selected="true"]')) t.setAttribute("aria-selected", "false");
  updateSelection();
}

function tileKey(e, figure) {
  if (e.target !== figure) return;
  const grid = figure.parentElement;
  const tiles = [...grid.children];
  const i = tiles.indexOf(figure);
  const columns = Math.max(1, Math.round(grid.clientWidth / figure.getBoundingClientRect().width));
  const move = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns }[e.key];
  if (move !== undefined) {
    e.preventDefault();
    tiles[Math.min(tiles.length - 1, Math.max(0, i + move))]?.focus();
  } else if (e.key === " ") {
    e.preventDefault();
    toggleSelected(figure);
  } else if (e.key === "Enter") {
    e.preventDefault();
    openViewer(figure);
  } else if (e.key === "s") {
    searchSimilar(figure);
  } else if (e.key === "Delete") {
    if (!state.selected.has(figure.dataset.imageId)) toggleSelected(figure);
    deleteSelected();
  }
}

// ---- library ------------------------------------------------------------------------------

let observer = null;

function resetLibrary() {
  state.generation += 1;
  state.next = null;
  state.loading = false;
  state.selected.clear();
  updateSelection();
  $("grid").replaceChildren();
  $("grid-end").textContent = "";
  return loadPage(true);
}

async function loadPage(first = false) {
  if (state.loading || !state.collection || (!first && state.next === null)) return;
  state.loading = true;
  const generation = state.generation;
  $("grid-end").textContent = "Loading…";
  try {
    const after = first || state.next === null ? "" : `&after=${encodeURIComponent(state.next)}`;
    const page = await api(collectionPath(`/images?limit=60${after}`));
    if (generation !== state.generation) return;
    const grid = $("grid");
    for (const image of page.images) {
      if (!grid.querySelector(`[data-image-id="${CSS.escape(image.id)}"]`)) grid.append(tile("thumbnail", image));
    }
    state.next = page.next;
    $("grid-end").textContent = page.next !== null ? "" :
      grid.children.length ? "" : "No images yet: add a folder above.";
  } catch (e) {
    if (generation === state.generation) $("grid-end").textContent = "";
    fail(e);
  } finally {
    if (generation === state.generation) state.loading = false;
  }
  // the sentinel still in view (a tall screen): the next page at once
  if (generation === state.generation && state.next !== null && endInView()) loadPage();
}

function endInView() {
  const r = $("grid-end").getBoundingClientRect();
  return r.top < window.innerHeight + 400;
}

// ---- search -------------------------------------------------------------------------------

function closeSearch() {
  $("search").hidden = true;
  $("results").replaceChildren();
}

const PHASES = [
  ["encrypt", "encrypt"], ["upload", "upload"], ["server", "server"],
  ["download", "download"], ["decrypt", "decrypt"], ["retrieval", "private retrieval"],
];

function showTiming(t) {
  const bar = $("timing");
  const legend = $("timing-legend");
  bar.replaceChildren();
  legend.replaceChildren();
  const total = PHASES.reduce((s, [k]) => s + (t[`${k}_s`] || 0), 0) || 1;
  for (const [key, label] of PHASES) {
    const s = t[`${key}_s`] || 0;
    const part = document.createElement("span");
    part.className = `t-${key}`;
    part.style.width = `${(100 * s) / total}%`;
    part.title = `${label} ${seconds(s)}`;
    bar.append(part);
    const li = document.createElement("li");
    const swatch = document.createElement("i");
    swatch.className = `t-${key}`;
    li.append(swatch, `${label} ${seconds(s)}`);
    legend.append(li);
  }
}

async function runSearch(blob, name) {
  if (!state.collection) { toast("Create a collection first", true); return; }
  if (!blob || !blob.size) { toast("That file is empty", true); return; }
  const mine = ++state.searching;
  const started = performance.now();
  $("search").hidden = false;
  const preview = $("query-preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(blob);
  preview.alt = `query: ${name}`;
  $("search-title").textContent = `Searching for ${name}…`;
  $("search-meta").textContent = "encrypting the query and scoring the whole collection";
  $("results").replaceChildren();
  $("timing").replaceChildren();
  $("timing-legend").replaceChildren();
  $("search").scrollIntoView({ block: "nearest" });
  try {
    const answer = await api(collectionPath(`/search?k=10&name=${encodeURIComponent(name)}`), {
      method: "POST",
      headers: { "content-type": blob.type || "application/octet-stream" },
      body: blob,
    });
    if (mine !== state.searching) return;
    const pixels = Array.isArray(answer.results[0]?.channels);
    const results = $("results");
    for (const r of answer.results) results.append(resultTile(r, pixels));
    const t = answer.timing;
    $("search-title").textContent = `${answer.results.length} results for ${name}`;
    $("search-meta").textContent =
      `ranked by ${answer.rule} · ${seconds(t.total_s)} in all · sent ${bytes(t.up_bytes)}, received ${bytes(t.down_bytes)}`;
    showTiming(t);
    // what the page adds to the search itself (upload to the app, answer, drawing)
    $("search").dataset.pageMs = String(Math.round(performance.now() - started));
    $("search").dataset.searchMs = String(Math.round(t.total_s * 1000));
    if (!answer.results.length) $("search-meta").textContent = "The collection is empty: add images first.";
  } catch (e) {
    if (mine !== state.searching) return;
    $("search-title").textContent = `Search for ${name} failed`;
    $("search-meta").textContent = e.message;
    fail(e);
  }
}

function searchSimilar(figure) {
  const img = figure.querySelector("img");
  if (!img) { toast("This image has no thumbnail yet: Compact makes one", true); return; }
  // the thumbnail the page already holds is the query: nothing is fetched for it
  runSearch(dataUrlBlob(img.src), `like ${figure.dataset.name}`);
}

// A data: URL's bytes as a blob (decoded here: the CSP lets the page fetch nothing but the app).
function dataUrlBlob(url) {
  const [head, b64] = url.split(",", 2);
  const type = /^data:([^;,]+)/.exec(head)?.[1] ?? "application/octet-stream";
  const text = atob(b64 ?? "");
  const data = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i += 1) data[i] = text.charCodeAt(i);
  return new Blob([data], { type });
}

function pickFile(files) {
  const file = [...(files || [])].find((f) => f.type.startsWith("image/")) ?? files?.[0];
  if (file) runSearch(file, file.name || "pasted image");
}

// ---- viewer and originals ---------------------------------------------------------------

let viewing = null;

function openViewer(figure) {
  const img = figure.querySelector("img");
  if (!img) return;
  viewing = figure;
  $("viewer-image").src = img.src;
  $("viewer-image").alt = figure.dataset.name;
  $("viewer-name").textContent = figure.dataset.name;
  $("viewer").showModal();
}

function openOriginal(figure) {
  const ok = window.confirm(
    `Open the full image "${figure.dataset.name}"?\n\nIt is fetched from the server by its id: ` +
    "the server learns that you opened this image (search results and thumbnails do not tell it).");
  if (!ok) return;
  window.open(collectionPath(`/original/${encodeURIComponent(figure.dataset.imageId)}`), "_blank", "noopener");
}

// ---- delete, compact ----------------------------------------------------------------------

async function deleteSelected() {
  const ids = [...state.selected];
  if (!ids.length) {
    toast("Select images first: click a photo (or press Space on it)");
    return;
  }
  const names = ids.map((id) => tilesOf(id)[0]?.dataset.name ?? id);
  const shown = names.slice(0, 5).join(", ") + (names.length > 5 ? `, and ${names.length - 5} more` : "");
  if (!window.confirm(`Delete ${ids.length} image${ids.length > 1 ? "s" : ""} from ${state.collection}?\n\n${shown}\n\nThis cannot be undone.`)) return;
  try {
    const r = await postJson(collectionPath("/delete"), { ids });
    for (const id of ids) for (const t of tilesOf(id)) t.remove();
    state.selected.clear();
    updateSelection();
    toast(`Deleted ${r.deleted} image${r.deleted === 1 ? "" : "s"} (purged from the server at the next Compact)`);
    loadOverview();
  } catch (e) {
    fail(e);
  }
}

async function compact() {
  const button = $("compact");
  button.disabled = true;
  toast("Compacting: purging deleted images and merging segments…");
  try {
    const r = await postJson(collectionPath("/compact"), {});
    toast(r.replaced || r.purged
      ? `Replaced ${r.replaced} segments by ${r.written}, purged ${r.purged} deleted images in ${seconds(r.seconds)}`
      : "Nothing to compact: the segments are merged and hold no deleted images");
    loadOverview();
  } catch (e) {
    fail(e);
  } finally {
    button.disabled = false;
  }
}

// ---- ingest -------------------------------------------------------------------------------

// The bar's data-done reaches data-total only once the ingest has wholly landed (merged,
// thumbnails made, the grid reloaded): tests outside the project wait on that.
function showProgress(job) {
  const p = $("progress");
  const finished = job.state === "done" || job.state === "failed";
  const done = finished ? job.done : Math.min(job.done, Math.max(0, job.total - 1));
  p.dataset.done = String(done);
  p.dataset.total = String(job.total);
  p.dataset.state = job.state;
  p.max = Math.max(1, job.total);
  p.value = done;
  const failed = job.failed_count ?? job.failed?.length ?? 0;
  let status = `${job.done} / ${job.total} files · ${job.added} added · ${job.duplicates} already there`;
  if (failed) status += ` · ${failed} could not be read`;
  if (job.state === "listing") status = "listing the folder…";
  if (job.state === "done") {
    status = `Done: ${job.added} added, ${job.duplicates} already there, ${job.failed.length} could not be read, ${job.left_out.length} left out`;
    const m = job.merged;
    if (m && m.replaced) status += ` · merged ${m.replaced} segments into ${m.written} in ${seconds(m.seconds)}`;
    if (m && m.thumbnails) status += ` · made ${m.thumbnails} thumbnails`;
    if (job.merge_failed) status += ` · merging failed (the next ingest or Compact merges): ${job.merge_failed}`;
  }
  if (job.state === "failed") status = `Ingest failed: ${job.error}`;
  $("ingest-status").textContent = status;
  const problems = [
    ...(job.failed || []).map((f) => `could not read ${f.name}: ${f.reason}`),
    ...(job.left_out || []).map((f) => `left out ${f.name}: ${f.reason}`),
  ];
  $("ingest-problems").hidden = problems.length === 0;
  $("ingest-problems-title").textContent = `${problems.length} file${problems.length === 1 ? "" : "s"} not added`;
  const list = $("ingest-problems-list");
  list.replaceChildren(...problems.slice(0, 500).map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
}

async function startIngest(event) {
  event.preventDefault();
  const path = $("ingest-path").value.trim();
  if (!path) { toast("Type the path of a folder on this machine", true); return; }
  runIngest({ path, recursive: $("ingest-recursive").checked });
}

// Files dropped on the ingest box (or chosen): sent to the app one by one, then ingested
// as one batch.
async function ingestFiles(files) {
  const list = [...(files || [])];
  if (!list.length) return;
  if (!state.collection) { toast("Create a collection first", true); return; }
  const batch = crypto.randomUUID();
  const button = $("ingest-start");
  button.disabled = true;
  try {
    for (const [i, file] of list.entries()) {
      $("ingest-status").textContent = `sending ${i + 1} / ${list.length}: ${file.name}`;
      await api(collectionPath(`/uploads?batch=${batch}&file=${encodeURIComponent(file.name)}`), {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: file,
      });
    }
  } catch (e) {
    button.disabled = false;
    fail(e);
    return;
  }
  await runIngest({ uploaded: batch });
}

async function runIngest(request) {
  const button = $("ingest-start");
  button.disabled = true;
  const collection = state.collection;
  showProgress({ state: "listing", done: 0, total: 0, added: 0, duplicates: 0 });
  try {
    const { job } = await postJson(collectionPath("/ingest"), request);
    let last = null;
    for (;;) {
      last = await api(`/api/jobs/${job}`);
      const finished = last.state === "done" || last.state === "failed";
      if (finished) break;
      showProgress(last);
      await new Promise((r) => setTimeout(r, 250));
    }
    if (collection === state.collection) {
      await loadOverview();
      await resetLibrary();
    }
    showProgress(last);
  } catch (e) {
    fail(e);
  } finally {
    button.disabled = false;
  }
}

// ---- wiring -------------------------------------------------------------------------------

function wire() {
  $("create-form").addEventListener("submit", createCollection);
  $("create-cancel").addEventListener("click", () => { $("create-panel").hidden = true; });
  $("new-collection").addEventListener("click", () => showCreate(!state.collection));
  $("show-info").addEventListener("click", showInfo);
  $("collection").addEventListener("change", (e) => loadOverview(e.target.value).catch(fail));
  $("server").addEventListener("change", (e) =>
    switchServer(e.target.value).then(() => loadOverview()).catch((err) => { fail(err); loadOverview().catch(fail); }));
  $("ingest-files").addEventListener("change", (e) => { ingestFiles(e.target.files); e.target.value = ""; });
  $("query-input").addEventListener("change", (e) => { pickFile(e.target.files); e.target.value = ""; });
  $("ingest-form").addEventListener("submit", startIngest);
  $("delete").addEventListener("click", deleteSelected);
  $("compact").addEventListener("click", compact);
  $("select-none").addEventListener("click", clearSelection);
  $("close-search").addEventListener("click", closeSearch);
  $("viewer-similar").addEventListener("click", () => { $("viewer").close(); if (viewing) searchSimilar(viewing); });
  $("viewer-original").addEventListener("click", () => { if (viewing) openOriginal(viewing); });
  const zone = $("dropzone");
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const type of ["dragleave", "dragend"]) {
    document.addEventListener(type, (e) => { if (!e.relatedTarget) zone.classList.remove("over"); });
  }
  const ingestBox = $("ingest-form");
  ingestBox.addEventListener("dragover", () => ingestBox.classList.add("over"));
  ingestBox.addEventListener("dragleave", () => ingestBox.classList.remove("over"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    ingestBox.classList.remove("over");
    // on the ingest box: add the files; anywhere else: search with the image
    if (e.target instanceof Element && e.target.closest("#ingest-form")) ingestFiles(e.dataTransfer?.files);
    else pickFile(e.dataTransfer?.files);
  });
  document.addEventListener("paste", (e) => {
    if (e.target instanceof HTMLInputElement && e.target.type === "text") return;
    const files = [...(e.clipboardData?.items || [])]
      .filter((i) => i.kind === "file").map((i) => i.getAsFile()).filter(Boolean);
    if (files.length) { e.preventDefault(); pickFile(files); }
  });
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("query-input").click(); }
  });
  observer = new IntersectionObserver((entries) => {
    if (entries.some((en) => en.isIntersecting)) loadPage();
  }, { rootMargin: "400px" });
  observer.observe($("grid-end"));
}

wire();
loadOverview().catch(fail);

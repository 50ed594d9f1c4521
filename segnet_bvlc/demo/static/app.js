// The SegNet demo page: plain JavaScript over the JSON API of tools/demo.py (no build step).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const state = { config: null, models: {}, image: null, columns: {} };
const SLOTS = ["a", "b"];

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.detail) || `${response.status} ${response.statusText}`);
  return body;
}

function setStatus(text, error = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", error);
}

const pct = (v) => (v === null || v === undefined ? "-" : (100 * v).toFixed(1));

function selectedModel(slot) {
  const id = $(`#model-${slot}`).value;
  return id ? state.models[id] : null;
}

function updateSamplesField() {
  const dropout = SLOTS.some((slot) => { const m = selectedModel(slot); return m && m.dropout; });
  $("#samples").disabled = !dropout;
  $("#samples-label").classList.toggle("disabled", !dropout);
}

function applyOpacity() {
  const value = $("#opacity").value;
  $("#opacity-value").textContent = Number(value).toFixed(2);
  for (const img of document.querySelectorAll(".stack img.top")) img.style.opacity = value;
}

function makeColumns() {
  const template = $("#column-template");
  for (const slot of SLOTS) {
    const el = template.content.firstElementChild.cloneNode(true);
    el.id = `result-${slot}`;
    el.dataset.slot = slot;
    el.hidden = true;
    $("#columns").appendChild(el);
    state.columns[slot] = { slot, el, seq: 0, result: null, pending: null, busy: false };
  }
}

function selectImage(item) {
  state.image = { id: item.id, url: item.url, name: item.name, gt: !!item.gt };
  for (const thumb of document.querySelectorAll("#gallery img")) {
    thumb.classList.toggle("selected", thumb.dataset.id === item.id);
  }
  $("#viewer").hidden = false;
  $("#input-img").src = item.url;
  $("#input-name").textContent = item.name;
  $("#gt-fig").hidden = !item.gt;
  if (item.gt) $("#gt-img").src = `/api/gt/${encodeURIComponent(item.id)}`;
  $("#hover-pos").textContent = "Hover an image to read a pixel's class and score.";
  refresh();
}

function refresh() {
  updateSamplesField();
  if (!state.image) return;
  for (const slot of SLOTS) {
    const column = state.columns[slot];
    const model = selectedModel(slot);
    column.result = null;
    column.el.dataset.result = "";
    if (!model) {
      column.seq += 1;
      column.el.hidden = true;
      column.el.dataset.state = "idle";
      continue;
    }
    column.el.hidden = false;
    predictInto(column, model);
  }
}

async function predictInto(column, model) {
  const seq = ++column.seq;
  const el = column.el;
  el.dataset.state = "loading";
  $(".model-name", el).textContent = model.label;
  $(".info", el).textContent = "predicting…";
  $(".hover", el).textContent = "";
  const samples = model.dropout ? Math.max(0, parseInt($("#samples").value, 10) || 0) : 0;
  const query = new URLSearchParams({ image: state.image.id, model: model.id, samples: String(samples) });
  let res;
  try {
    res = await api(`/api/predict?${query}`);
  } catch (e) {
    if (seq !== column.seq) return;
    el.dataset.state = "error";
    $(".info", el).textContent = e.message;
    setStatus(e.message, true);
    return;
  }
  if (seq !== column.seq) return;
  const images = [];
  const show = (img, url) => { img.src = url; images.push(img); };
  show($(".seg", el), res.colour_url);
  show($(".stack img.base", el), state.image.url);
  show($(".stack img.top", el), res.colour_url);
  const unc = $(".unc-fig", el);
  unc.hidden = !res.uncertainty_colour_url;
  if (res.uncertainty_colour_url) {
    show($(".unc", el), res.uncertainty_colour_url);
    $(".unc-note", el).textContent =
      `(variance of ${res.samples} samples, mean over classes; white 0, dark ${res.uncertainty_max.toFixed(4)})`;
  }
  await Promise.all(images.map((img) => img.decode().catch(() => null)));
  if (seq !== column.seq) return;
  applyOpacity();
  const tbody = $(".legend tbody", el);
  tbody.replaceChildren();
  for (const c of res.legend) {
    const row = tbody.insertRow();
    row.dataset.class = c.index;
    row.insertCell().innerHTML = `<span class="swatch" style="background:${c.colour}"></span>`;
    row.insertCell().textContent = c.name;
    const share = row.insertCell();
    share.className = "share";
    share.textContent = `${c.share.toFixed(1)} %`;
  }
  const metrics = $(".metrics", el);
  if (res.metrics) {
    const m = res.metrics;
    metrics.textContent = `This image: G ${pct(m.global_accuracy)} · C ${pct(m.class_average_accuracy)} · ` +
      `mIoU ${pct(m.mean_iou)} (classes present: ${pct(m.mean_iou_present)}) · BF ${pct(m.boundary_f1)}`;
  } else {
    metrics.textContent = res.metrics_note ? `No metrics: ${res.metrics_note}` : "";
  }
  const [h, w] = res.net_size;
  $(".info", el).textContent = `${res.width}×${res.height} (net ${w}×${h}, scores upsampled ${res.upsample}); ` +
    `${res.samples ? `${res.samples} Monte Carlo dropout samples, seed ${res.seed}` : "one pass"}; ` +
    `${res.seconds.toFixed(2)} s`;
  column.result = res;
  el.dataset.result = res.id;
  el.dataset.state = "done";
  setStatus("");
}

// ------------------------------------------------------------------------------------------------ hover

function pixelOf(view, event) {
  const rect = view.getBoundingClientRect();
  const input = $("#input-img");
  const width = input.naturalWidth, height = input.naturalHeight;
  if (!width || !rect.width) return null;
  const x = Math.floor(((event.clientX - rect.left) / rect.width) * width);
  const y = Math.floor(((event.clientY - rect.top) / rect.height) * height);
  if (x < 0 || y < 0 || x >= width || y >= height) return null;
  return { x, y };
}

function onMove(event) {
  const view = event.target.closest(".pixel-view");
  if (!view) return;
  const p = pixelOf(view, event);
  if (!p) return;
  $("#hover-pos").textContent = `pixel x ${p.x}, y ${p.y}`;
  for (const slot of SLOTS) {
    const column = state.columns[slot];
    if (!column.result) continue;
    column.pending = { result: column.result.id, x: p.x, y: p.y };
    if (!column.busy) pump(column);
  }
}

async function pump(column) {
  column.busy = true;
  while (column.pending) {
    const { result, x, y } = column.pending;
    column.pending = null;
    try {
      const p = await api(`/api/pixel?${new URLSearchParams({ result, x: String(x), y: String(y) })}`);
      if (!column.result || column.result.id !== result) continue;
      const el = $(".hover", column.el);
      let text = `(${p.x}, ${p.y}) ${p.name} · score ${p.score.toFixed(3)}`;
      if (p.uncertainty !== null) text += ` · uncertainty ${p.uncertainty.toFixed(4)}`;
      if (p.gt_name !== null) text += ` · ground truth ${p.gt_name}`;
      el.textContent = text;
      Object.assign(el.dataset, { x: p.x, y: p.y, class: p.class, name: p.name, score: p.score });
    } catch (e) {
      setStatus(e.message, true);
    }
  }
  column.busy = false;
}

// ------------------------------------------------------------------------------------------------ upload

async function upload(event) {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  if (file.size > state.config.max_upload_bytes) {
    setStatus(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB, more than the limit of ` +
              `${(state.config.max_upload_bytes / 2 ** 20).toFixed(0)} MiB`, true);
    return;
  }
  setStatus(`uploading ${file.name}…`);
  try {
    const res = await api("/api/upload", {
      method: "POST", body: file,
      headers: { "Content-Type": file.type || "application/octet-stream", "X-Filename": encodeURIComponent(file.name) },
    });
    setStatus(`${res.name}: ${res.width}×${res.height}`);
    selectImage({ id: res.id, url: res.url, name: res.name, gt: false });
  } catch (e) {
    setStatus(`${file.name}: ${e.message}`, true);
  }
}

// ------------------------------------------------------------------------------------------------ start

async function init() {
  try {
    state.config = await api("/api/config");
  } catch (e) {
    setStatus(`cannot reach the demo server: ${e.message}`, true);
    return;
  }
  const a = $("#model-a"), b = $("#model-b");
  for (const m of state.config.models) {
    state.models[m.id] = m;
    a.add(new Option(m.label, m.id));
    b.add(new Option(m.label, m.id));
  }
  a.value = state.config.default_model;
  const samples = $("#samples");
  samples.max = state.config.max_samples;
  samples.value = state.config.samples;
  makeColumns();
  a.addEventListener("change", refresh);
  b.addEventListener("change", refresh);
  samples.addEventListener("change", refresh);
  $("#opacity").addEventListener("input", applyOpacity);
  $("#upload").addEventListener("change", upload);
  $("#viewer").addEventListener("mousemove", onMove);
  applyOpacity();
  updateSamplesField();
  const gallery = await api("/api/gallery");
  $("#gallery-note").textContent = state.config.camvid
    ? `(${gallery.length} from ${state.config.camvid}; ground truth and per-image metrics)`
    : "(none: start the demo with CAMVID=DIR)";
  for (const item of gallery) {
    const img = document.createElement("img");
    img.src = item.thumb;
    img.loading = "lazy";
    img.alt = item.name;
    img.title = item.name;
    img.dataset.id = item.id;
    img.addEventListener("click", () => selectImage(item));
    $("#gallery").appendChild(img);
  }
  document.body.dataset.ready = "1";
}

init();

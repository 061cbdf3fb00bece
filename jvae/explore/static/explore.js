// jvae explore: one control per latent unit; every change asks the server to decode the whole code.
// The code is kept here exactly (an encoded image's means, not the slider's rounded positions) and sent in
// full with each request, so the server keeps no per-page state.
"use strict";

const state = { model: null, code: {}, label: null };
const rows = new Map(); // unit address -> { row, input, output }
const times = []; // recent decode round trips in milliseconds
let busy = 0; // operations under way; the picture's data-state is "ready" only at 0

const $ = (id) => document.getElementById(id);

function begin() {
  busy += 1;
  $("picture").dataset.state = "loading";
}

function end() {
  busy -= 1;
  if (busy === 0) $("picture").dataset.state = "ready";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// fetch, turning a refusal's {"error": ...} into an Error with the server's sentence
async function api(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    throw new Error(`the jvae explore server does not answer (${error.message}); is it still running?`);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).error || message;
    } catch (error) {
      // not JSON: keep the status line
    }
    throw new Error(message);
  }
  return response;
}

function withClass(params) {
  if (state.label !== null) params.set("class", String(state.label));
  return params;
}

// ------------------------------------------------------------------------------------------ decoding

let decoding = false;
let again = false;

// Decode the current code; while a request is out, further changes coalesce into one next request, so a
// dragged slider never queues a backlog behind a slow decode.
async function refresh() {
  if (decoding) {
    again = true;
    return;
  }
  decoding = true;
  begin();
  try {
    do {
      again = false;
      await decodeOnce();
    } while (again);
  } finally {
    decoding = false;
    end();
  }
}

function loadImage(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new Error("the browser could not show the decoded image"));
    img.src = url;
  });
}

async function decodeOnce() {
  const params = new URLSearchParams();
  for (const unit of state.model.units) params.set(unit.address, String(state.code[unit.address]));
  withClass(params);
  const started = performance.now();
  try {
    const blob = await (await api(`/api/decode?${params}`)).blob();
    const picture = $("picture");
    const previous = picture.src;
    await loadImage(picture, URL.createObjectURL(blob));
    if (previous.startsWith("blob:")) URL.revokeObjectURL(previous);
    picture.dataset.query = params.toString();
    recordTime(performance.now() - started);
  } catch (error) {
    showError(error.message);
  }
}

function recordTime(ms) {
  times.push(ms);
  if (times.length > 100) times.shift();
  const sorted = [...times].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  $("latency").textContent =
    `decode round trip ${ms.toFixed(0)} ms (median ${median.toFixed(0)} ms over the last ${times.length})`;
}

// ------------------------------------------------------------------------------------------ the code

function show(address) {
  const { row, input, output } = rows.get(address);
  const value = state.code[address];
  row.dataset.value = String(value);
  if (input.tagName === "SELECT") {
    input.value = String(value);
    return;
  }
  // an encoded image's mean can lie outside the traversal range: widen the slider to reach it
  if (value < Number(input.min)) input.min = String(value);
  if (value > Number(input.max)) input.max = String(value);
  input.value = String(value);
  output.textContent = value.toFixed(2);
}

function setCode(code) {
  for (const unit of state.model.units) {
    state.code[unit.address] = code[unit.address];
    show(unit.address);
  }
}

function priorMode() {
  const code = {};
  for (const unit of state.model.units) code[unit.address] = 0;
  return code;
}

// Run a user action: clear the last error, show any new one, keep the picture "loading" until done.
async function act(work) {
  clearError();
  begin();
  try {
    await work();
  } catch (error) {
    showError(error.message);
  } finally {
    end();
  }
}

async function startFrom(url, options) {
  const answer = await (await api(url, options)).json();
  setCode(answer.code);
  await refresh();
}

// ------------------------------------------------------------------------------------------ building

function unitTitle(unit) {
  return unit.name ? `${unit.label} ${unit.name}` : unit.label;
}

function klText(unit, digits) {
  return unit.kl === null ? "unknown" : unit.kl.toFixed(digits);
}

function buildUnit(unit, low, high) {
  const row = document.createElement("div");
  row.className = "unit";
  row.dataset.address = unit.address;
  row.dataset.kind = unit.kind;
  const label = document.createElement("label");
  label.textContent = `${unitTitle(unit)} `;
  const kl = document.createElement("span");
  kl.className = "kl";
  kl.textContent = `KL ${klText(unit, 2)}`;
  label.append(kl);
  let input;
  if (unit.kind === "discrete") {
    input = document.createElement("select");
    for (let k = 0; k < unit.categories; k += 1) input.add(new Option(`category ${k}`, String(k)));
    input.addEventListener("change", () => {
      state.code[unit.address] = Number(input.value);
      show(unit.address);
      clearError();
      refresh();
    });
  } else {
    input = document.createElement("input");
    input.type = "range";
    input.min = String(low);
    input.max = String(high);
    input.step = String((high - low) / 100);
    input.addEventListener("input", () => {
      state.code[unit.address] = Number(input.value);
      show(unit.address);
      clearError();
      refresh();
    });
  }
  input.setAttribute("aria-label", unitTitle(unit));
  label.htmlFor = input.id = `unit-${unit.address}`;
  const output = document.createElement("output");
  row.append(label, input, output);
  rows.set(unit.address, { row, input, output });
  return row;
}

function buildTable(units) {
  const body = $("unit-table").tBodies[0];
  for (const unit of units) {
    const kind = unit.kind === "discrete" ? `discrete (${unit.categories}-way)` : "continuous";
    const tr = body.insertRow();
    for (const text of [unit.label, unit.name || "", kind, klText(unit, 3)]) tr.insertCell().textContent = text;
    tr.cells[3].className = "number";
  }
}

function buildImages(images) {
  const holder = $("images");
  for (const image of images) {
    const button = document.createElement("button");
    button.type = "button";
    button.title = `start from ${image.name}`;
    button.dataset.index = String(image.index);
    const thumb = document.createElement("img");
    thumb.src = `/api/images/${image.index}.png`;
    thumb.alt = image.name;
    button.append(thumb);
    button.addEventListener("click", () =>
      act(() => startFrom(`/api/images/${image.index}/code?${withClass(new URLSearchParams())}`)),
    );
    holder.append(button);
  }
  if (images.length === 0) {
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = "(start jvae explore with --image FILE to list images here)";
    holder.append(note);
  }
}

function buildClasses(model) {
  if (!model.classes) return;
  const select = $("class");
  for (let k = 0; k < model.classes; k += 1) select.add(new Option(String(k), String(k)));
  select.value = String(model.class);
  state.label = model.class;
  $("class-row").hidden = false;
  select.addEventListener("change", () => {
    state.label = Number(select.value);
    clearError();
    refresh();
  });
}

function upload(file) {
  const limit = state.model.max_upload_bytes;
  if (file.size > limit) {
    showError(
      `${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; the explorer reads images up to ${limit / 2 ** 20} MiB`,
    );
    return Promise.resolve();
  }
  return act(() =>
    startFrom(`/api/encode?${withClass(new URLSearchParams())}`, {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: file,
    }),
  );
}

async function main() {
  begin();
  try {
    const model = await (await api("/api/model")).json();
    state.model = model;
    const [low, high] = model.range;
    $("model").textContent =
      `${model.checkpoint} · preset ${model.preset} · ${model.kind} · ${model.image_size}x${model.image_size}`;
    const holder = $("units");
    for (const unit of model.units) holder.append(buildUnit(unit, low, high));
    buildTable(model.units);
    buildImages(model.images);
    buildClasses(model);
    setCode(priorMode());
    $("reset").addEventListener("click", () =>
      act(async () => {
        setCode(priorMode());
        await refresh();
      }),
    );
    $("random").addEventListener("click", () => {
      const seed = crypto.getRandomValues(new Uint32Array(1))[0] % 4294967295;
      act(() => startFrom(`/api/sample?${withClass(new URLSearchParams({ seed: String(seed) }))}`));
    });
    const picker = $("upload");
    picker.addEventListener("change", async () => {
      if (picker.files.length) await upload(picker.files[0]);
      picker.value = "";
    });
    await refresh();
  } catch (error) {
    showError(error.message);
  } finally {
    end();
  }
}

main();

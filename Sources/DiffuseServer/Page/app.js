// Diffuse's page: generation with live progress and a gallery, and the training runs. Plain JavaScript over the
// server's JSON API (see `diffuse serve --help`); no build step, nothing from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], job: null, run: null };

/** GET (or another method with a JSON body) and the parsed answer; an error carries the server's detail. */
async function api(path, method = "GET", body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || data.error || response.statusText);
  return data;
}

function seconds(s) {
  if (s == null) return "";
  s = Math.round(s);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

// Tabs.
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === tab.dataset.panel);
    if (tab.dataset.panel === "training") refreshTraining();
  });
}

// ---- Generate ----

function currentModel() {
  return state.models.find((m) => m.name === $("model").value);
}

/** Shows the settings that apply to the model picked. */
function modelChanged() {
  const m = currentModel();
  const show = (selector, visible) => {
    for (const e of document.querySelectorAll(selector)) e.hidden = !visible;
  };
  show(".for-prompt", m && m.prompt);
  show(".for-class", m && m.classes != null);
  show(".for-diffusion", m && m.diffusion);
  show(".for-guidance", m && m.guidable);
  if (!m) {
    $("model-note").textContent = "No model yet: train a run (Training tab) or put a model folder under --models.";
    return;
  }
  const cls = $("class");
  cls.innerHTML = "";
  if (m.classes != null) {
    cls.add(new Option("one of each class", ""));
    for (let k = 0; k < m.classes; k++) cls.add(new Option(String(k), String(k)));
  }
  $("model-note").textContent = `${m.kind}${m.size ? ", " + m.size : ""}${m.classes != null ? `, ${m.classes} classes` : ""}`;
}

async function loadModels() {
  const keep = $("model").value;
  const models = await api("/api/models");
  if (JSON.stringify(models) === JSON.stringify(state.models)) return;
  state.models = models;
  const select = $("model");
  select.innerHTML = "";
  for (const m of state.models) select.add(new Option(m.name, m.name));
  if (state.models.some((m) => m.name === keep)) select.value = keep;
  modelChanged();
}

async function loadSamplers() {
  const samplers = await api("/sdapi/v1/samplers");
  const select = $("sampler");
  select.add(new Option("the model's default", ""));
  for (const s of samplers) select.add(new Option(s.name, s.name));
}

/** The request the form describes, in the API's fields. */
function generateRequest() {
  const m = currentModel();
  const number = (id) => Number($(id).value);
  const request = { type: "generate", model: m.name, seed: number("seed"), batch_size: number("count") };
  if (m.diffusion) {
    request.steps = number("steps");
    if ($("sampler").value) request.sampler_name = $("sampler").value;
  }
  if (m.guidable) request.cfg_scale = number("guidance");
  if (m.classes != null && $("class").value !== "") request.class = Number($("class").value);
  if (m.prompt) {
    request.prompt = $("prompt").value;
    request.negative_prompt = $("negative-prompt").value;
    request.width = number("width");
    request.height = number("height");
  }
  return request;
}

$("model").addEventListener("change", modelChanged);

$("generate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("form-error").textContent = "";
  if (!currentModel()) return;
  try {
    const job = await api("/jobs", "POST", generateRequest());
    state.job = job.id;
    $("generate-button").disabled = true;
    $("cancel-button").disabled = false;
    $("result-images").innerHTML = "";
    watchJob(job.id);
  } catch (error) {
    $("form-error").textContent = error.message;
  }
});

$("cancel-button").addEventListener("click", async () => {
  if (state.job != null) await api(`/jobs/${state.job}`, "DELETE").catch(() => {});
});

/** Follows a generation until it ends: progress, ETA, the x̂₀ preview, then the images. */
async function watchJob(id) {
  let lastStep = -1;
  while (state.job === id) {
    let job;
    try {
      job = await api(`/jobs/${id}`);
    } catch (error) {
      $("progress-text").textContent = error.message;
      break;
    }
    $("progress-bar").style.width = `${Math.round(job.progress * 100)}%`;
    if (job.state === "queued") {
      $("progress-text").textContent = `Waiting: ${job.position - 1} job(s) ahead.`;
    } else if (job.state === "running") {
      const eta = job.eta != null ? `, ${seconds(job.eta)} left` : "";
      $("progress-text").textContent = `${Math.round(job.progress * 100)}%${eta} (${job.info})`;
      if (job.step !== lastStep && job.step > 0) {
        lastStep = job.step;
        const preview = $("preview");
        preview.onload = () => { preview.hidden = false; };
        preview.onerror = () => {};
        preview.src = `/jobs/${id}/preview?step=${job.step}`;
      }
    } else {
      finishJob(job);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

function finishJob(job) {
  state.job = null;
  $("generate-button").disabled = false;
  $("cancel-button").disabled = true;
  $("preview").hidden = true;
  const took = job.state === "done" ? "Done." : job.state === "cancelled" ? "Cancelled." : `Failed: ${job.error}`;
  $("progress-text").textContent = took;
  if (job.state !== "done") $("progress-bar").style.width = "0";
  const images = $("result-images");
  images.innerHTML = "";
  for (const url of job.images) {
    const img = new Image();
    img.src = url;
    img.alt = "generated image";
    images.append(img);
  }
  loadGallery();
}

// ---- Gallery ----

async function loadGallery() {
  const entries = await api("/api/gallery");
  const gallery = $("gallery");
  gallery.innerHTML = "";
  for (const entry of entries) {
    const figure = document.createElement("figure");
    figure.title = entry.parameters;
    figure.dataset.file = entry.file;
    const img = new Image();
    img.src = entry.url;
    img.alt = entry.file;
    img.loading = "lazy";
    const caption = document.createElement("figcaption");
    caption.textContent = entry.prompt || `${entry.settings.Model || ""} · seed ${entry.settings.Seed || "?"}`;
    figure.append(img, caption);
    figure.addEventListener("click", () => restore(entry, figure));
    gallery.append(figure);
  }
}

/** Puts a past generation's settings back in the form (from its PNG's parameters) and shows it. */
function restore(entry, figure) {
  const s = entry.settings;
  const model = state.models.find((m) => m.name === s.Model || m.name.endsWith("/" + s.Model));
  if (model) $("model").value = model.name;
  modelChanged();
  const sampler = [...$("sampler").options].find((o) => o.value === s.Sampler);
  $("sampler").value = sampler ? sampler.value : "";
  if (s.Steps) $("steps").value = s.Steps;
  if (s.Seed && /^\d+$/.test(s.Seed)) $("seed").value = s.Seed;
  if (s["CFG scale"]) $("guidance").value = s["CFG scale"];
  $("class").value = s.Class || "";
  $("prompt").value = entry.prompt;
  $("negative-prompt").value = entry.negative_prompt;
  if (s.Size) {
    const [w, h] = s.Size.split("x");
    $("width").value = w;
    $("height").value = h;
  }
  for (const f of document.querySelectorAll("#gallery figure")) f.classList.toggle("selected", f === figure);
  const images = $("result-images");
  images.innerHTML = "";
  const img = new Image();
  img.src = entry.url;
  img.alt = entry.file;
  images.append(img);
  $("progress-text").textContent = `Restored the settings of ${entry.file}.`;
}

// ---- Training ----

async function refreshTraining() {
  await Promise.all([loadRuns(), loadTrainJobs()]).catch(() => {});
  if (state.run) await showRun(state.run, false).catch(() => {});
}

async function loadRuns() {
  const runs = await api("/api/runs");
  const body = $("runs").tBodies[0];
  body.innerHTML = "";
  for (const run of runs) {
    const row = body.insertRow();
    for (const text of [run.name, run.kind, run.data, `${run.stepsDone} / ${run.steps}`]) row.insertCell().textContent = text;
    row.classList.toggle("selected", run.name === state.run);
    row.addEventListener("click", () => showRun(run.name, true));
  }
}

/** A run's loss curve (its log's loss columns), latest sample grid and configuration. */
async function showRun(name, fresh) {
  state.run = name;
  for (const row of $("runs").tBodies[0].rows) row.classList.toggle("selected", row.cells[0].textContent === name);
  $("run-title").textContent = name;
  const [log, grids, runs] = await Promise.all([api(`/api/runs/${name}/log`), api(`/api/runs/${name}/samples`), api("/api/runs")]);
  drawLosses(log.columns);
  const grid = $("run-grid");
  if (grids.length) {
    const last = grids[grids.length - 1];
    const url = `/api/runs/${name}/samples/${last}`;
    if (fresh || !grid.src.endsWith(url)) grid.src = url;
    grid.hidden = false;
    $("run-grid-caption").textContent = last.replace(".png", "");
  } else {
    grid.hidden = true;
    $("run-grid-caption").textContent = "no sample grid yet";
  }
  const run = runs.find((r) => r.name === name);
  if (run) $("run-config").textContent = JSON.stringify(run.config, null, 2);
}

const notLosses = new Set(["step", "learning_rate", "seconds", "examples_per_second"]);

/** Each loss column against the step, on a log scale when it spans a decade, smoothed over 1% of the steps. */
function drawLosses(columns) {
  const canvas = $("loss-chart");
  const g = canvas.getContext("2d");
  const [W, H, pad] = [canvas.width, canvas.height, 44];
  g.clearRect(0, 0, W, H);
  const steps = columns.step || [];
  const names = Object.keys(columns).filter((k) => !notLosses.has(k) && !k.startsWith("grad_norm"));
  g.font = "12px system-ui";
  g.fillStyle = "#6b7280";
  if (!steps.length || !names.length) {
    g.fillText("no steps logged yet", pad, H / 2);
    return;
  }
  const series = names.map((name) => {
    const raw = columns[name];
    const k = Math.max(1, Math.round(raw.length / 100));
    return raw.map((_, i) => {
      const window = raw.slice(Math.max(0, i - k + 1), i + 1).filter((v) => v != null && isFinite(v));
      return window.length ? window.reduce((a, b) => a + b, 0) / window.length : null;
    });
  });
  const values = series.flat().filter((v) => v != null);
  let [lo, hi] = [Math.min(...values), Math.max(...values)];
  const log = lo > 0 && hi / lo > 10;
  const f = (v) => (log ? Math.log10(v) : v);
  if (hi === lo) hi = lo + 1;
  const [x0, x1] = [steps[0], steps[steps.length - 1] || 1];
  const X = (s) => pad + ((s - x0) / Math.max(1, x1 - x0)) * (W - pad - 12);
  const Y = (v) => H - pad / 1.5 - ((f(v) - f(lo)) / (f(hi) - f(lo))) * (H - pad);
  g.strokeStyle = "#dde1e7";
  g.strokeRect(pad, 8, W - pad - 12, H - pad / 1.5 - 8);
  g.fillText(hi.toPrecision(3), 2, 16);
  g.fillText(lo.toPrecision(3), 2, H - pad / 1.5);
  g.fillText(`step ${x1}`, W - 80, H - 6);
  g.fillText(log ? "log scale" : "", pad + 4, H - 6);
  const colours = ["#3659d8", "#d8563a", "#2e9d5b", "#8b4fd8"];
  series.forEach((points, n) => {
    g.strokeStyle = colours[n % colours.length];
    g.beginPath();
    let moved = false;
    points.forEach((v, i) => {
      if (v == null || (log && v <= 0)) return;
      moved ? g.lineTo(X(steps[i]), Y(v)) : g.moveTo(X(steps[i]), Y(v));
      moved = true;
    });
    g.stroke();
    g.fillStyle = colours[n % colours.length];
    g.fillText(names[n], W - 140, 24 + 14 * n);
  });
}

async function loadTrainJobs() {
  const jobs = (await api("/jobs")).filter((j) => j.type === "train");
  const list = $("train-jobs");
  list.innerHTML = "";
  list.classList.toggle("muted", !jobs.length);
  if (!jobs.length) list.textContent = "None.";
  for (const job of jobs.slice(-8).reverse()) {
    const div = document.createElement("div");
    div.className = "job";
    const label = document.createElement("span");
    const eta = job.eta != null ? `, ${seconds(job.eta)} left` : "";
    label.textContent = `#${job.id} ${job.state} ${job.step}/${job.steps}${eta} ${job.info}${job.error ? ": " + job.error : ""}`;
    const bar = document.createElement("div");
    bar.className = "progress";
    bar.innerHTML = `<div class="bar" style="width:${Math.round(job.progress * 100)}%"></div>`;
    div.append(label, bar);
    if (job.state === "running" || job.state === "queued") {
      const stop = document.createElement("button");
      stop.textContent = "Stop";
      stop.addEventListener("click", () => api(`/jobs/${job.id}`, "DELETE").then(loadTrainJobs).catch(() => {}));
      div.append(stop);
    }
    list.append(div);
  }
}

$("train-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("train-error").textContent = "";
  const request = {
    type: "train", name: $("train-name").value, model: $("train-model").value, data: $("train-data").value,
    steps: Number($("train-steps").value), batch_size: Number($("train-batch").value),
    conditional: $("train-conditional").checked,
  };
  if ($("train-preset").value) request.preset = $("train-preset").value;
  if ($("train-size").value) request.image_size = Number($("train-size").value);
  if ($("train-autoencoder").value) request.autoencoder = $("train-autoencoder").value;
  try {
    await api("/jobs", "POST", request);
    state.run = request.name;
    await refreshTraining();
  } catch (error) {
    $("train-error").textContent = error.message;
  }
});

// ---- Start ----

async function refreshQueue() {
  const jobs = await api("/jobs").catch(() => []);
  const running = jobs.filter((j) => j.state === "running").length;
  const waiting = jobs.filter((j) => j.state === "queued").length;
  $("queue-status").textContent = running ? `1 job running${waiting ? `, ${waiting} waiting` : ""}` : "idle";
}

(async () => {
  await Promise.all([loadModels(), loadSamplers(), loadGallery()]).catch((error) => {
    $("form-error").textContent = error.message;
  });
  refreshQueue();
  setInterval(refreshQueue, 2000);
  setInterval(() => {
    if ($("training").classList.contains("active")) refreshTraining();
  }, 2000);
  setInterval(() => loadModels().catch(() => {}), 10000);
})();

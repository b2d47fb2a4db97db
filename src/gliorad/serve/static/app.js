// gliorad serve: the page. Builds the form from GET /api/info, uploads with POST /api/jobs,
// polls the job, shows the result and the slice viewer. The token (when the service has one)
// comes from the address (#token=...) or the token form, is kept for this tab only
// (sessionStorage) and is sent as "Authorization: Bearer"; it never goes into a URL the page
// requests.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {info: null, token: sessionStorage.getItem("gliorad-token"), files: [], zip: null,
               job: null, poll: null, urls: [], viewer: null};

// The sequence a file name tells (as gliorad.serve.uploads.sequence_from_name does).
const NAME_RULES = [
  ["t1ce", /(?:^|[_\-. ])(t1ce|t1c|t1gd|t1[-_]?gd|t1[-_]?post|post[-_]?gad|t1[-_]?contrast)$/i],
  ["flair", /(?:^|[_\-. ])(flair|t2f|t2[-_]flair)$/i],
  ["t2", /(?:^|[_\-. ])(t2|t2w)$/i],
  ["t1", /(?:^|[_\-. ])(t1|t1n|t1w|t1[-_]?pre|t1[-_]?native)$/i],
];

function niftiStem(name) {
  const low = name.toLowerCase();
  if (low.endsWith(".nii.gz")) return name.slice(0, -7);
  if (low.endsWith(".nii")) return name.slice(0, -4);
  return null;
}

function guessSequence(name) {
  const stem = niftiStem(name);
  if (stem === null) return "";
  for (const [seq, rx] of NAME_RULES) if (rx.test(stem)) return seq;
  return "";
}

function headers() {
  return state.token ? {"Authorization": "Bearer " + state.token} : {};
}

class ApiError extends Error {
  constructor(status, problems) {
    super(problems.join("\n"));
    this.status = status;
    this.problems = problems;
  }
}

async function problemsOf(resp) {
  try {
    const body = await resp.json();
    if (Array.isArray(body.problems)) return body.problems;
    if (typeof body.detail === "string") return [body.detail];
    if (Array.isArray(body.detail)) return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`);
  } catch (e) { /* not JSON */ }
  return [`${resp.status} ${resp.statusText}`];
}

async function api(path, options = {}) {
  const resp = await fetch(path, {...options, headers: {...headers(), ...(options.headers || {})}});
  if (resp.status === 401 || resp.status === 403) {
    const problems = await problemsOf(resp);
    showToken(problems.join(" "));
    throw new ApiError(resp.status, problems);
  }
  if (!resp.ok) throw new ApiError(resp.status, await problemsOf(resp));
  return resp;
}

function showToken(message) {
  $("token-panel").hidden = false;
  $("main").hidden = true;
  $("token-error").textContent = message || "";
}

function showProblems(el, problems) {
  el.hidden = false;
  el.replaceChildren();
  const ul = document.createElement("ul");
  for (const p of problems) {
    const li = document.createElement("li");
    li.textContent = p;
    ul.append(li);
  }
  el.append(ul);
}

// ------------------------------------------------------------------------------ start
// The token in the address (#token=..., as gliorad serve prints it): kept, then dropped from
// the address bar and history.
function tokenFromAddress() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (!hash.get("token")) return false;
  state.token = hash.get("token");
  sessionStorage.setItem("gliorad-token", state.token);
  history.replaceState(null, "", location.pathname);
  return true;
}

async function start() {
  tokenFromAddress();
  window.addEventListener("hashchange", () => { if (tokenFromAddress()) loadInfo(); });
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("gliorad-token", state.token);
    loadInfo();
  });
  setupDrop();
  $("submit").addEventListener("click", submit);
  $("reset").addEventListener("click", resetAll);
  $("delete-job").addEventListener("click", deleteJob);
  $("overlay").addEventListener("change", () => state.viewer && state.viewer.setOverlay($("overlay").checked));
  $("opacity").addEventListener("input", () => state.viewer && state.viewer.setOpacity(Number($("opacity").value)));
  await loadInfo();
}

async function loadInfo() {
  let info;
  try {
    info = await (await api("/api/info")).json();
  } catch (e) {
    if (!(e instanceof ApiError && (e.status === 401 || e.status === 403))) {
      $("bundle-line").textContent = "The service did not answer: " + e.message;
    }
    return;
  }
  state.info = info;
  $("token-panel").hidden = true;
  $("main").hidden = false;
  const b = info.bundle;
  $("bundle-line").textContent = `Bundle ${b.path} (created ${b.created_utc}, gliorad ` +
    `${b.gliorad_version}; manifest ${String(b.manifest_sha256).slice(0, 12)}...): ` +
    `${info.sequences.join(", ")}; ` + (info.models.grading ? "grade" : "no grade") +
    (info.models.survival ? ", LGG survival" : "") + `. Uploads up to ${info.limits.max_upload_mb} MB; ` +
    `results kept ${info.limits.keep_hours} h.`;
  $("need-line").textContent = info.zip_only ? "one ZIP laid out as the bundle's files"
    : info.sequences.join(", ");
  buildClinical(info.clinical);
  if (!info.models.segmentation) {  // the mask is needed: shown, and asked for
    $("options").open = true;
    $("mask-line").firstChild.textContent = "Tumour mask (required: this bundle has no " +
      "segmentation model; a NIfTI label mask on the images' grid) ";
  }
  renderAssign();
}

function buildClinical(fields) {
  const box = $("clinical");
  box.replaceChildren();
  if (!fields.length) {
    box.textContent = "This bundle has no nomogram: no clinical factor is needed.";
    return;
  }
  for (const f of fields) {
    const label = document.createElement("label");
    label.append(f.name + " ");
    let input;
    if (f.kind === "choice") {
      input = document.createElement("select");
      input.append(new Option("(not given)", ""));
      for (const c of f.choices) input.append(new Option(c, c));
    } else {
      input = document.createElement("input");
      input.type = "number";
      input.step = "any";
      if (f.min !== null) input.min = f.min;
      if (f.max !== null) input.max = f.max;
      input.size = 6;
    }
    input.id = "clin-" + f.name;
    input.dataset.factor = f.name;
    label.append(input);
    const small = document.createElement("span");
    small.className = "for";
    small.textContent = " (" + f.nomograms.join(", ") + ")";
    label.append(small);
    box.append(label);
  }
}

// ------------------------------------------------------------------------------ files
function setupDrop() {
  const drop = $("drop");
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => addFiles(e.dataTransfer.files));
  $("files").addEventListener("change", () => { addFiles($("files").files); $("files").value = ""; });
  $("mask").addEventListener("change", renderAssign);
}

function addFiles(list) {
  for (const file of list) {
    if (file.name.toLowerCase().endsWith(".zip")) {
      state.zip = file;
      state.files = [];
    } else {
      state.zip = null;
      state.files = state.files.filter((f) => f.file.name !== file.name);
      state.files.push({file, seq: guessSequence(file.name)});
    }
  }
  renderAssign();
}

function sizeText(n) {
  return n > 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.ceil(n / 1024) + " kB";
}

function renderAssign() {
  const info = state.info;
  if (!info) return;
  const tbody = $("assign").querySelector("tbody");
  tbody.replaceChildren();
  const rows = state.zip ? [{file: state.zip, seq: "zip"}] : state.files;
  $("assign").hidden = rows.length === 0;
  for (const entry of rows) {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.textContent = entry.file.name;
    const size = document.createElement("td");
    size.textContent = sizeText(entry.file.size);
    const seq = document.createElement("td");
    if (entry.seq === "zip") {
      seq.textContent = "ZIP: the service finds the sequences in it";
    } else {
      const sel = document.createElement("select");
      sel.append(new Option("(not used)", ""));
      for (const s of ["t1", "t1ce", "t2", "flair"]) sel.append(new Option(s, s));
      sel.value = entry.seq;
      sel.addEventListener("change", () => { entry.seq = sel.value; renderAssign(); });
      seq.append(sel);
    }
    tr.append(name, size, seq);
    tbody.append(tr);
  }
  const problems = [];
  if (!state.zip) {
    for (const s of info.sequences) {
      const n = state.files.filter((f) => f.seq === s).length;
      if (n === 0) problems.push(`no ${s} file`);
      if (n > 1) problems.push(`${n} files marked ${s}`);
    }
    if (info.zip_only) problems.push("this bundle takes one ZIP");
  }
  if (!info.models.segmentation && !$("mask").files.length) problems.push("the tumour mask");
  $("assign-status").textContent = rows.length === 0 ? "" :
    (problems.length ? "Still needed: " + problems.join("; ") : "Ready.");
  $("submit").disabled = problems.length > 0 || rows.length === 0;
}

function resetAll() {
  state.files = [];
  state.zip = null;
  $("upload-error").hidden = true;
  $("mask").value = "";
  renderAssign();
}

// ------------------------------------------------------------------------------ submit
function clinicalValues() {
  const out = {};
  for (const el of $("clinical").querySelectorAll("[data-factor]")) {
    if (el.value !== "") out[el.dataset.factor] = el.value;
  }
  return out;
}

function submit() {
  const form = new FormData();
  if (state.zip) {
    form.append("study", state.zip, state.zip.name);
  } else {
    for (const f of state.files) if (f.seq) form.append(f.seq, f.file, f.file.name);
  }
  const mask = $("mask").files[0];
  if (mask) form.append("mask", mask, mask.name);
  form.append("clinical", JSON.stringify(clinicalValues()));
  const pid = $("patient-id").value.trim();
  if (pid) form.append("patient_id", pid);
  $("upload-error").hidden = true;
  $("submit").disabled = true;
  $("result-panel").hidden = true;
  $("viewer-panel").hidden = true;
  $("progress-panel").hidden = false;
  setProgress(0, "uploading");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs");
  for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) setProgress(0, `uploading ${Math.round(100 * e.loaded / e.total)}%`);
  });
  xhr.addEventListener("load", () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status === 202) {
      state.job = body;
      pollJob();
      return;
    }
    $("progress-panel").hidden = true;
    $("submit").disabled = false;
    if (xhr.status === 401 || xhr.status === 403) showToken(body.detail);
    showProblems($("upload-error"), body.problems || [body.detail ? String(body.detail) :
      `the service answered ${xhr.status}`]);
  });
  xhr.addEventListener("error", () => {
    $("progress-panel").hidden = true;
    $("submit").disabled = false;
    showProblems($("upload-error"), ["the upload did not reach the service (connection closed; " +
      "is the file over the size limit, or the service stopped?)"]);
  });
  xhr.send(form);
}

function setProgress(value, text) {
  $("progress").value = value;
  $("progress-text").textContent = text;
}

async function pollJob() {
  clearTimeout(state.poll);
  let job;
  try {
    job = await (await api(`/api/jobs/${state.job.id}`)).json();
  } catch (e) {
    setProgress(0, "the job could not be read: " + e.message);
    $("submit").disabled = false;
    return;
  }
  state.job = job;
  if (job.status === "queued") {
    setProgress(0, `queued (position ${job.queue_position})`);
  } else if (job.status === "running") {
    setProgress(job.progress, `running: ${job.step || "starting"}`);
  }
  if (job.status === "done") {
    setProgress(1, "done");
    $("submit").disabled = false;
    await showResult(job);
    return;
  }
  if (job.status === "failed") {
    $("progress-panel").hidden = true;
    $("submit").disabled = false;
    showProblems($("upload-error"), ["The prediction failed:", ...job.error.problems]);
    return;
  }
  state.poll = setTimeout(pollJob, 600);
}

// ------------------------------------------------------------------------------ result
function fmt(v, digits = 3) {
  return typeof v === "number" ? v.toFixed(digits) : String(v);
}

// predict's messages speak to the command line; on the page the form takes the values
function pageText(text) {
  return text.replace(/ Give them as --clinical .*$/, " Fill them in on the form above.")
    .replace(/--clinical /g, "");
}

function row(tbody, label, value, cls) {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.textContent = label;
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  tr.append(th, td);
  tbody.append(tr);
  return td;
}

function list(container, items) {
  const ul = container.querySelector("ul");
  ul.replaceChildren();
  for (const x of items) {
    const li = document.createElement("li");
    li.textContent = x;
    ul.append(li);
  }
  container.hidden = items.length === 0;
}

async function blobUrl(path) {
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

async function showResult(job) {
  const r = await (await api(job.links.result)).json();
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
  $("r-patient").textContent = r.patient_id;
  list($("r-warnings"), r.warnings || []);
  const tbody = $("r-numbers");
  tbody.replaceChildren();
  const g = r.grading;
  if (g) {
    row(tbody, "HGG probability", fmt(g.probability_hgg), "big").id = "r-hgg";
    row(tbody, "Predicted grade", `${g.predicted_grade} (threshold ${fmt(g.threshold, 2)})`).id = "r-grade";
  } else {
    row(tbody, "Grade", "not predicted (the bundle has no grading model)");
  }
  row(tbody, "Tumour volume", `${fmt(r.mask.volume_ml, 1)} ml (${r.mask.source} mask)`);
  const s = r.survival;
  const noms = $("r-nomograms");
  noms.replaceChildren();
  const reasons = new Set();
  if (s) {
    if (s.signature_score === null) {
      row(tbody, "Signature", "none: the survival model is the clinical model");
    } else {
      row(tbody, "Signature score", fmt(s.signature_score));
      row(tbody, "Risk group", `${s.risk_group} (cut-off ${fmt(s.cutoff)})`,
          "big " + s.risk_group).id = "r-risk";
    }
    const h = document.createElement("h3");
    h.textContent = "Survival (LGG models)";
    noms.append(h);
    for (const [which, nom] of Object.entries(s.nomograms)) {
      const p = document.createElement("p");
      const b = document.createElement("b");
      b.textContent = which + " nomogram";
      p.append(b);
      noms.append(p);
      if (!nom.computed) {
        p.append(": not computed: " + pageText(nom.reason || "").replace(/^\w+ nomogram not computed: /, ""));
        reasons.add(nom.reason);
        continue;
      }
      const values = Object.entries(nom.values).map(([k, v]) => `${k} = ${v}`).join(", ");
      p.append(` (${values}; ${fmt(nom.total_points, 1)} points)`);
      const table = document.createElement("table");
      table.id = "r-nomogram-" + which;
      const head = table.insertRow();
      const cells = table.insertRow();
      for (const [t, v] of Object.entries(nom.survival)) {
        const th = document.createElement("th");
        th.textContent = t + " survival";
        head.append(th);
        cells.insertCell().textContent = fmt(v);
      }
      noms.append(table);
    }
  }
  // a nomogram's reason is shown with it; the rest of the messages and notes listed
  list($("r-messages"), [...(r.messages || []), ...(r.notes || [])]
    .filter((m) => !reasons.has(m)).map(pageText));
  $("r-expires").textContent = job.expires ? `Kept on the service until ${job.expires} (UTC).` : "";
  $("result-panel").hidden = false;
  $("result-panel").dataset.status = "done";
  const links = [["dl-summary", job.links.summary], ["dl-json", job.links.result],
                 ["dl-mask", job.links.mask], ["dl-features", job.links.features]];
  for (const [id] of links) $(id).removeAttribute("href");
  $("dl-mask").download = `${r.patient_id}_mask.nii.gz`;
  $("dl-features").download = `${r.patient_id}_features.csv`;
  $("dl-json").download = `${r.patient_id}_prediction.json`;
  await Promise.all(links.map(async ([id, path]) => { $(id).href = await blobUrl(path); }));
  await showViewer(job);
}

async function showViewer(job) {
  const meta = await (await api(job.links.viewer)).json();
  const names = [...meta.sequences, "mask"];
  const arrays = await Promise.all(names.map(async (n) =>
    new Uint8Array(await (await api(`${job.links.viewer}/${n}`)).arrayBuffer())));
  const volumes = {};
  meta.sequences.forEach((s, i) => { volumes[s] = arrays[i]; });
  const views = ["axial", "coronal", "sagittal"];
  const pick = (prefix) => Object.fromEntries(views.map((v) => [v, $(prefix + v)]));
  // new canvases: the old viewer's listeners go with the old ones
  for (const v of views) {
    const old = $("view-" + v);
    const fresh = old.cloneNode(false);
    old.replaceWith(fresh);
    const slider = $("slice-" + v);
    const newSlider = slider.cloneNode(false);
    slider.replaceWith(newSlider);
  }
  state.viewer = new window.SliceViewer(meta, volumes, arrays[arrays.length - 1], pick("view-"),
                                        pick("slice-"), pick("label-"));
  state.viewer.setOverlay($("overlay").checked);
  state.viewer.opacity = Number($("opacity").value);
  const buttons = $("seq-buttons");
  buttons.replaceChildren();
  const first = meta.sequences.includes("t1ce") ? "t1ce" : meta.sequences[0];
  for (const s of meta.sequences) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = s;
    b.dataset.sequence = s;
    b.addEventListener("click", () => {
      for (const x of buttons.children) x.classList.toggle("active", x === b);
      state.viewer.setSequence(s);
    });
    if (s === first) b.classList.add("active");
    buttons.append(b);
  }
  state.viewer.setSequence(first);
  $("viewer-panel").hidden = false;
  $("viewer-panel").dataset.ready = "1";
}

async function deleteJob() {
  if (!state.job) return;
  try {
    await api(`/api/jobs/${state.job.id}`, {method: "DELETE"});
  } catch (e) {
    showProblems($("upload-error"), e.problems || [e.message]);
    return;
  }
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
  state.job = null;
  $("result-panel").hidden = true;
  $("viewer-panel").hidden = true;
  $("progress-panel").hidden = true;
}

document.addEventListener("DOMContentLoaded", start);

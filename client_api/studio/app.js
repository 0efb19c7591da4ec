// The studio: choose a photo and a style, follow the job, compare, download, keep a history.
import { ApiError, apiKey, filenameOf, request } from "./api.js";
import { drawDetections, setupCompare } from "./compare.js";
import { checkFile, showPreview, watchPhotoInputs } from "./photo.js";
import { describeProgress, follow, watchQueue } from "./progress.js";
import { setupHistory } from "./history.js";

const $ = (id) => document.getElementById(id);
const LABELS = {
  modes: { full: "Whole room", furniture: "Furniture only", keep_furniture: "Keep the furniture" },
  speeds: { quality: "Quality", balanced: "Balanced", fast: "Fast" },
};

let limits = null;
let photo = null; // the File to upload, or null when restyling an earlier job's photo
let current = null; // the job on screen: { id, estimate, position, stream, queue }
let lastJob = null;

function showAlert(message) {
  const alert = $("alert");
  alert.textContent = message;
  alert.hidden = !message;
}

function explain(error) {
  if (!(error instanceof ApiError)) return String(error);
  if (error.status === 401) {
    askForKey();
    return `Your API key was refused: ${error.message}. Enter a valid key.`;
  }
  if (error.status === 429 && error.retryAfter) return `${error.message} (try again in ${error.retryAfter} s)`;
  return error.message;
}

const fail = (error) => showAlert(explain(error));

function askForKey() {
  $("key-form").hidden = false;
  $("key-input").focus();
}

function setJobInUrl(jobId) {
  const url = new URL(location.href);
  if (jobId) url.searchParams.set("job", jobId); else url.searchParams.delete("job");
  history.replaceState(null, "", url);
}

// --- the form ---------------------------------------------------------------------------------

function radios(container, name, values, labels, checked) {
  for (const value of values) {
    const label = document.createElement("label");
    const input = Object.assign(document.createElement("input"), { type: "radio", name, value });
    input.checked = value === checked;
    label.append(input, ` ${labels[value] || value}`);
    container.append(label);
  }
}

function styleCards(styles) {
  const box = $("styles");
  styles.forEach((style, i) => {
    const label = document.createElement("label");
    label.className = "card";
    const input = Object.assign(document.createElement("input"), { type: "radio", name: "style", value: style.name });
    input.checked = i === 0;
    const name = Object.assign(document.createElement("strong"), {
      textContent: style.name.replace(/-/g, " ").replace(/\b\w/g, (c) => c.toUpperCase()),
    });
    const swatches = document.createElement("span");
    swatches.className = "swatches";
    swatches.setAttribute("aria-hidden", "true");
    for (const colour of style.palette) {
      const swatch = document.createElement("span");
      swatch.style.background = colour;
      swatches.append(swatch);
    }
    const text = Object.assign(document.createElement("span"), { textContent: style.description,
      id: `style-${style.name}` });
    input.setAttribute("aria-label", name.textContent); // the name alone; the description is read after it
    input.setAttribute("aria-describedby", text.id);
    label.append(input, name, swatches, text);
    box.append(label);
  });
}

function fillForm(styles) {
  styleCards(styles);
  const rooms = $("room-type");
  for (const room of limits.room_types) rooms.append(new Option(room[0].toUpperCase() + room.slice(1), room));
  radios($("modes"), "mode", limits.modes, LABELS.modes, limits.modes[0]);
  radios($("speeds"), "speed", limits.speeds, LABELS.speeds, limits.speeds[0]);
  $("steps").max = limits.steps.max;
  $("seed").max = limits.max_seed;
  $("prompt").maxLength = limits.max_prompt_chars;
  $("file").accept = limits.accepted_types.join(",");
  $("file-hint").textContent = `JPEG, PNG or WebP, up to ${Math.round(limits.max_upload_bytes / 1048576)} MB.`;
  updateStepsHint();
  $("speeds").addEventListener("change", updateStepsHint);
}

function updateStepsHint() {
  const speed = new FormData($("job-form")).get("speed");
  $("steps").placeholder = `default ${limits.steps.default[speed]} (1–${limits.steps.max})`;
}

async function choosePhoto(file) {
  showAlert("");
  const preview = { figure: $("preview"), img: $("preview-img"), caption: $("preview-caption") };
  const problem = checkFile(file, limits) || (await showPreview(preview, file, limits));
  if (problem) {
    photo = null;
    return showAlert(problem);
  }
  photo = file;
  $("from-job").value = "";
}

async function submit(event) {
  event.preventDefault();
  showAlert("");
  const form = new FormData($("job-form"));
  form.delete("file");
  for (const [name, value] of [...form.entries()]) if (value === "") form.delete(name);
  if (photo) form.set("file", photo, photo.name);
  else if (!form.get("from_job")) return showAlert("Choose a photo of your room first.");
  $("submit").disabled = true;
  try {
    const created = await request("/v1/jobs", { method: "POST", body: form });
    openJob(created.job_id, created.estimated_time);
    jobHistory.refresh();
  } catch (e) {
    fail(e);
  } finally {
    $("submit").disabled = false;
  }
}

// --- a job: progress, then the result ---------------------------------------------------------

function showProgress(job) {
  if (current && job.queue_position) current.position = job.queue_position; // the stream does not carry it
  const { percent, text, step } = describeProgress(job, current || {});
  $("progress-text").textContent = text;
  $("progress-bar").value = percent;
  $("progress-bar").setAttribute("aria-valuetext", `${percent}%`);
  if (step) $("progress-step").textContent = step;
}

async function openJob(jobId, estimate = null) {
  current?.stream.stop();
  current?.queue.stop();
  setJobInUrl(jobId);
  $("result").hidden = true;
  $("progress").hidden = false;
  $("progress-step").textContent = "";
  $("cancel").disabled = false;
  showProgress({ progress: 0, message: "Connecting…" });
  current = { id: jobId, estimate };
  current.queue = watchQueue(jobId, showProgress);
  current.stream = follow(jobId, {
    onUpdate: (job) => {
      if (job.status !== "queued") current.queue.stop();
      showAlert("");
      showProgress(job);
    },
    onTrouble: (message) => { $("progress-text").textContent = message; },
    onEnd: (name, job) => { current.queue.stop(); finished(jobId, name, job); },
  });
}

async function finished(jobId, name, job) {
  $("progress").hidden = name !== "canceled";
  if (name === "error") {
    // the stream was refused: ask the API why, so its own message is shown
    try { await request(`/v1/jobs/${jobId}`); } catch (e) { fail(e); }
    setJobInUrl(null);
    return;
  }
  jobHistory.refresh();
  if (name === "completed") return showResult(job);
  setJobInUrl(null);
  if (name === "failed") showAlert(`The restyle failed: ${job.error || "unknown error"}`);
  else if (name === "deleted") showAlert("This job no longer exists (it was deleted or has expired).");
  else {
    $("progress").hidden = false;
    $("progress-text").textContent = "Canceled.";
    $("cancel").disabled = true;
  }
}

function fact(term, value) {
  const dt = Object.assign(document.createElement("dt"), { textContent: term });
  const dd = Object.assign(document.createElement("dd"), { textContent: value });
  $("facts").append(dt, dd);
}

function showResult(job) {
  lastJob = job;
  const { result } = job;
  const meta = result.metadata;
  $("before").src = result.original_url;
  $("after").src = result.transformed_url;
  $("after").onload = () => drawDetections($("detections"), $("after"), meta.detections);
  $("depth").src = result.depth_map_url || "";
  $("edges").src = result.edge_map_url || "";
  $("depth").closest(".maps").hidden = !result.depth_map_url;
  $("facts").replaceChildren();
  fact("Style", job.style);
  fact("Room type", meta.room_type ? `${meta.room_type} (${Math.round((meta.room_confidence || 0) * 100)}%)` : "–");
  fact("Quality score", meta.quality_score != null ? meta.quality_score.toFixed(2) : "–");
  fact("Seed", meta.seed ?? "–");
  fact("Furniture found", String(meta.detections.filter((d) => d.furniture).length));
  compare.reset();
  $("result").hidden = false;
  $("result-title").focus();
}

async function download() {
  try {
    const response = await request(`/v1/jobs/${lastJob.job_id}/download`, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    const a = Object.assign(document.createElement("a"), { href: url, download: filenameOf(response, "room.jpg") });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) { fail(e); }
}

function anotherStyle() {
  photo = null;
  $("file").value = "";
  $("from-job").value = lastJob.job_id;
  $("preview-img").src = lastJob.result.original_url;
  $("preview-img").hidden = false;
  $("preview-caption").textContent = "The same photo as before (no new upload)";
  $("preview").hidden = false;
  const form = $("job-form");
  form.scrollIntoView();
  form.querySelector("input[name=style]:checked")?.focus();
}

async function cancel() {
  $("cancel").disabled = true;
  try { await request(`/v1/jobs/${current.id}`, { method: "DELETE" }); } catch (e) { fail(e); }
}

// --- start ---------------------------------------------------------------------------------------

const compare = setupCompare({ compare: $("compare"), slider: $("slider"), sideBySide: $("side-by-side") });
const jobHistory = setupHistory({ list: $("history-list"), empty: $("history-empty"), more: $("history-more") },
  { onOpen: (id) => openJob(id), onError: fail });

async function start() {
  const [styles, lim] = await Promise.all([request("/v1/styles"), request("/v1/limits")]);
  limits = lim;
  fillForm(styles);
  $("key-button").hidden = !limits.api_key_required;
  $("key-input").value = apiKey.get();
  if (limits.api_key_required && !apiKey.get()) return askForKey();
  await afterKey();
}

async function afterKey() {
  await jobHistory.refresh();
  const jobId = new URL(location.href).searchParams.get("job");
  if (jobId) openJob(jobId);
}

$("key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  apiKey.set($("key-input").value.trim());
  $("key-form").hidden = true;
  showAlert("");
  await afterKey();
});
$("key-button").addEventListener("click", askForKey);
$("job-form").addEventListener("submit", submit);
$("cancel").addEventListener("click", cancel);
$("download").addEventListener("click", download);
$("another").addEventListener("click", anotherStyle);
$("show-detections").addEventListener("change", (e) => $("detections").toggleAttribute("hidden", !e.target.checked));
watchPhotoInputs({ drop: $("drop"), input: $("file"), onFile: choosePhoto });
start().catch(fail);

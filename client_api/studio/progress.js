// Following a job over its Server-Sent Events stream (and its place in the queue while it waits). EventSource reconnects by itself after a
// drop (the server sends retry: 2000) and every (re)connection starts with the job's current state.
import { eventsUrl, request } from "./api.js";

const TERMINAL = ["completed", "failed", "canceled", "deleted"];

export function follow(jobId, { onUpdate, onEnd, onTrouble }) {
  const source = new EventSource(eventsUrl(jobId));
  const handle = (name) => (e) => {
    const data = JSON.parse(e.data);
    if (TERMINAL.includes(name)) {
      source.close();
      onEnd(name, data);
    } else if (name === "unavailable") {
      onTrouble("Live progress was interrupted; reconnecting…");
    } else {
      onUpdate(data);
    }
  };
  for (const name of ["progress", "unavailable", ...TERMINAL]) source.addEventListener(name, handle(name));
  source.onerror = () => {
    // CLOSED: the server refused the stream (a wrong key or a job that is not ours); else it retries
    if (source.readyState === EventSource.CLOSED) onEnd("error", { error: "the progress stream was refused" });
    else onTrouble("Connection lost; reconnecting…");
  };
  return { stop: () => source.close() };
}

// The stream says nothing while a job waits: its place in the queue comes from polling the job.
export function watchQueue(jobId, onJob, everyMs = 2000) {
  let timer = null;
  let stopped = false;
  const poll = async () => {
    const job = await request(`/v1/jobs/${encodeURIComponent(jobId)}`).catch(() => null);
    if (!stopped && job?.status === "queued") {
      onJob(job);
      timer = setTimeout(poll, everyMs);
    }
  };
  poll();
  return { stop: () => { stopped = true; clearTimeout(timer); } };
}

// `waiting`: what is known of a queued job's wait ({position, estimate}, from polling and the submit).
export function describeProgress(job, waiting = {}) {
  const percent = Math.round((job.progress || 0) * 100);
  let text = job.message || job.status;
  if (job.status === "queued" && waiting.position) text += ` You are number ${waiting.position}.`;
  else if (job.status === "queued" && waiting.estimate) text += ` (about ${Math.ceil(waiting.estimate)} s)`;
  const step = job.step && job.total_steps ? `Step ${job.step} of ${job.total_steps}` : "";
  return { percent, text, step };
}

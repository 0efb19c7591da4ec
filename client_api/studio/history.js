// The caller's own jobs (GET /v1/jobs), newest first, a page at a time.
import { request } from "./api.js";

export function setupHistory({ list, empty, more }, { onOpen, onError }) {
  let cursor = null;

  function item(job) {
    const li = document.createElement("li");
    li.dataset.jobId = job.job_id;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    const when = job.created_at ? new Date(job.created_at).toLocaleString() : "";
    open.setAttribute("aria-label", `Open ${job.style} (${job.status}) from ${when}`);
    if (job.result) {
      const img = document.createElement("img");
      img.src = job.result.thumbnail_url;
      img.alt = "";
      open.append(img);
    }
    const label = document.createElement("span");
    label.textContent = `${job.style} · ${job.status}`;
    open.append(label);
    open.addEventListener("click", () => onOpen(job.job_id));
    const del = document.createElement("button");
    del.type = "button";
    del.className = "delete";
    del.textContent = "Delete";
    del.setAttribute("aria-label", `Delete ${job.style} from ${when}`);
    del.addEventListener("click", async () => {
      try {
        await request(`/v1/jobs/${job.job_id}/data`, { method: "DELETE" });
        li.remove();
        empty.hidden = list.children.length > 0;
      } catch (e) { onError(e); }
    });
    li.append(open, del);
    return li;
  }

  async function load(reset) {
    if (reset) { cursor = null; list.replaceChildren(); }
    try {
      const page = await request(`/v1/jobs?limit=12${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      list.append(...page.jobs.map(item));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      empty.hidden = list.children.length > 0;
    } catch (e) { onError(e); }
  }

  more.addEventListener("click", () => load(false));
  return { refresh: () => load(true) };
}

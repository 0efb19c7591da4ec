// The public API, as the studio calls it: the key, JSON requests, and refusals as ApiError.
const KEY = "restyle.apiKey";

export const apiKey = {
  get: () => localStorage.getItem(KEY) || "",
  set: (key) => localStorage.setItem(KEY, key),
};

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function describe(detail) {
  // 422 validation errors are a list of {loc, msg}; every other refusal says it in a sentence.
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(-1)[0] || "request"}: ${d.msg}`).join("; ");
  return String(detail ?? "");
}

export async function request(path, { method = "GET", body, raw = false } = {}) {
  const headers = {};
  const key = apiKey.get();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, { method, body, headers });
  } catch (e) {
    throw new ApiError(0, "network", "The service cannot be reached; check your connection and try again.");
  }
  if (!response.ok) {
    let data = {};
    try { data = await response.json(); } catch (e) { /* not JSON: fall back on the status text */ }
    const retry = response.headers.get("Retry-After");
    const message = describe(data.detail) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, data.error || "error", message, retry ? Number(retry) : null);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

// EventSource cannot send headers: the API also takes the key as a query parameter.
export function eventsUrl(jobId) {
  const key = apiKey.get();
  return `/v1/jobs/${encodeURIComponent(jobId)}/events` + (key ? `?api_key=${encodeURIComponent(key)}` : "");
}

export function filenameOf(response, fallback) {
  const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
  return match ? match[1] : fallback;
}

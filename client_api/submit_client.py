"""`restyle submit`: upload, follow the SSE stream with a progress bar, download the result."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def iter_sse(response: httpx.Response):
    """(event, data dict) pairs from a text/event-stream response."""
    event, data = "message", []
    for line in response.iter_lines():
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def refusal(r: httpx.Response, api: str) -> str:
    """One line for a refused request: the API's error code and detail, and what to do."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "detail" not in body:  # every answer of this API carries one
        return (f"refused ({r.status_code}): is {api} the job API? It answered like something else "
                "(`restyle serve` and `restyle api` listen on 8080 by default; 8000 is tritonserver's)")
    code, detail = body.get("error", ""), body["detail"]
    if not isinstance(detail, str):  # FastAPI's validation errors: a list of {loc, msg}
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail)
    hint = {401: " — pass --api-key or set RESTYLE_API_KEY", 403: " — this key may not do that"}
    return f"refused ({r.status_code}{' ' + code if code else ''}): {detail}{hint.get(r.status_code, '')}"


def submit_and_follow(api: str, api_key: str | None, photo: Path, *, wait: bool, out: Path | None,
                      **params) -> int:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    form = {k: str(v) for k, v in params.items() if v is not None}
    job_id = None
    try:
        with httpx.Client(base_url=api, headers=headers, timeout=httpx.Timeout(30, read=None)) as client:
            r = client.post("/v1/jobs", data=form, files={"file": (photo.name, photo.read_bytes())})
            if r.status_code != 202:
                console.print(f"[red]submit {refusal(r, api)}[/red]")
                return 1
            job_id = r.json()["job_id"]
            try:
                return _after_submit(client, r.json(), photo, wait, out, params)
            except KeyboardInterrupt:  # the job would go on without anyone waiting for it
                client.delete(f"/v1/jobs/{job_id}", timeout=5)
                console.print(f"job {job_id} canceled")
                return 130
    except httpx.TransportError as exc:
        console.print(f"[red]error:[/red] cannot reach the job API at {api} ({type(exc).__name__}: {exc}); start it with "
                      "`restyle serve` (or `restyle api` + `restyle worker`), or pass --api URL / set RESTYLE_API_URL"
                      + (f" (job {job_id} was submitted)" if job_id else ""))
        return 2


def _after_submit(client: httpx.Client, job: dict, photo: Path, wait: bool, out: Path | None, params: dict) -> int:
    console.print(f"job {job['job_id']} queued (about {job['estimated_time']:.0f} s)")
    if not wait:
        print(job["job_id"])
        return 0
    final = _follow(client, job["job_id"])
    if final.get("status") != "completed":
        console.print(f"[red]job {final.get('status')}:[/red] {final.get('error')}")
        return 1
    out = out or photo.with_name(f"{photo.stem}_{params.get('style')}.jpg")
    img = client.get(final["result"]["transformed_url"], follow_redirects=True)
    img.raise_for_status()
    out.write_bytes(img.content)
    meta = final["result"]["metadata"]
    quality = meta.get("quality_score")
    console.print(f"[green]done[/green]: {out}  room={meta.get('room_type')} "
                  f"quality={'?' if quality is None else f'{quality:.3f}'}")
    return 0


def _follow(client: httpx.Client, job_id: str) -> dict:
    columns = (TextColumn("{task.description:<32}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("Queued...", total=1.0)
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
            resp.raise_for_status()
            for event, data in iter_sse(resp):
                bar.update(task, completed=float(data.get("progress") or 0),
                           description=data.get("message") or data.get("status", ""))
                if event in ("completed", "failed", "canceled", "deleted"):
                    return data
    return client.get(f"/v1/jobs/{job_id}").json()

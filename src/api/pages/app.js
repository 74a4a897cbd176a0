// tubesum's web console: keeps the server-rendered pages live over Server-Sent Events.
// Nothing here is needed to read a page or use its forms; it only updates what is shown.
"use strict";

const FINAL = new Set(["summarized", "failed", "cancelled"]);
const JOB_FINAL = new Set(["completed", "completed_with_errors", "failed", "cancelled"]);

function setBadge(el, status) {
  if (!el) return;
  el.dataset.status = status;
  el.textContent = status.replaceAll("_", " ");
}

function setText(el, text) {
  if (el && el.textContent !== String(text)) el.textContent = text;
}

// Final videos of all, and the whole percentage (an ended job is at 100 %), as the server counts.
function done(progress) {
  const c = progress.counts;
  const total = c.total || 0;
  const finished = (c.summarized || 0) + (c.failed || 0) + (c.cancelled || 0);
  const percent = JOB_FINAL.has(progress.status) ? 100 : total ? Math.floor((finished * 100) / total) : 0;
  return { finished, total, percent };
}

// Says on the page that live updates stopped (the stream was refused or the server went away).
function lost(message) {
  let note = document.getElementById("live-lost");
  if (!note) {
    note = document.createElement("p");
    note.id = "live-lost";
    note.className = "notice";
    note.setAttribute("role", "status");
    document.querySelector("main").prepend(note);
  }
  note.textContent = message;
}

// Shows a progress: the badge, the bar, the percentage and the figures under `scope`.
function showDone(scope, p) {
  const d = done(p);
  setBadge(scope.querySelector(".status .badge"), p.status);
  scope.querySelector("progress").value = d.percent;
  setText(scope.querySelector(".percent"), d.percent + " %");
  setText(scope.querySelector(".done"), d.finished);
  setText(scope.querySelector(".total"), d.total);
  return d;
}

function follow(url, handlers) {
  const source = new EventSource(url);
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (e) => handle(e, source));
  }
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) lost("Live updates stopped: reload the page to resume.");
  };
  source.onopen = () => document.getElementById("live-lost")?.remove();
  return source;
}

// Sections the server re-renders while the page is open (ops).
for (const el of document.querySelectorAll("[data-live-src]")) {
  follow(el.dataset.liveSrc, {
    fragment: (e) => {
      el.innerHTML = e.data;
    },
  });
}

// The jobs list: each job's progress as it moves.
const jobsTable = document.getElementById("jobs");
if (jobsTable) {
  follow("/progress?after=" + encodeURIComponent(jobsTable.dataset.after), {
    progress: (e) => {
      const p = JSON.parse(e.data);
      const row = document.getElementById("job-" + p.job_id);
      if (row) showDone(row, p);
    },
  });
}

// A job's page: its progress, its videos' rows, its end.
const job = document.getElementById("job");
if (job && job.dataset.live === "true") {
  const id = job.dataset.job;
  const maxAttempts = Number(job.dataset.maxAttempts) || 1;
  const tbody = document.querySelector("#videos tbody");
  let shown = Number(job.dataset.shown) || 0;
  const pageSize = Number(job.dataset.pageSize) || 500;

  const showProgress = (p) => {
    const d = showDone(job, p);
    setText(document.getElementById("job-error"), p.error || "—");
    for (const [status, n] of Object.entries(p.counts)) setText(document.getElementById("count-" + status), n);
    const of = document.getElementById("range-of");
    if (of && of.dataset.filtered !== "true") setText(of, d.total);
  };

  const cell = (tr, name, text) => {
    const td = document.createElement("td");
    td.className = name;
    if (text !== undefined) td.textContent = text;
    tr.append(td);
    return td;
  };

  const row = (event) => {
    if (!event.video_id) return null;
    let tr = document.getElementById("v-" + event.video_id);
    if (!tr && event.type === "video_discovered" && job.dataset.appends === "true" && shown < pageSize) {
      tr = document.createElement("tr");
      tr.id = "v-" + event.video_id;
      const link = document.createElement("a");
      link.href = "/ui/videos/" + encodeURIComponent(event.video_id) + "?job=" + encodeURIComponent(id);
      link.textContent = event.title;
      cell(tr, "title").append(link);
      const badge = document.createElement("span");
      badge.className = "badge";
      cell(tr, "status").append(badge);
      cell(tr, "attempts", "0");
      cell(tr, "error", "");
      tbody.append(tr);
      shown += 1;
      document.getElementById("no-videos")?.remove();
      document.getElementById("videos-range")?.removeAttribute("hidden");
      setText(document.getElementById("range-to"), Number(job.dataset.offset || 0) + shown);
    }
    return tr;
  };

  // What each event says of its video's row.
  const stages = {
    video_discovered: () => "discovered",
    video_downloaded: (e) => (e.captions || e.reused ? "transcribed" : "downloaded"),
    audio_extracted: () => "audio_extracted",
    transcription_completed: () => "transcribed",
    summarization_completed: () => "summarized",
  };

  const onEvent = (e) => {
    const event = JSON.parse(e.data);
    const tr = row(event);
    if (!tr) return;
    const badge = tr.querySelector(".status .badge");
    if (stages[event.type]) {
      setBadge(badge, stages[event.type](event));
      if (event.type !== "video_discovered") setText(tr.querySelector(".error"), "");
    } else if (event.type === "stage_failed") {
      setText(tr.querySelector(".attempts"), event.attempt);
      setText(tr.querySelector(".error"), event.reason);
      if (!event.redo && (!event.retryable || event.attempt >= maxAttempts)) setBadge(badge, "failed");
    }
  };

  const handlers = {
    progress: (e) => showProgress(JSON.parse(e.data)),
    reset: () => location.reload(),
    end: (e, source) => {
      source.close();
      job.dataset.live = "false";
      setBadge(document.querySelector("#job-status .badge"), e.data);
      document.getElementById("cancel-dialog")?.close();
      document.getElementById("cancel-open")?.remove();
      if (e.data === "cancelled") {
        for (const badge of tbody.querySelectorAll(".status .badge")) {
          if (!FINAL.has(badge.dataset.status)) setBadge(badge, "cancelled");
        }
      }
    },
  };
  for (const type of [...Object.keys(stages), "stage_failed"]) handlers[type] = onEvent;
  // From where the page was rendered (a reconnect resumes by Last-Event-ID instead).
  follow("/jobs/" + encodeURIComponent(id) + "/events?after=" + encodeURIComponent(job.dataset.after), handlers);
}

// Invoker buttons (command="show-modal") for browsers that do not have them yet.
for (const button of document.querySelectorAll("button[command=show-modal][commandfor]")) {
  if ("command" in button) continue;
  button.addEventListener("click", () => document.getElementById(button.getAttribute("commandfor"))?.showModal());
}

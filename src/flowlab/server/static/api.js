// The annotator protocol over fetch(). The token travels only in the Authorization header, never in a URL.

/** An HTTP answer that is not a success: carries the problem-details body the server sends. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `The server answered HTTP ${status}.`);
    this.status = status;
    this.code = problem?.code ?? null;
    this.problem = problem ?? null;
  }
}

/** The request never got an answer (server down, network gone). */
export class NetworkError extends Error {}

export class AnnotatorApi {
  constructor(token, base = "") {
    this.token = token;
    this.base = base;
  }

  async request(method, path, body, { signal, keepalive = false } = {}) {
    const headers = { Authorization: `Bearer ${this.token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(this.base + path, {
        method, headers, signal, keepalive, cache: "no-store", credentials: "omit",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (err?.name === "AbortError") throw err;
      throw new NetworkError(`Could not reach the flowlab server (${err?.message || err}).`);
    }
    if (res.status === 204) return { status: 204, body: null, headers: res.headers };
    let parsed = null;
    const text = await res.text();
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null;
      }
    }
    if (!res.ok) throw new ApiError(res.status, parsed);
    return { status: res.status, body: parsed, headers: res.headers };
  }

  me() {
    return this.request("GET", "/v1/me").then((r) => r.body);
  }

  /** Votes and gold agreement; older servers may not have this route, so callers treat failure as "unknown". */
  stats() {
    return this.request("GET", "/v1/annotator/me").then((r) => r.body);
  }

  /** An enrolled person with nothing left to do: their completion code (a schemas.Finish), or 409 if work came. */
  finish() {
    return this.request("POST", "/v1/annotator/finish").then((r) => r.body);
  }

  /** The next task, or null when there is none within `wait` seconds. */
  async next(wait, signal) {
    const r = await this.request("POST", "/v1/tasks/next", { wait }, { signal });
    return r.status === 204 ? null : r.body;
  }

  /**
   * Answers a task: a choice, or "submit" with an annotation: an RLHF task's (a schemas.RlhfAnswer) or a chat
   * task's (a schemas.ChatAnswer), by the task's kind. `hiddenSeconds`: how long the tab was hidden while the task
   * was on screen, which the server takes off its time on task.
   */
  answer(taskId, choice, fetchNext, annotation = null, kind = "rlhf", hiddenSeconds = 0) {
    const body = { choice };
    if (hiddenSeconds > 0) body.hidden_seconds = Math.round(hiddenSeconds * 1000) / 1000;
    if (annotation) body[kind] = annotation; // rlhf, chat or write: the answer's part of that name
    if (fetchNext) body.fetch_next = true;
    return this.request("POST", `/v1/tasks/${encodeURIComponent(taskId)}/answer`, body).then((r) => r.body);
  }

  /**
   * Says the task is on screen now. The server starts its lease's clock again (the first time only) and answers
   * with it: `{task_id, lease_expires_at, shown_at, server_time}` (a schemas.Shown).
   */
  shown(taskId) {
    return this.request("POST", `/v1/tasks/${encodeURIComponent(taskId)}/shown`).then((r) => r.body);
  }

  /** A chat task's models by position: [{model, online}], whether each can answer now. */
  taskModels(taskId, signal) {
    return this.request("GET", `/v1/tasks/${encodeURIComponent(taskId)}/models`, undefined, { signal })
      .then((r) => r.body || []);
  }

  /** Hands tasks back as the page closes, so their pairs go to someone else at once. */
  releaseOnExit(taskIds) {
    if (!taskIds.length) return;
    const answers = taskIds.map((task_id) => ({ task_id, choice: "skip" }));
    this.request("POST", "/v1/tasks/answers", { answers }, { keepalive: true }).catch(() => {});
  }

  /**
   * Listens to the annotator event stream (`work`, `preheat`) until `signal` aborts, reconnecting after
   * failures. EventSource cannot send an Authorization header, so this reads the stream with fetch().
   */
  async listen(onEvent, signal) {
    let delay = 1000;
    while (!signal.aborted) {
      try {
        const res = await fetch(`${this.base}/v1/annotator/events`, {
          headers: { Authorization: `Bearer ${this.token}`, Accept: "text/event-stream" },
          cache: "no-store", credentials: "omit", signal,
        });
        if (res.status === 401 || res.status === 403) {
          onEvent({ event: "auth", status: res.status });
          return;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        delay = 1000;
        await readEvents(res.body, (ev) => {
          if (ev.retry) delay = ev.retry;
          onEvent(ev);
        });
      } catch (err) {
        if (signal.aborted || err?.name === "AbortError") return;
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 15000);
    }
  }
}

/** Parses a text/event-stream body, calling `dispatch({event, data, id, retry})` per message. */
async function readEvents(stream, dispatch) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let message = { event: "message", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (message.data.length || message.event !== "message" || message.retry) {
          dispatch({ ...message, data: message.data.join("\n") });
        }
        message = { event: "message", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") message.event = val;
      else if (field === "data") message.data.push(val);
      else if (field === "id") message.id = val;
      else if (field === "retry" && /^\d+$/.test(val)) message.retry = Number(val);
    }
  }
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

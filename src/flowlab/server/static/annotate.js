// The annotator page: join with a token, then compare pairs as fast as the annotator can decide.
//
// Speed comes from holding one task beyond the one on screen, already rendered off-screen: an answer
// swaps the next pair in at once and the answer (which also leases the task after that) goes out behind it.

import { AnnotatorApi, ApiError, NetworkError, sleep } from "./api.js";
import { renderContent, renderText } from "./render.js";
import { ChatView } from "./chat.js";
import { RlhfView, takeParked } from "./rlhf.js";
import { ListwiseView } from "./listwise.js";
import { WriteView } from "./write.js";
import { enroll, linkInfo, linkProblem, linkSecret, rememberedTeamToken } from "./enroll.js";

const TOKEN_KEY = "flowlab.annotator.token";
const HOLD = 2; // tasks held at once: the one shown and one ready behind it
const LONG_POLL_SECONDS = 25;
const NOTICE_MS = 9000;
const STATS_AFTER_MS = 800; // refresh votes and gold agreement once a burst of answers settles
const REDIRECT_MS = 4000; // the completion code stays on screen this long before the platform's page opens
// Answers the server gives when a person's work is over: the screen that says so, not an error.
const ENDS = new Set(["finished", "screened_out", "suspended"]);

// What the page calls the work at hand, by task kind: the waiting screen, the skip link and the notices use it.
// Before any task it uses the kind seen last (remembered across visits), else the neutral wording.
const WORDS = {
  pairwise: { one: "pair", waiting: "pairs to compare", region: "Compare the pair", target: "pair" },
  classify: { one: "item", waiting: "items to label", region: "Label the item", target: "pair" },
  rlhf: { one: "task", waiting: "responses to rate", region: "Rate the responses", skipTo: "responses",
    target: "rlhf" },
  chat: { one: "conversation", waiting: "conversations to have", region: "Have the conversation", target: "rlhf" },
  write: { one: "prompt", waiting: "prompts to answer", region: "Write the response", target: "rlhf" },
  listwise: { one: "set", waiting: "sets to order", region: "Order the answers", skipTo: "answers", target: "rlhf" },
};
const NEUTRAL = { one: "task", waiting: "tasks", region: "The task", target: "pair" };
const KIND_KEY = "flowlab.annotator.kind";

// Worded for the kind at hand, and never in the server's own terms ("lease").
const EXPLAIN = {
  get lease_expired() {
    return `Time ran out on that ${wordFor().one} before your answer arrived, so it went to someone else; `
      + "your answer was not counted.";
  },
  get item_ended() {
    return `That ${wordFor().one} had already closed (its batch ended or has all the answers it needs), so your `
      + "answer was not counted.";
  },
  tie_not_allowed: "This flow does not allow ties, so that answer was not counted; choose A or B.",
  get unknown_task() {
    return `The server no longer knows that ${wordFor().one} (it may have restarted), so your answer was not counted.`;
  },
  unreachable: "Your answer could not be sent because the server could not be reached, so it was not counted.",
  unsent: "The server could not be reached, so this was not sent. Everything you entered is still here: "
    + "submit again in a moment.",
};

const $ = (id) => document.getElementById(id);

const state = {
  api: null,
  me: null,
  session: null, // what one joined session runs; replaced whole on leaving or re-joining
  current: null, // the prepared task on screen
  buffer: [], // prepared tasks waiting behind it
  idle: false, // a fetch came back empty: nothing to do until work arrives
  votes: 0,
  answered: 0,
  statsTimer: null,
  lastStats: null, // the server's count of this annotator's votes and gold agreement
  timer: null,
  noticeTimer: null,
  kind: null, // the kind of the task shown last, for the words of the waiting screen and the notices
  onTaskMs: 0, // time this session spent looking at tasks (shown, tab visible)
  tickedAt: 0,
  hiddenSince: null, // performance.now() when the tab was last hidden, while it stays hidden
};

// ---------------------------------------------------------------- screens and messages

function showScreen(name) {
  for (const s of ["loading", "join", "enroll", "end", "error", "wait", "vote"]) $(`screen-${s}`).hidden = s !== name;
  document.body.dataset.screen = name;
}

function notify(text, { kind = "info" } = {}) {
  const box = $("notice");
  $("notice-text").textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(state.noticeTimer);
  state.noticeTimer = setTimeout(() => {
    box.hidden = true;
  }, NOTICE_MS);
}

/** `help`: text, or a list of text and `{ code }` parts (a command, shown as code). */
function showError(title, text, help = "", { retry = true, otherToken = true } = {}) {
  endSession();
  $("error-title").textContent = title;
  $("error-text").textContent = text;
  $("error-help").replaceChildren(...[].concat(help).map((part) => {
    if (typeof part === "string") return part;
    const code = document.createElement("code");
    code.textContent = part.code;
    return code;
  }));
  $("error-retry").hidden = !retry;
  $("error-token").hidden = !otherToken;
  showScreen("error");
  $("error-title").setAttribute("tabindex", "-1");
  $("error-title").focus();
}

function showAuthError(status) {
  if (status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
    showError(
      "That is not an annotator token",
      "This page needs an annotator token (it starts with fl_ann_), but it was given a researcher API key. "
        + "The key has been forgotten by this page.",
      ["Open the join link you were given, or ask the researcher for one (they make it with ",
        { code: "flowlab annotators create --name YOUR_NAME" }, ")."],
      { retry: false },
    );
    return;
  }
  showError(
    "This join link doesn't work",
    "The annotator token in it is wrong or has been revoked, so this page cannot fetch pairs for you.",
    ["Ask the researcher who invited you for a new join link (they make one with ",
      { code: "flowlab annotators create --name YOUR_NAME" }, "), then open it."],
  );
}

function showJoin() {
  endSession();
  $("leave").hidden = true;
  $("who").textContent = "";
  $("stats").textContent = "";
  showScreen("join");
  $("join-token").focus();
}

function showIdle() {
  const words = wordFor();
  $("wait-title").textContent = state.idle ? `No ${words.waiting} right now` : `Fetching the next ${words.one}…`;
  $("wait-text").textContent = `Keep this page open: it shows the next ${words.one} as soon as a researcher sends `
    + "work.";
  $("wait-text").hidden = !state.idle;
  showScreen("wait");
}

/** The words for `kind`, by default the kind seen last (on this page, else on an earlier visit). */
function wordFor(kind = state.kind) {
  if (!kind) {
    try {
      kind = localStorage.getItem(KIND_KEY);
    } catch {
      kind = null; // storage disabled: the neutral words
    }
  }
  return WORDS[kind] ?? NEUTRAL;
}

/** A task of `kind` is on screen: the skip link, the screen's name and the timer's name say what it is. */
function rememberKind(kind) {
  if (state.kind !== kind) {
    state.kind = kind;
    try {
      localStorage.setItem(KIND_KEY, kind);
    } catch {
      // storage disabled: remembered for this page only
    }
  }
  const words = wordFor(kind);
  const skip = $("skip-link");
  skip.textContent = `Skip to the ${words.skipTo ?? words.one}`;
  skip.setAttribute("href", `#${words.target}`);
  $("screen-vote").setAttribute("aria-label", words.region);
  $("lease").setAttribute("aria-label", `Time left on this ${words.one}`);
}

function renderStats(stats) {
  const parts = [`${state.votes} vote${state.votes === 1 ? "" : "s"} this session`];
  if (state.onTaskMs >= 1000) parts.push(`${formatLeft(state.onTaskMs)} on task`);
  if (stats && typeof stats.gold_agreement === "number" && stats.gold_answered > 0) {
    parts.push(`agreement on check pairs ${Math.round(stats.gold_agreement * 100)}% `
      + `(${stats.gold_correct}/${stats.gold_answered})`);
  }
  $("stats").textContent = parts.join(" · ");
}

async function refreshStats() {
  if (!state.api) return;
  try {
    state.lastStats = await state.api.stats();
    renderStats(state.lastStats);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return showAuthError(401);
    renderStats(state.lastStats);
  }
}

// ---------------------------------------------------------------- tasks

/**
 * Renders a task off-screen so showing it later is a node swap. `receivedAt` corrects for clock skew; `form` is
 * an RLHF draft to restore.
 */
function prepare(task, receivedAt, form = null) {
  const skewMs = task.server_time * 1000 - receivedAt;
  const markdown = Boolean(task.render_markdown);
  const entry = { task, deadline: task.lease_expires_at * 1000 - skewMs, shownAt: 0 }; // deadline: this clock's
  if (task.kind === "chat") {
    entry.view = new ChatView(task, {
      api: state.api, markdown,
      submit: (annotation) => state.current === entry && answer("submit", annotation),
      skip: () => state.current === entry && answer("skip"),
      lease: (expiresAt) => {
        entry.deadline = expiresAt * 1000 - skewMs;
        entry.settled = true; // the server's latest word on the lease: a later reply to `shown` is older
      },
      // While a model writes, the server's lease clock stands still: so does the countdown.
      pause: (on) => {
        if (on && !entry.pausedAt) {
          entry.pausedAt = Date.now();
        } else if (!on && entry.pausedAt) {
          entry.deadline += Date.now() - entry.pausedAt;
          entry.pausedAt = 0;
        }
        if (state.current === entry) tickLease();
      },
    });
    return entry;
  }
  if (task.kind === "write") {
    entry.view = new WriteView(task, {
      markdown,
      submit: (written) => state.current === entry && answer("submit", written),
      skip: () => state.current === entry && answer("skip"),
    });
    return entry;
  }
  if (task.kind === "listwise") {
    entry.view = new ListwiseView(task, {
      markdown,
      submit: (order) => state.current === entry && answer("submit", order),
      skip: () => state.current === entry && answer("skip"),
    });
    withSettings(entry.view.node, task);
    return entry;
  }
  if (task.kind === "rlhf") {
    entry.view = new RlhfView(task, {
      markdown, form, owner: state.me?.id, receivedAt,
      get deadline() { return entry.deadline; }, // kept with a draft; it moves once the task is shown
      submit: (annotation) => state.current === entry && answer("submit", annotation),
      skip: () => state.current === entry && answer("skip"),
    });
    withSettings(entry.view.node, task);
    return entry;
  }
  entry.a = withSettings(renderContent(task.a, { markdown, label: task.b ? "A" : "" }), task);
  entry.b = task.b ? withSettings(renderContent(task.b, { markdown, label: "B" }), task) : null; // classify: one
  return entry;
}

/** The flow's settings (flowlab.settings) that act on a rendered datapoint: muted videos. */
function withSettings(node, task) {
  if ((task.settings || {}).mute_video_asset === "true") {
    for (const video of node.querySelectorAll("video")) video.muted = true;
  }
  return node;
}

/** With `media_played_percentage`, answers wait until every player of the task has played that much. */
function watchPlayback(entry) {
  const percent = Number((entry.task.settings || {}).media_played_percentage || 0);
  const players = [entry.a, entry.b, entry.view?.node].filter(Boolean)
    .flatMap((n) => [...n.querySelectorAll("audio, video")]);
  entry.blocked = percent > 0 && players.length > 0;
  if (!entry.blocked) return;
  const played = () => players.every((m) => m.duration > 0 && (100 * m.currentTime) / m.duration >= percent);
  const check = () => {
    if (!entry.blocked || !played()) return;
    entry.blocked = false;
    if (state.current === entry) renderBlocked(entry);
  };
  for (const m of players) m.addEventListener("timeupdate", check);
}

function renderBlocked(entry) {
  const percent = (entry.task.settings || {}).media_played_percentage;
  for (const button of document.querySelectorAll("#pair-actions .choice, #categories .choice")) {
    if (button.dataset.choice !== "skip") button.disabled = Boolean(entry.blocked);
  }
  $("playback-hint").textContent = entry.blocked ? `Play each clip to ${percent}% to answer (or skip).` : "";
  $("playback-hint").hidden = !entry.blocked;
  entry.view?.block(Boolean(entry.blocked));
}

/** An absolute flow's pairs may also be answered "both good" (key 3) or "both bad" (key 4). */
function renderLevels(entry) {
  const shown = Boolean(entry.task.absolute) && entry.task.kind !== "classify";
  $("choose-both-good").hidden = !shown;
  $("choose-both-bad").hidden = !shown;
  $("keys-levels").hidden = !shown;
}

/** With `compare_unsure`, the tie button says "Unsure" and appears after the given delay. */
function renderTie(entry) {
  const { task } = entry;
  const unsure = (task.settings || {}).compare_unsure;
  const tie = $("choose-tie");
  tie.querySelector("span").textContent = unsure != null ? "Unsure" : "Tie";
  tie.setAttribute("aria-label", unsure != null ? "Unsure: neither or both (key T)" : "Tie: both equally good (key T)");
  const delay = unsure != null ? Number(unsure) || 0 : 0;
  entry.tieAt = entry.shownAt + delay;
  const visible = () => task.allow_ties && performance.now() >= entry.tieAt;
  tie.hidden = !visible();
  $("keys-tie").hidden = tie.hidden;
  if (task.allow_ties && tie.hidden) {
    setTimeout(() => {
      if (state.current === entry) {
        tie.hidden = false;
        $("keys-tie").hidden = false;
      }
    }, delay);
  }
}

function promptKey(task) {
  const settings = task.settings || {};
  return JSON.stringify([task.item_id, task.instruction, task.context, task.render_markdown,
    settings.no_aux_text, settings.swap_question_and_prompt, task.context_assets]);
}

function renderPrompt(task) {
  const markdown = Boolean(task.render_markdown);
  const settings = task.settings || {};
  const instruction = $("instruction");
  instruction.replaceChildren(renderText(task.instruction, { markdown, className: "instruction-text" }));
  instruction.hidden = settings.no_aux_text === "true";
  const context = $("context");
  // swap_question_and_prompt: the context above the instruction.
  if (settings.swap_question_and_prompt === "true") $("prompt").prepend(context);
  else instruction.after(context);
  if (task.context) {
    context.replaceChildren(renderText(task.context, { markdown, className: "context-text" }));
    context.hidden = false;
  } else {
    context.replaceChildren();
    context.hidden = true;
  }
  const assets = $("assets");
  const nodes = (task.context_assets || []).map((asset, i) =>
    renderContent(asset, { markdown, label: asset.name || `context ${i + 1}` }));
  assets.replaceChildren(...nodes);
  assets.hidden = nodes.length === 0;
}

function show(entry) {
  const { task } = entry;
  state.current = entry;
  state.idle = false;
  rememberKind(task.kind);
  entry.shownAt = performance.now();
  const key = promptKey(task);
  if ($("prompt").dataset.key !== key) {
    renderPrompt(task);
    $("prompt").dataset.key = key;
  }
  // A detached player keeps playing, so silence the outgoing task before swapping it out.
  for (const m of document.querySelectorAll("#pair audio, #pair video, #rlhf audio, #rlhf video")) m.pause();
  if (entry.view) showRlhf(entry);
  else showPanes(entry);
  $("wait-hot").hidden = true;
  renderTie(entry);
  renderLevels(entry);
  if (entry.blocked === undefined) watchPlayback(entry);
  renderBlocked(entry);
  const pair = $("pair");
  pair.dataset.taskId = task.task_id;
  pair.dataset.itemId = task.item_id;
  if (document.body.dataset.screen !== "vote") showScreen("vote");
  startClock(entry);
  tickLease();
  entry.view?.shown();
}

/** A pair (two panes and the answer buttons) or a classify task (one pane and a button per category). */
function showPanes(entry) {
  const { task } = entry;
  const classify = task.kind === "classify";
  $("rlhf").replaceChildren();
  $("rlhf").hidden = true;
  $("keys-rlhf").hidden = true;
  $("pair").hidden = false;
  $("body-a").replaceChildren(entry.a);
  $("body-b").replaceChildren(...(entry.b ? [entry.b] : []));
  for (const side of classify ? ["a"] : ["a", "b"]) {
    const pane = $(`pane-${side}`);
    pane.dataset.kind = task[side].kind;
    pane.dataset.ref = String(task[side].ref);
    pane.scrollTop = 0;
  }
  $("pane-b").hidden = classify;
  $("pane-a-label").hidden = classify;
  $("pair").dataset.kind = classify ? "classify" : "pairwise";
  $("pair-actions").hidden = classify;
  $("keys-pair").hidden = classify;
  $("categories").hidden = !classify;
  $("keys-categories").hidden = !classify;
  if (classify) renderCategories(task.categories || []);
}

/** An RLHF task: its own form (rlhf.js) in place of the panes and the answer buttons. */
function showRlhf(entry) {
  for (const id of ["pair", "pair-actions", "keys-pair", "categories", "keys-categories"]) $(id).hidden = true;
  $("body-a").replaceChildren();
  $("body-b").replaceChildren();
  $("rlhf").replaceChildren(entry.view.node);
  $("rlhf").hidden = false;
  $("keys-rlhf").hidden = entry.task.kind !== "rlhf"; // a chat task's keys are its own buttons
}

/** A button per category (key 1, 2, …) and skip; rebuilt only when the categories change. */
function renderCategories(categories) {
  const box = $("categories");
  const key = JSON.stringify(categories);
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  const buttons = categories.map((category, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice category";
    button.dataset.choice = category.value;
    button.setAttribute("aria-keyshortcuts", String(i + 1));
    button.setAttribute("aria-label", `${category.label} (key ${i + 1})`);
    const label = document.createElement("span");
    label.setAttribute("aria-hidden", "true");
    label.textContent = category.label;
    const kbd = document.createElement("kbd");
    kbd.setAttribute("aria-hidden", "true");
    kbd.textContent = String(i + 1);
    button.append(label, kbd);
    button.addEventListener("click", onChoiceClick);
    return button;
  });
  const skip = $("choose-skip").cloneNode(true);
  skip.removeAttribute("id");
  skip.setAttribute("aria-label", "Skip this one (key S)");
  skip.addEventListener("click", onChoiceClick);
  box.replaceChildren(...buttons, skip);
  $("keys-last").textContent = String(categories.length);
}

function leaseLeftMs(entry, now = Date.now()) {
  return entry.deadline - (entry.pausedAt || now);
}

/**
 * A task in hand is worth showing only if the server still holds it for this person when the page says it is
 * on screen: showing it starts its full lease again (`startClock`), but a task held past its usual expiry has
 * gone to someone else. So one whose usual expiry is near (a quarter of its lease, at most 5 s: time for
 * the word to reach the server) goes back to the queue instead; one held for a while is still worth its full time.
 */
function stillFresh(entry) {
  const margin = Math.min(entry.task.lease_seconds * 250, 5000);
  return leaseLeftMs(entry) > margin;
}

function takeNext() {
  while (state.buffer.length) {
    const entry = state.buffer.shift();
    if (stillFresh(entry)) return entry;
    release([entry]);
  }
  return null;
}

/** The next task held behind the one that left the screen, or the waiting screen while more is fetched. */
function showNextOrWait() {
  const next = takeNext();
  if (next) {
    show(next);
  } else {
    state.idle = false;
    showIdle();
  }
}

function release(entries) {
  // Skipping hands the pair straight back to the queue instead of making it wait out the lease.
  for (const e of entries) {
    e.view?.discard();
    state.api?.answer(e.task.task_id, "skip", false).catch(() => {});
  }
}

function receive(task, receivedAt, form = null) {
  if (!state.session) return;
  const entry = prepare(task, receivedAt, form);
  if (!state.current) {
    show(entry);
  } else {
    state.buffer.push(entry);
    if (state.buffer.length > HOLD) release(state.buffer.splice(0, state.buffer.length - HOLD));
  }
}

/**
 * How many more tasks to fetch while `shown` is on screen. An RLHF task takes minutes, long enough for a task
 * held behind it to go stale, so none is: its submit fetches the next.
 */
function wanted(shown = state.current) {
  const hold = shown?.view ? 1 : HOLD; // a task one writes or fills in is held alone
  return hold - (shown ? 1 : 0) - state.buffer.length - (state.session?.inflight ?? 0);
}

/** Keeps HOLD tasks in hand, long-polling while there is no work. One loop at a time. */
async function fill() {
  const session = state.session;
  if (!session || session.filling) return;
  session.filling = true;
  const { signal } = session.stop;
  let backoff = 500;
  try {
    while (!signal.aborted && wanted() > 0) {
      session.inflight += 1;
      let wait = 0;
      let task = null;
      let failed = null;
      try {
        // A quick look first, so an empty queue is reported at once; after that, wait for work to come.
        wait = state.idle || state.current ? LONG_POLL_SECONDS : 0;
        task = await state.api.next(wait, signal);
      } catch (err) {
        failed = err;
      } finally {
        session.inflight -= 1;
      }
      if (signal.aborted) return;
      if (failed) {
        if (failed instanceof ApiError && ENDS.has(failed.code)) {
          showEnd(failed.code, failed.message);
          return;
        }
        if (failed instanceof ApiError && (failed.status === 401 || failed.status === 403)) {
          showAuthError(failed.status);
          return;
        }
        notify(failed instanceof ApiError ? `The server had a problem (HTTP ${failed.status}); retrying…`
          : "Lost contact with the server; retrying…", { kind: "warn" });
        session.wakeFill = new AbortController();
        await sleep(backoff, AbortSignal.any([signal, session.wakeFill.signal]));
        backoff = Math.min(backoff * 2, 8000);
        continue;
      }
      backoff = 500;
      if (task) {
        receive(task, Date.now());
      } else if (!state.current) {
        state.idle = true;
        showIdle();
        // Someone who came through a study link with nothing left to do gets their completion code.
        if (wait > 0 && state.lastStats?.audience_id && !state.buffer.length && await finishedForNow()) return;
      }
    }
  } finally {
    session.filling = false;
  }
}

/**
 * Time on task is time looked at: the page counts the time its tab was hidden (the Page Visibility API) while a
 * task was on screen, and sends it with the answer (`hidden_seconds`), so the server subtracts it.
 */
function onVisibility() {
  const now = performance.now();
  if (document.visibilityState === "hidden") {
    if (state.hiddenSince === null) state.hiddenSince = now;
    return;
  }
  if (state.hiddenSince === null) return;
  const entry = state.current;
  if (entry) entry.hiddenMs = (entry.hiddenMs || 0) + now - Math.max(state.hiddenSince, entry.shownAt);
  state.hiddenSince = null;
}

/** Seconds the task on screen spent in a hidden tab so far. */
function hiddenSeconds(entry) {
  let ms = entry.hiddenMs || 0;
  if (state.hiddenSince !== null && state.current === entry) {
    ms += performance.now() - Math.max(state.hiddenSince, entry.shownAt);
  }
  return ms / 1000;
}

/** Answers the task on screen: a choice, or "submit" with an RLHF `annotation`. */
async function answer(choice, annotation = null) {
  const entry = state.current;
  if (!entry || entry.answered || !state.session) return;
  const { task } = entry;
  if (choice === "tie" && (!task.allow_ties || performance.now() < entry.tieAt)) return;
  if ((choice === "both_good" || choice === "both_bad") && !task.absolute) return;
  if (entry.blocked && choice !== "skip") return;
  entry.answered = true;
  const hidden = hiddenSeconds(entry);
  flash(choice);

  // An annotation stays on screen until the server has it, so one it refuses can be fixed and sent again.
  // Anything else shows the next task first, and the answer travels behind it.
  const holding = annotation !== null;
  if (holding) {
    entry.view.sending(true);
  } else {
    state.current = null;
    showNextOrWait();
  }

  const session = state.session;
  const fetchNext = wanted(holding ? null : state.current) > 0;
  if (fetchNext) session.inflight += 1;
  let ack = null;
  let problem = null;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      ack = await state.api.answer(task.task_id, choice, fetchNext, annotation, task.kind, hidden);
      problem = null;
      break;
    } catch (err) {
      problem = err;
      // Answers are idempotent per task, so a lost request (or a server hiccup) can simply be sent again.
      const transient = err instanceof NetworkError || (err instanceof ApiError && err.status >= 500);
      if (!transient) break;
      await sleep(400 * (attempt + 1));
    }
  }
  if (fetchNext) session.inflight -= 1;
  if (state.session !== session) return; // the annotator left (or lost access) meanwhile

  if (holding && keepsForm(problem)) {
    entry.answered = false; // the lease stays: fix it (or wait for the server) and submit again
    entry.view.refused(problem instanceof NetworkError ? EXPLAIN.unsent : problem.message, problem.problem?.field);
    return;
  }
  entry.view?.discard();
  if (holding && state.current === entry) state.current = null;

  if (problem) {
    if (problem instanceof ApiError && ENDS.has(problem.code)) {
      showEnd(problem.code, problem.message);
      return;
    }
    if (problem instanceof ApiError && (problem.status === 401 || problem.status === 403)) {
      showAuthError(problem.status);
      return;
    }
    const code = problem instanceof NetworkError ? "unreachable"
      : problem.code || (problem.status === 404 ? "unknown_task" : null);
    notify(EXPLAIN[code] || `Your answer was not counted: ${problem.message}`, { kind: "warn" });
  } else if (ack.status === "rejected") {
    notify(EXPLAIN[ack.code] || `Your answer was not counted: ${ack.detail || ack.code}`, { kind: "warn" });
  } else if ((ack.status === "accepted" || ack.status === "duplicate") && choice !== "skip") {
    // "duplicate" is a retry whose first attempt was counted but whose reply was lost: still one vote.
    state.votes += 1;
    // A check question answered otherwise than its set says, with the set's reason.
    if (ack.explanation) notify(`Not quite: that one was a check question. ${ack.explanation}`, { kind: "info" });
  }
  state.answered += 1;
  if (ack?.next) receive(ack.next, Date.now());
  else if (!state.current && !state.buffer.length && ack && !problem) {
    // The server had nothing more: say so while the long poll waits for work.
    state.idle = true;
  }
  if (!state.current) {
    const later = takeNext();
    if (later) show(later);
    else showIdle();
  }
  renderStats(state.lastStats);
  clearTimeout(state.statsTimer);
  state.statsTimer = setTimeout(refreshStats, STATS_AFTER_MS);
  fill();
}

/** A refused annotation (422) or one that never got through stays on screen to be sent again. */
function keepsForm(problem) {
  if (problem instanceof NetworkError) return true;
  return problem instanceof ApiError && (problem.status === 422 || problem.status >= 500);
}

function flash(choice) {
  releaseChoice();
  const scope = $("categories").hidden ? "#pair-actions" : "#categories";
  const button = document.querySelector(`${scope} .choice[data-choice="${CSS.escape(choice)}"]`);
  if (!button) return;
  button.classList.add("pressed");
  setTimeout(() => button.classList.remove("pressed"), 150);
}

/**
 * An answer button keeps focus after a click, and the next key press would draw a focus ring on it over the next
 * task, which reads as an answer chosen in advance. Focus goes to the pair itself (no ring; Tab goes on from there).
 */
function releaseChoice() {
  const focused = document.activeElement;
  if (!(focused instanceof HTMLElement) || !focused.closest(".choice")) return;
  focused.blur();
  $("pair").focus({ preventScroll: true });
}

// ---------------------------------------------------------------- the lease countdown

function formatLeft(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/**
 * A task's time is the person's from when it is on screen: the first time it is shown, the page tells the server,
 * which starts the lease's clock again (POST /v1/tasks/{id}/shown), so the time it waited behind another task
 * is not lost. Until the server answers, the countdown shows the full lease; then the server's deadline. A task
 * held and handed back unseen is never said to be shown.
 */
async function startClock(entry) {
  if (entry.clockAsked) return;
  entry.clockAsked = true;
  const held = entry.deadline; // the lease's usual expiry, if the server cannot be told
  entry.deadline = Date.now() + entry.task.lease_seconds * 1000;
  const session = state.session;
  let deadline = held;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      const reply = await state.api.shown(entry.task.task_id);
      deadline = reply.lease_expires_at * 1000 - (reply.server_time * 1000 - Date.now());
      break;
    } catch (err) {
      // Gone (answered, expired, its item ended: those say so themselves), or not this person's: time is up.
      if (err instanceof ApiError && (err.status === 404 || err.status === 409)) {
        deadline = Math.min(held, Date.now());
        break;
      }
      if (!(err instanceof NetworkError || (err instanceof ApiError && err.status >= 500))) break;
      await sleep(400 * (attempt + 1));
    }
  }
  if (state.session !== session || entry.settled) return;
  entry.deadline = deadline;
  entry.settled = true;
  if (state.current === entry) tickLease();
}

function tickLease() {
  // Time on task is time the task was looked at: on screen, in a tab that is not hidden.
  const now = performance.now();
  if (state.tickedAt && document.body.dataset.screen === "vote" && document.visibilityState === "visible") {
    state.onTaskMs += now - state.tickedAt;
  }
  state.tickedAt = now;
  const entry = state.current;
  if (!entry) return;
  const left = leaseLeftMs(entry);
  const total = entry.task.lease_seconds * 1000;
  const lease = $("lease");
  const what = entry.task.kind === "pairwise" ? "pair" : "task";
  const paused = Boolean(entry.pausedAt);
  const text = left <= 0
    ? `Time is up: this ${what} may have gone to someone else, and an answer now may not count`
    : paused ? `${formatLeft(left)} left on this ${what} (paused while the model writes)`
      : `${formatLeft(left)} left on this ${what}`;
  if ($("lease-text").textContent !== text) $("lease-text").textContent = text;
  $("lease-fill").style.width = `${Math.max(0, Math.min(100, (left / total) * 100)).toFixed(1)}%`;
  lease.dataset.level = left <= 0 ? "expired" : left < Math.min(10000, total * 0.25) ? "low" : "ok";
  lease.dataset.paused = String(paused);
  lease.dataset.clock = entry.settled ? "server" : "pending"; // "pending": the full lease, until the server answers
}

// ---------------------------------------------------------------- input

const KEYS = {
  ArrowLeft: "a", 1: "a", Numpad1: "a",
  ArrowRight: "b", 2: "b", Numpad2: "b",
  t: "tie", T: "tie",
  3: "both_good", Numpad3: "both_good",
  4: "both_bad", Numpad4: "both_bad",
  s: "skip", S: "skip",
};

function onKey(event) {
  // A dialog (an image at full size, the question before leaving) has the keys: Escape closes it.
  if (document.querySelector("dialog[open]")) return;
  // An RLHF form is typed into: there only its own keys count (Ctrl+Enter submits), never the single keys.
  if (state.current?.view && document.body.dataset.screen === "vote") {
    state.current.view.onKey(event);
    return;
  }
  if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || event.repeat) return;
  if (document.body.dataset.screen !== "vote") return;
  const target = event.target;
  if (target instanceof HTMLElement && (target.isContentEditable || target.closest("input, textarea, select"))) {
    return;
  }
  // Arrow keys on a focused player seek within it; the digits still vote.
  if (event.key.startsWith("Arrow") && target instanceof HTMLMediaElement) return;
  const choice = state.current?.task.kind === "classify" ? categoryKey(event) : KEYS[event.key] ?? KEYS[event.code];
  if (!choice) return;
  event.preventDefault();
  answer(choice);
}

/** In a classify task the digits pick the categories in order; S skips; the arrows do nothing. */
function categoryKey(event) {
  if (event.key === "s" || event.key === "S") return "skip";
  const digit = /^(?:Digit|Numpad)([1-9])$/.exec(event.code)?.[1] ?? (/^[1-9]$/.test(event.key) ? event.key : null);
  const categories = state.current.task.categories || [];
  return digit && Number(digit) <= categories.length ? categories[Number(digit) - 1].value : null;
}

function onChoiceClick(event) {
  const button = event.currentTarget;
  // The second click of an accidental double click would land on the next pair.
  if (event.detail > 1 && state.current && performance.now() - state.current.shownAt < 400) return;
  answer(button.dataset.choice);
}

// ---------------------------------------------------------------- session

function readToken() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const fromLink = fragment.get("token");
  if (fromLink) {
    sessionStorage.setItem(TOKEN_KEY, fromLink.trim());
    // Out of the address bar (and so out of history, bookmarks and screenshots).
    fragment.delete("token");
    const rest = fragment.toString();
    history.replaceState(null, "", window.location.pathname + window.location.search + (rest ? `#${rest}` : ""));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

/**
 * Ends the joined session, handing back the tasks in hand. With `park` (the page is closing), an RLHF task the
 * annotator has started keeps its lease and its draft instead, for the page to resume when it loads again.
 */
function endSession({ park = false } = {}) {
  state.session?.stop.abort();
  state.session = null;
  const parked = park && state.current?.view?.park() ? state.current : null;
  const held = [state.current, ...state.buffer].filter((e) => e && !e.answered && e !== parked);
  for (const e of held) e.view?.discard();
  if (held.length && state.api) state.api.releaseOnExit(held.map((e) => e.task.task_id));
  for (const m of document.querySelectorAll("audio, video")) m.pause();
  state.current = null;
  state.buffer = [];
  $("pair").dataset.taskId = "";
  $("pair").dataset.itemId = "";
  $("prompt").dataset.key = "";
}

async function start() {
  const secret = linkSecret();
  if (secret && !(await joinThroughLink(secret))) return;
  const token = readToken();
  if (!token) {
    showJoin();
    return;
  }
  endSession();
  state.api = new AnnotatorApi(token);
  showScreen("loading");
  let me;
  try {
    me = await state.api.me();
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return showAuthError(err.status);
    showError(
      "Can't reach the flowlab server",
      err instanceof NetworkError ? "The server did not answer. It may be restarting, or your connection dropped."
        : err.message,
      "This page tries again by itself every few seconds.",
      { otherToken: false },
    );
    setTimeout(() => {
      if (document.body.dataset.screen === "error" && $("error-retry").hidden === false) start();
    }, 4000);
    return;
  }
  if (me.role !== "annotator") return showAuthError(403);
  state.me = me;
  state.session = { stop: new AbortController(), inflight: 0, filling: false, wakeFill: null };
  $("who").textContent = `Signed in as ${me.name}`;
  $("leave").hidden = false;
  state.idle = false;
  showIdle();
  refreshStats();
  state.api.listen(onEvent, state.session.stop.signal);
  // The RLHF task this annotator was in the middle of when the page last closed, if its lease still runs.
  const parked = takeParked(me.id);
  if (parked) receive(parked.task, parked.receivedAt, parked.form);
  fill();
}

/**
 * Enrolls the person through the link this page was opened from; true once their token is in hand. A platform
 * participant is enrolled (or found again) at once; a team invitation asks for a name the first time.
 */
async function joinThroughLink(secret) {
  showScreen("enroll");
  let info;
  try {
    info = await linkInfo(secret);
  } catch (err) {
    return linkFailed(err);
  }
  $("enroll-title").textContent = `Join ${info.audience}`;
  $("enroll-text").textContent = info.description || (info.qualification
    ? "You will first answer a few practice questions; then the tasks begin." : "");
  if (info.needs_name) {
    const known = rememberedTeamToken(secret);
    if (known) {
      sessionStorage.setItem(TOKEN_KEY, known);
      return true;
    }
    $("enroll-form").hidden = false;
    $("enroll-name").focus();
    state.enrollInfo = info;
    return false; // the form's submit goes on (`onEnrollSubmit`)
  }
  $("enroll-text").textContent = "Signing you in…";
  try {
    const made = await enroll(secret, info);
    sessionStorage.setItem(TOKEN_KEY, made.token);
    return true;
  } catch (err) {
    return linkFailed(err);
  }
}

function linkFailed(err) {
  const [title, text] = linkProblem(err);
  showError(title, text, "", { retry: err instanceof NetworkError || err.code === "enroll_rate", otherToken: false });
  return false;
}

async function onEnrollSubmit(event) {
  event.preventDefault();
  const name = $("enroll-name").value.trim();
  if (!name || !state.enrollInfo) return;
  try {
    const made = await enroll(linkSecret(), state.enrollInfo, name);
    sessionStorage.setItem(TOKEN_KEY, made.token);
  } catch (err) {
    linkFailed(err);
    return;
  }
  $("enroll-form").hidden = true;
  start();
}

/** Asks the server whether this person's work is over for now; if so, shows their code. */
async function finishedForNow() {
  try {
    const done = await state.api.finish();
    showEnd("finished", null, done);
    return true;
  } catch {
    return false; // more work came (409), or the server could not say: keep waiting
  }
}

/** The end of a person's work: done with their completion code (and Prolific's redirect), screened out, or
 * suspended. `finish` is the server's word on it; without it, it is read from /v1/annotator/me. */
async function showEnd(code, detail = null, finish = null) {
  const api = state.api;
  endSession();
  $("leave").hidden = true;
  if (!finish && code !== "suspended") {
    try {
      finish = (await api.stats()).finish;
    } catch {
      finish = null;
    }
  }
  const words = {
    finished: ["You are done — thank you!", "You have answered everything this study has for you."],
    screened_out: ["Thank you for your time", "This study is looking for a different profile, so it ends here "
      + "for you. You will be credited as the study's instructions say."],
    suspended: ["Your work is paused", detail || "The researcher has paused your work."],
  }[code];
  $("end-title").textContent = words[0];
  $("end-text").textContent = code === "finished" && finish?.reason === "no_work"
    ? "There is no more work for you in this study right now." : words[1];
  $("end-code").textContent = finish?.code || "";
  $("end-code-line").hidden = !finish?.code;
  const to = finish?.redirect_url;
  $("end-redirect").hidden = !to;
  if (to) {
    $("end-link").href = to;
    setTimeout(() => window.location.assign(to), REDIRECT_MS);
  }
  showScreen("end");
}

function onEvent(ev) {
  if (ev.event === "auth") {
    showAuthError(ev.status);
  } else if (ev.event === "preheat") {
    $("wait-hot").hidden = false;
    wakeUp();
  } else if (ev.event === "work") {
    wakeUp();
  } else if (ev.event === "withdrawn") {
    withdraw(JSON.parse(ev.data).task_ids ?? []);
  }
}

/**
 * Tasks whose item ended (stopped by the researcher, settled, or out of time) leave the page at once: from
 * the ones held behind without a word, from the screen with a notice, and the next task takes its place.
 */
function withdraw(taskIds) {
  const gone = new Set(taskIds);
  const kept = [];
  for (const entry of state.buffer) {
    if (gone.has(entry.task.task_id)) entry.view?.discard();
    else kept.push(entry);
  }
  state.buffer = kept;
  const shown = state.current;
  if (shown && !shown.answered && gone.has(shown.task.task_id)) {
    const what = wordFor(shown.task.kind).one;
    shown.view?.discard();
    state.current = null;
    showNextOrWait();
    // A long poll already out means the server had nothing more when it went: the waiting words, not "Fetching".
    if (!state.current && state.session?.filling) {
      state.idle = true;
      showIdle();
    }
    notify(`The batch this ${what} belonged to has just ended, so it left your screen`
      + (state.current ? "; here is the next one." : "."));
  }
  fill();
}

function wakeUp() {
  // The long poll wakes by itself; this cuts short a back-off after a dropped connection.
  state.session?.wakeFill?.abort();
  fill();
}

/** Keeps --answer-bar at the fixed answer bar's height, so the end of pane B can scroll clear of it. */
function watchAnswerBar() {
  const bar = document.getElementById("pair-actions");
  if (!bar || !window.ResizeObserver) return;
  new ResizeObserver(() => {
    const fixed = getComputedStyle(bar).position === "fixed";
    document.documentElement.style.setProperty("--answer-bar", fixed ? `${bar.offsetHeight}px` : "0px");
  }).observe(bar);
}

function init() {
  watchAnswerBar();
  for (const button of document.querySelectorAll(".choice")) button.addEventListener("click", onChoiceClick);
  document.addEventListener("keydown", onKey);
  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("join-token").value.trim();
    $("join-token").value = "";
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });
  $("enroll-form").addEventListener("submit", onEnrollSubmit);
  $("error-retry").addEventListener("click", () => start());
  $("error-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showJoin();
  });
  $("leave").addEventListener("click", () => $("leave-confirm").showModal());
  $("leave-no").addEventListener("click", () => $("leave-confirm").close());
  $("leave-yes").addEventListener("click", () => {
    $("leave-confirm").close();
    sessionStorage.removeItem(TOKEN_KEY);
    showJoin();
  });
  $("notice-close").addEventListener("click", () => {
    $("notice").hidden = true;
  });
  window.addEventListener("hashchange", () => {
    if (new URLSearchParams(window.location.hash.slice(1)).has("token")) start();
  });
  window.addEventListener("pagehide", () => endSession({ park: true }));
  document.addEventListener("visibilitychange", onVisibility);
  if (document.visibilityState === "hidden") state.hiddenSince = performance.now(); // opened in a background tab
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) start(); // back from the back-forward cache with nothing in hand
  });
  state.timer = setInterval(tickLease, 250);
  start();
}

init();

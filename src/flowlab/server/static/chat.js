// A chat task: the annotator talks with the flow's models, edits an earlier user turn or regenerates a reply
// (each a new branch: the conversation is a tree), rates every reply a model wrote, and, with two or more
// branches, says which branch did better, how strongly and why. Replies stream in as the model writes them.
//
// As in rlhf.js, everything a task carries is data: it reaches the page through renderText, textContent and
// form values only. The page says at once when a model is offline (it asks the server every few seconds), shows
// that a model is writing (the lease's countdown stands still meanwhile, as the server's does), and never goes on
// from a reply that failed: one is retried or dropped before the conversation continues.

import { renderText } from "./render.js";
import { likertLabel } from "./rlhf.js";

const MODEL_NAMES = "ABCDEFGH";
const PRESENCE_MS = 2000; // how often the page asks whether the task's models are there
const NA_TEXT = "Not applicable";
const BEFORE_SUBMIT = "Before you submit:";
const NOT_SENT = "Not sent: fix this, then submit again.";

let views = 0;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(text, className, onClick) {
  const b = el("button", className, text);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

function kbd(text) {
  const k = el("kbd", "", text);
  k.setAttribute("aria-hidden", "true");
  return k;
}

function labelOf(dim) {
  return dim.label || dim.key;
}

function modelName(position) {
  return `Model ${MODEL_NAMES[position] ?? position + 1}`;
}

/** Ctrl+Enter (⌘+Enter on a Mac). */
function sendKey(event) {
  return event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.altKey;
}

export class ChatView {
  constructor(task, options) {
    views += 1;
    this.id = `chat${views}`;
    this.task = task;
    this.options = options; // { api, markdown, submit, skip, lease, pause }
    this.spec = task.chat;
    this.nodes = []; // {id, parent, role, content, generation, seed, model, pending, error, retry}
    this.ratings = {}; // node id -> dimension key -> value
    this.counter = 0;
    this.busy = false; // a reply is being written
    this.sendingAnswer = false;
    this.discarded = false;
    this.started = false;
    this.controller = null;
    this.presence = null; // AbortController of the presence loop
    this.online = null; // by model position: whether it can answer now (null until the server said)
    this.shownProblems = null; // the problems on screen, while they shrink as the annotator fixes them
    this.problemsTitle = BEFORE_SUBMIT;
    this.sentNodes = []; // node ids in the order of the last answer's `nodes`, for a refusal's field
    this.draft = ""; // the composer's text, kept across redraws
    let parent = null;
    for (const m of this.spec.messages) {
      const node = this.add({ parent, role: m.role, content: m.content, seed: true });
      parent = node.id;
    }
    this.leaf = parent; // the end of the branch on screen
    this.model = 0; // the model the next reply is asked of (its position on this page)
    this.node = el("section", "chat");
    this.node.setAttribute("aria-label", "Chat with the model");
    this.render();
  }

  add(fields) {
    this.counter += 1;
    const node = { id: `n${this.counter}`, parent: null, content: "", generation: null, seed: false, ...fields };
    this.nodes.push(node);
    return node;
  }

  byId(id) {
    return this.nodes.find((n) => n.id === id) || null;
  }

  children(id) {
    return this.nodes.filter((n) => n.parent === id);
  }

  path(leaf = this.leaf) {
    const out = [];
    for (let n = leaf ? this.byId(leaf) : null; n; n = n.parent ? this.byId(n.parent) : null) out.unshift(n);
    return out;
  }

  branches() {
    return this.nodes.filter((n) => !this.children(n.id).length).map((n) => n.id);
  }

  userTurns(leaf = this.leaf) {
    return this.path(leaf).filter((n) => n.role === "user").length;
  }

  /** The reply that failed, if one is in the conversation: it is retried or dropped before anything else. */
  failed() {
    return this.nodes.find((n) => n.error) || null;
  }

  /** Where a message sits, for a sentence that points at it: its branch (1-based) and, for a reply, its number. */
  place(id) {
    const branches = this.branches();
    for (let b = 0; b < branches.length; b += 1) {
      const path = this.path(branches[b]);
      const at = path.findIndex((n) => n.id === id);
      if (at < 0) continue;
      const reply = path.slice(0, at + 1).filter((n) => n.generation || n.error || n.pending).length;
      return { branch: b + 1, leaf: branches[b], reply };
    }
    return null;
  }

  /** "Branch 2, reply 1 (Model A)": how a problem names the reply it is about. */
  replyName(id) {
    const n = this.byId(id);
    const where = this.place(id);
    if (!n || !where) return "";
    return `Branch ${where.branch}, reply ${where.reply} (${modelName(n.model ?? 0)})`;
  }

  // ------------------------------------------------------------ drawing

  render() {
    const box = this.node;
    box.replaceChildren();
    if (this.spec.guidance) {
      const g = el("p", "chat-guidance");
      g.append(el("strong", "", "Your goal: "), document.createTextNode(this.spec.guidance));
      box.append(g);
    }
    const branches = this.branches();
    if (branches.length > 1) {
      const tabs = el("div", "chat-branches");
      tabs.setAttribute("role", "group");
      tabs.setAttribute("aria-label", "Branches");
      branches.forEach((leaf, b) => {
        const onThis = this.path(leaf).some((n) => n.id === this.leaf);
        const tab = button(`Branch ${b + 1}`, onThis ? "chat-branch current" : "chat-branch", () => {
          if (this.busy) return;
          this.leaf = leaf;
          this.render();
        });
        tab.setAttribute("aria-pressed", String(onThis));
        tab.disabled = this.busy;
        tabs.append(tab);
      });
      box.append(tabs);
    }
    const thread = el("div", "chat-thread");
    thread.setAttribute("aria-live", "polite");
    for (const n of this.path()) thread.append(this.message(n));
    if (!this.path().length) thread.append(el("p", "help", "No conversation yet: write the first user turn."));
    box.append(thread);
    box.append(this.composer());
    this.statusLine = el("p", "chat-status");
    this.statusLine.setAttribute("role", "status");
    box.append(this.statusLine);
    const keys = el("p", "keys-hint chat-keys");
    keys.append("Keys: ", kbd("Ctrl+Enter"), " sends your turn (or an edit) · ", kbd("Esc"), " cancels an edit");
    box.append(keys);
    box.append(this.verdict(branches));
    this.problemsBox = el("div", "rlhf-problems");
    this.problemsBox.setAttribute("role", "alert");
    this.problemsBox.tabIndex = -1;
    this.problemsBox.hidden = true;
    box.append(this.problemsBox);
    const actions = el("div", "rlhf-actions chat-actions");
    this.submitButton = button("Submit", "primary rlhf-submit chat-submit", () => this.submit());
    this.submitButton.setAttribute("aria-disabled", String(this.sendingAnswer));
    actions.append(this.submitButton, button("Skip this task", "rlhf-skip chat-skip", () => this.options.skip()));
    box.append(actions);
    if (this.shownProblems) {
      this.drawProblems();
      this.markInvalid();
    }
    this.updateStatus();
  }

  message(n) {
    const row = el("div", "rlhf-message chat-message");
    row.dataset.role = n.role;
    row.dataset.node = n.id;
    const who = n.role === "user" ? "User" : n.seed ? "Assistant" : modelName(n.model ?? 0);
    row.append(el("p", "rlhf-role", who));
    if (n.editing) {
      const area = el("textarea", "rlhf-textarea chat-edit");
      area.value = n.content;
      area.rows = 3;
      area.setAttribute("aria-label", "Edit this message");
      area.setAttribute("aria-keyshortcuts", "Control+Enter Meta+Enter Escape");
      const send = button("Send edit", "primary chat-send-edit", () => this.edit(n, area.value));
      send.append(" ", kbd("Ctrl+Enter"));
      const cancel = button("Cancel", "chat-cancel-edit", () => {
        n.editing = false;
        this.render();
      });
      area.addEventListener("keydown", (event) => {
        if (sendKey(event)) {
          event.preventDefault();
          send.click();
        } else if (event.key === "Escape") {
          event.preventDefault();
          cancel.click();
        }
      });
      const tools = el("div", "chat-tools");
      tools.append(send, cancel);
      row.append(area, tools);
      return row;
    }
    if (n.pending && !n.content) {
      const writing = el("p", "chat-writing");
      writing.append(el("span", "chat-dot"), `${modelName(n.model ?? 0)} is writing…`);
      row.append(writing);
    }
    row.append(renderText(n.content || "", { markdown: this.options.markdown, className: "rlhf-content" }));
    if (n.error) {
      const err = el("p", "chat-error", n.error);
      err.setAttribute("role", "alert");
      row.append(err);
      const tools = el("div", "chat-tools");
      if (n.retry !== false) tools.append(button("Retry", "chat-retry", () => this.retry(n)));
      const seedTurn = this.byId(n.parent)?.seed;
      tools.append(button(seedTurn ? "Drop this reply" : "Drop this turn", "chat-drop", () => this.drop(n)));
      row.append(tools);
      return row;
    }
    const tools = el("div", "chat-tools");
    const free = !this.busy && !this.failed();
    if (n.role === "user" && free && !n.pending) {
      tools.append(button("Edit", "chat-edit-button", () => {
        n.editing = true;
        this.render();
        this.node.querySelector(".chat-edit")?.focus();
      }));
    }
    if (n.role === "assistant" && n.generation && free && this.branches().length < this.spec.max_branches) {
      tools.append(button("Regenerate", "chat-regenerate", () => this.ask(this.byId(n.parent))));
    }
    if (tools.childElementCount) row.append(tools);
    if (n.role === "assistant" && n.generation) row.append(this.ratingsFor(n));
    return row;
  }

  ratingsFor(n) {
    const box = el("fieldset", "rlhf-field chat-ratings");
    box.dataset.node = n.id;
    box.append(el("legend", "", `Rate this reply (${modelName(n.model ?? 0)})`));
    const mine = (this.ratings[n.id] ||= {});
    for (const dim of this.spec.dimensions) {
      const line = el("div", "chat-dimension");
      line.dataset.dimension = dim.key;
      const labelId = `${this.id}-${n.id}-${dim.key}`;
      const title = el("span", "chat-dimension-label", labelOf(dim));
      title.id = labelId;
      if (dim.required === false) title.append(el("span", "rlhf-optional", " (optional)"));
      line.append(title);
      if (dim.description) line.append(el("span", "rlhf-help chat-dimension-help", dim.description));
      const choices = dim.type === "boolean" ? [[true, "Yes"], [false, "No"]]
        : dim.type === "category" ? dim.options.map((o) => [o, o])
          : dim.type === "scale" ? Array.from({ length: dim.max - dim.min + 1 }, (_, k) => [dim.min + k, String(dim.min + k)])
            : null;
      if (choices === null) {
        const input = el("textarea", "rlhf-textarea chat-text-rating");
        input.rows = 2;
        input.value = mine[dim.key] ?? "";
        input.setAttribute("aria-labelledby", labelId);
        input.addEventListener("input", () => {
          mine[dim.key] = input.value;
          this.recheck();
        });
        line.append(input);
      } else {
        const options = el("div", "rlhf-options");
        options.setAttribute("role", "radiogroup");
        options.setAttribute("aria-labelledby", labelId);
        if (dim.allow_na) choices.push([null, NA_TEXT]);
        for (const [value, text] of choices) {
          const label = el("label", value === null ? "rlhf-opt na chat-choice" : "rlhf-opt chat-choice");
          const radio = el("input");
          radio.type = "radio";
          radio.name = labelId;
          radio.checked = dim.key in mine && mine[dim.key] === value;
          radio.addEventListener("change", () => {
            mine[dim.key] = value;
            this.recheck();
          });
          label.append(radio, el("span", "rlhf-opt-text", text));
          options.append(label);
        }
        line.append(options);
      }
      box.append(line);
    }
    return box;
  }

  composer() {
    const box = el("div", "chat-composer");
    const leaf = this.leaf ? this.byId(this.leaf) : null;
    const atEnd = !leaf || (leaf.role === "assistant" && !leaf.error && !leaf.pending);
    const full = this.userTurns() >= this.spec.max_turns;
    const waiting = leaf?.role === "user" && !this.children(leaf.id).length; // a turn nobody answered yet
    if (this.spec.models > 1) {
      const pick = el("select", "rlhf-select chat-model");
      pick.setAttribute("aria-label", "Model to answer");
      for (let k = 0; k < this.spec.models; k += 1) {
        const o = el("option", "", modelName(k));
        o.value = String(k);
        pick.append(o);
      }
      pick.value = String(this.model);
      pick.disabled = this.busy;
      pick.addEventListener("change", () => {
        this.model = Number(pick.value);
        this.updateStatus();
      });
      box.append(pick);
    }
    if (waiting && !this.busy && !this.failed()) {
      box.append(button(`Get ${modelName(this.model)}'s reply`, "primary chat-ask", () => this.ask(leaf)));
      return box;
    }
    const area = el("textarea", "rlhf-textarea chat-input");
    area.rows = 3;
    area.placeholder = full ? `This branch has its ${this.spec.max_turns} turns.` : "Write the user's next message…";
    area.setAttribute("aria-label", "Your message");
    area.setAttribute("aria-keyshortcuts", "Control+Enter Meta+Enter");
    area.disabled = this.busy || full || !atEnd || Boolean(this.failed());
    area.value = this.draft;
    area.addEventListener("input", () => { this.draft = area.value; });
    const send = button("Send", "primary chat-send", () => {
      const text = area.value.trim();
      if (!text || this.busy || area.disabled) return;
      this.draft = "";
      const turn = this.add({ parent: this.leaf, role: "user", content: text });
      this.leaf = turn.id;
      this.ask(turn);
    });
    send.append(" ", kbd("Ctrl+Enter"));
    send.setAttribute("aria-keyshortcuts", "Control+Enter Meta+Enter");
    send.disabled = area.disabled;
    area.addEventListener("keydown", (event) => {
      if (sendKey(event)) {
        event.preventDefault();
        send.click();
      }
    });
    box.append(area, send);
    return box;
  }

  /** The line under the composer: a model writing, a failed reply to deal with, or a model that is offline. */
  updateStatus() {
    const line = this.statusLine;
    if (!line) return;
    let state = "";
    let text = "";
    const failed = this.failed();
    if (this.busy) {
      const pending = this.nodes.find((n) => n.pending);
      state = "writing";
      text = `${modelName(pending?.model ?? this.model)} is writing… Your time on this task is paused meanwhile.`;
    } else if (failed) {
      state = "failed";
      text = failed.retry === false
        ? "The model's reply failed and retrying will not help: drop it to go on, or skip this task."
        : "The model's reply failed: retry it, or drop it, to go on.";
    } else if (this.online && this.online[this.model] === false) {
      state = "offline";
      text = `${modelName(this.model)} is offline: nobody is serving it right now. `
        + "Wait for it to come back, or skip this task.";
    }
    line.replaceChildren();
    if (state === "writing") line.append(el("span", "chat-dot"));
    line.append(text);
    line.dataset.state = state;
    line.hidden = !state;
  }

  verdict(branches) {
    const section = el("section", "rlhf-verdict chat-verdict");
    section.append(el("h3", "rlhf-verdict-title", branches.length > 1 ? "Your verdict" : "Your notes"));
    if (branches.length > 1) {
      const choose = el("fieldset", "rlhf-field");
      choose.dataset.name = "sel";
      choose.append(el("legend", "", "Which branch did better?"));
      const options = el("div", "rlhf-options");
      branches.forEach((leaf, b) => {
        const label = el("label", "rlhf-opt chat-choice");
        const radio = el("input");
        radio.type = "radio";
        radio.name = `${this.id}-better`;
        radio.value = leaf;
        radio.checked = this.selected === leaf;
        radio.addEventListener("change", () => {
          this.selected = leaf;
          this.recheck();
        });
        label.append(radio, el("span", "rlhf-opt-text", `Branch ${b + 1}`));
        options.append(label);
      });
      choose.append(options);
      section.append(choose);
      if (branches.length === 2 && this.spec.likert_scale > 0) {
        const scale = el("fieldset", "rlhf-field rlhf-likert chat-likert");
        scale.dataset.name = "lk";
        scale.append(el("legend", "", "How much better?"));
        const points = el("div", "rlhf-options");
        for (let p = 1; p <= this.spec.likert_scale; p += 1) {
          const label = el("label", "rlhf-opt chat-choice");
          const radio = el("input");
          radio.type = "radio";
          radio.name = `${this.id}-likert`;
          radio.checked = this.likert === p;
          radio.addEventListener("change", () => {
            this.likert = p;
            this.recheck();
          });
          const words = likertLabel(p, this.spec.likert_scale).replace(/Response /g, "Branch ");
          label.append(radio, el("span", "rlhf-opt-text", String(p)), el("span", "rlhf-anchor", words));
          points.append(label);
        }
        scale.append(points);
        section.append(scale);
      }
    }
    if (this.spec.justification !== "off") {
      const box = el("div", "rlhf-field rlhf-why");
      box.dataset.name = "why";
      const min = this.spec.justification_min_chars;
      const need = this.spec.justification === "required"
        ? ` (required${min > 0 ? `, at least ${min} characters` : ""})` : " (optional)";
      const label = el("label", "rlhf-label", `Why?${need}`);
      const why = el("textarea", "rlhf-textarea chat-justification");
      why.id = `${this.id}-why`;
      why.rows = 3;
      label.htmlFor = why.id;
      why.value = this.justification || "";
      why.addEventListener("input", () => {
        this.justification = why.value;
        this.recheck();
      });
      box.append(label, why);
      section.append(box);
    }
    if (section.childElementCount === 1) section.hidden = true; // one branch and no justification: nothing to ask
    return section;
  }

  // ------------------------------------------------------------ talking

  edit(n, text) {
    n.editing = false;
    if (!text.trim() || text === n.content) {
      this.render();
      return;
    }
    const turn = this.add({ parent: n.parent, role: "user", content: text.trim() });
    this.leaf = turn.id;
    this.ask(turn);
  }

  retry(failed) {
    const turn = this.byId(failed.parent);
    if (turn) this.ask(turn, { failed, model: failed.model });
  }

  /** Give up on a reply that failed, and on the user turn it answered unless that is the starting
   * conversation's or has other replies. */
  drop(failed) {
    const turn = this.byId(failed.parent);
    this.nodes = this.nodes.filter((n) => n !== failed);
    if (turn && !turn.seed && !this.children(turn.id).length) this.nodes = this.nodes.filter((n) => n !== turn);
    if (turn?.seed) {
      this.leaf = turn.id;
    } else {
      const rest = this.branches();
      this.leaf = rest.length ? rest[rest.length - 1] : null;
    }
    this.render();
  }

  setBusy(on) {
    this.busy = on;
    this.options.pause?.(on);
  }

  /** Ask for a reply to user turn `turn` (a new branch when it has one already), replacing `failed`. */
  async ask(turn, { failed = null, model = this.model } = {}) {
    if (this.busy || this.discarded) return;
    if (failed) this.nodes = this.nodes.filter((n) => n !== failed);
    const reply = this.add({ parent: turn.id, role: "assistant", content: "", model, pending: true });
    this.leaf = reply.id;
    this.setBusy(true);
    this.render();
    this.node.querySelector(`[data-node="${reply.id}"]`)?.scrollIntoView?.({ block: "nearest" });
    const messages = this.path(turn.id).map((n) => ({ role: n.role, content: n.content }));
    let body = null;
    let result = null;
    this.controller = new AbortController();
    try {
      const res = await fetch(`${this.options.api.base}/v1/tasks/${this.task.task_id}/generate`, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.options.api.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ messages, model }),
        signal: this.controller.signal,
        cache: "no-store",
        credentials: "omit",
      });
      if (!res.ok) {
        const problem = await res.json().catch(() => ({}));
        result = {
          type: "error", code: problem.code, detail: problem.detail || `The server refused (${res.status}).`,
          retry: res.status >= 500 || res.status === 409,
        };
      } else {
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffered = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffered += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffered.indexOf("\n")) >= 0) {
            const line = buffered.slice(0, cut);
            buffered = buffered.slice(cut + 1);
            if (!line.trim()) continue;
            const event = JSON.parse(line);
            if (event.type === "chunk") {
              reply.content += event.text;
              body ||= this.node.querySelector(`[data-node="${reply.id}"] .rlhf-content`);
              if (body) body.textContent = reply.content;
              this.node.querySelector(`[data-node="${reply.id}"] .chat-writing`)?.remove();
            } else {
              result = event;
            }
          }
        }
      }
    } catch (err) {
      if (err?.name === "AbortError") return;
      result = { type: "error", detail: "Lost contact with the server while the model was writing.", retry: true };
    }
    this.controller = null;
    if (this.discarded) return;
    this.setBusy(false);
    if (result?.lease_expires_at) this.options.lease?.(result.lease_expires_at);
    reply.pending = false;
    if (result?.type === "done") {
      reply.content = result.text;
      reply.generation = result.generation_id;
    } else {
      reply.error = `${result?.detail || "The model did not finish its reply."}`;
      reply.retry = result?.retry !== false;
      reply.content = "";
      if (result?.code === "model_detached" && this.online) this.online[model] = false;
    }
    this.render();
    // The reply's rating questions come into view with it.
    const done = this.node.querySelector(`[data-node="${reply.id}"] .chat-ratings`)
      || this.node.querySelector(`[data-node="${reply.id}"]`);
    done?.scrollIntoView?.({ block: "nearest" });
  }

  /** Asks the server every few seconds whether the task's models are there, while the task is on screen. */
  async watchModels() {
    if (this.presence || this.discarded) return;
    this.presence = new AbortController();
    const { signal } = this.presence;
    while (!signal.aborted) {
      try {
        const models = await this.options.api.taskModels(this.task.task_id, signal);
        const online = Array.from({ length: this.spec.models }, () => true);
        for (const m of models) online[m.model] = m.online;
        this.online = online;
        this.updateStatus();
      } catch (err) {
        if (err?.name === "AbortError") return;
        // The task ended or the server is away: the page's own checks say so; keep the last known state.
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, PRESENCE_MS);
        signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
      });
    }
  }

  // ------------------------------------------------------------ answering

  /** What the server would refuse (kinds/chat.py), in the order of the conversation: [{text, node?, name?}]. */
  problems() {
    const out = [];
    const branches = this.branches();
    branches.forEach((leaf, b) => {
      const n = this.byId(leaf);
      if (n.error) {
        out.push({ node: leaf, text: `Branch ${b + 1}: the model's reply failed; retry it or drop it` });
      } else if (n.role !== "assistant" || (!n.generation && !n.seed)) {
        out.push({ node: leaf, text: `Branch ${b + 1} ends with a turn nobody answered: get the model's reply` });
      }
    });
    const replies = this.nodes.filter((n) => n.generation);
    if (!replies.length) out.push({ text: "Talk with the model at least once: send a turn and read its reply" });
    const ordered = branches.flatMap((leaf) => this.path(leaf)).filter((n, i, all) => all.indexOf(n) === i);
    for (const n of ordered.filter((m) => m.generation)) {
      const mine = this.ratings[n.id] || {};
      const missing = this.spec.dimensions.filter((dim) => dim.required !== false && !this.answered(dim, mine));
      if (missing.length) {
        out.push({ node: n.id, text: `${this.replyName(n.id)}: rate ${missing.map(labelOf).join(", ")}` });
      }
    }
    if (branches.length > 1 && !branches.includes(this.selected)) {
      out.push({ name: "sel", text: "Choose the better branch" });
    }
    if (branches.length === 2 && this.spec.likert_scale > 0) {
      const middle = (this.spec.likert_scale + 1) / 2;
      const first = this.selected === branches[0];
      if (!this.likert) {
        out.push({ name: "lk", text: "Say how much better" });
      } else if (branches.includes(this.selected) && (first ? this.likert > middle : this.likert < middle)) {
        out.push({ name: "lk", text: "How much better leans toward the other branch than the one you chose" });
      }
    }
    const why = (this.justification || "").trim();
    const min = Math.max(1, this.spec.justification_min_chars);
    if (this.spec.justification === "required" && why.length < min) {
      out.push({ name: "why", text: min > 1 ? `Say why, in at least ${min} characters` : "Say why" });
    }
    return out;
  }

  answered(dim, mine) {
    if (!(dim.key in mine)) return false;
    const value = mine[dim.key];
    return dim.type !== "text" || value === null || String(value).trim() !== "";
  }

  answer() {
    const branches = this.branches();
    const replies = this.nodes.filter((n) => n.generation);
    const why = (this.justification || "").trim();
    const nodes = this.nodes.filter((n) => !n.error && !n.pending);
    this.sentNodes = nodes.map((n) => n.id);
    return {
      nodes: nodes.map((n) => {
        const out = { id: n.id, role: n.role };
        if (n.parent) out.parent = n.parent;
        if (n.generation) out.generation = n.generation;
        else out.content = n.content;
        return out;
      }),
      ratings: Object.fromEntries(replies.map((n) => [n.id, this.ratingsOf(n.id)])),
      ...(branches.length > 1 ? { selected: this.selected } : {}),
      ...(branches.length === 2 && this.spec.likert_scale > 0 ? { likert: this.likert } : {}),
      ...(why ? { justification: why } : {}),
    };
  }

  ratingsOf(id) {
    const mine = this.ratings[id] || {};
    const out = {};
    for (const dim of this.spec.dimensions) {
      if (!(dim.key in mine)) continue;
      if (dim.type === "text" && mine[dim.key] !== null && !String(mine[dim.key]).trim()) continue;
      out[dim.key] = mine[dim.key];
    }
    return out;
  }

  submit() {
    if (this.busy || this.sendingAnswer) return;
    const problems = this.problems();
    if (problems.length) {
      this.showProblems(problems, BEFORE_SUBMIT);
      this.focus(problems[0]);
      return;
    }
    this.hideProblems();
    this.options.submit(this.answer());
  }

  showProblems(problems, title, { live = true } = {}) {
    this.shownProblems = problems;
    this.problemsTitle = title;
    this.liveProblems = live;
    this.drawProblems();
    this.markInvalid();
  }

  drawProblems() {
    const list = el("ul");
    for (const problem of this.shownProblems) {
      const item = el("li");
      item.dataset.text = problem.text;
      const go = button(problem.text, "link-button", () => this.focus(problem));
      item.append(go);
      list.append(item);
    }
    this.problemsBox.replaceChildren(el("p", "rlhf-problems-title", this.problemsTitle), list);
    this.problemsBox.hidden = false;
  }

  hideProblems() {
    this.shownProblems = null;
    this.problemsBox.hidden = true;
    this.problemsBox.replaceChildren();
    this.markInvalid();
  }

  /** Marks what the problems on screen are about: a reply's rating questions, or a field of the verdict. */
  markInvalid() {
    for (const box of this.node.querySelectorAll(".invalid")) box.classList.remove("invalid");
    for (const p of this.shownProblems || []) this.target(p)?.classList.add("invalid");
  }

  target(problem) {
    if (problem.node) {
      const n = this.byId(problem.node);
      const row = this.node.querySelector(`[data-node="${CSS.escape(problem.node)}"]`);
      if (!row) return null;
      return n?.generation ? row.querySelector(".chat-ratings") : row;
    }
    if (problem.name) return this.node.querySelector(`.rlhf-field[data-name="${CSS.escape(problem.name)}"]`);
    return null;
  }

  /** Shows what a problem is about: its branch on screen, marked, scrolled to and focused. */
  focus(problem) {
    if (problem.node && !this.path().some((n) => n.id === problem.node)) {
      const where = this.place(problem.node);
      if (where && !this.busy) {
        this.leaf = where.leaf;
        this.render();
      }
    }
    const target = this.target(problem) ?? this.problemsBox;
    target.scrollIntoView({ block: "center" });
    const control = target.matches?.(".rlhf-problems") ? target
      : target.querySelector("input:not([disabled]), textarea:not([disabled]), button") ?? target;
    control.focus({ preventScroll: true });
  }

  /** While a list is on screen, what gets fixed leaves it (nothing is added: that waits for the next submit). */
  recheck() {
    if (!this.shownProblems || !this.liveProblems) return;
    const now = new Set(this.problems().map((p) => p.text));
    const left = this.shownProblems.filter((p) => now.has(p.text));
    if (!left.length) {
      this.hideProblems();
      return;
    }
    this.shownProblems = left;
    this.drawProblems();
    this.markInvalid();
  }

  // The interface annotate.js drives (as for rlhf.js's view).
  sending(on) {
    this.sendingAnswer = on;
    if (this.submitButton) {
      this.submitButton.setAttribute("aria-disabled", String(on));
      this.submitButton.textContent = on ? "Sending…" : "Submit";
    }
  }

  /** The server did not take the answer: say why, pointing at the reply (and branch) or field it names. */
  refused(message, field) {
    this.sending(false);
    const problem = { text: message };
    const path = String(field || "").replace(/^chat\.?/, "");
    const rating = /^ratings\.([^.]+)/.exec(path);
    const node = /^nodes\[(\d+)\]/.exec(path);
    const id = rating ? rating[1] : node ? this.sentNodes[Number(node[1])] : null;
    if (id && this.byId(id)) {
      problem.node = id;
      const n = this.byId(id);
      const where = this.place(id);
      const name = n.generation ? this.replyName(id) : where ? `Branch ${where.branch}` : "";
      if (name) problem.text = `${name}: ${message}`;
    } else if (["selected", "likert", "justification"].includes(path)) {
      problem.name = { selected: "sel", likert: "lk", justification: "why" }[path];
    }
    this.showProblems([problem], NOT_SENT, { live: false });
    this.focus(problem);
  }

  discard() {
    this.discarded = true;
    this.controller?.abort();
    this.presence?.abort();
    if (this.busy) {
      this.busy = false;
      this.options.pause?.(false);
    }
  }

  /** On screen: the starting conversation's last user turn (if it ends with one) is answered at once. */
  shown() {
    this.watchModels();
    if (!this.started) {
      this.started = true;
      const leaf = this.leaf ? this.byId(this.leaf) : null;
      if (leaf?.role === "user" && !this.children(leaf.id).length) {
        this.ask(leaf);
        return;
      }
    }
    this.node.querySelector(".chat-input:not([disabled])")?.focus();
  }

  block() {} // chat tasks have no clips to play through

  park() {
    return false; // a conversation's replies live in this lease only: nothing to resume on another page
  }

  onKey() {} // typed into: the page's single-key shortcuts never apply
}

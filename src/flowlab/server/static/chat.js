// A chat task: the annotator talks with the flow's models, edits an earlier user turn or regenerates a reply
// (each a new branch: the conversation is a tree), rates every reply a model wrote, and, with two or more
// branches, says which branch did better, how strongly and why. Replies stream in as the model writes them.

import { renderText } from "./render.js";
import { likertLabel } from "./rlhf.js";

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

const MODEL_NAMES = "ABCDEFGH";

export class ChatView {
  constructor(task, options) {
    views += 1;
    this.id = `chat${views}`;
    this.task = task;
    this.options = options; // { api, markdown, submit, skip, lease }
    this.spec = task.chat;
    this.nodes = []; // {id, parent, role, content, generation, seed, model}
    this.ratings = {}; // node id -> dimension key -> value
    this.counter = 0;
    this.busy = false; // a reply is being written
    this.sendingAnswer = false;
    this.discarded = false;
    this.controller = null;
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
        tabs.append(tab);
      });
      box.append(tabs);
    }
    const thread = el("div", "chat-thread");
    thread.setAttribute("aria-live", "polite");
    for (const n of this.path()) thread.append(this.message(n));
    box.append(thread);
    this.streamBox = null;
    box.append(this.composer());
    box.append(this.verdict(branches));
    this.problems = el("div", "rlhf-problems");
    this.problems.setAttribute("role", "alert");
    this.problems.hidden = true;
    box.append(this.problems);
    const actions = el("div", "actions");
    this.submitButton = button("Submit", "primary chat-submit", () => this.submit());
    actions.append(this.submitButton, button("Skip", "chat-skip", () => this.options.skip()));
    box.append(actions);
  }

  message(n) {
    const row = el("div", "rlhf-message chat-message");
    row.dataset.role = n.role;
    row.dataset.node = n.id;
    const who = n.role === "user" ? "User" : n.generation ? `Model ${MODEL_NAMES[n.model]}` : "Assistant";
    row.append(el("p", "rlhf-role", who));
    if (n.editing) {
      const area = el("textarea", "chat-edit");
      area.value = n.content;
      area.setAttribute("aria-label", "Edit this message");
      row.append(area, button("Send edit", "primary chat-send-edit", () => this.edit(n, area.value)));
      row.append(button("Cancel", "", () => { n.editing = false; this.render(); }));
      return row;
    }
    row.append(renderText(n.content || "", { markdown: this.options.markdown, className: "rlhf-content" }));
    if (n.error) {
      const err = el("p", "chat-error", n.error);
      err.setAttribute("role", "alert");
      row.append(err, button("Retry", "chat-retry", () => this.ask(this.byId(n.parent), n)));
      row.append(button("Drop this turn", "chat-drop", () => this.drop(n)));
    }
    const tools = el("div", "chat-tools");
    if (n.role === "user" && !this.busy && !n.pending) {
      tools.append(button("Edit", "chat-edit-button", () => { n.editing = true; this.render(); }));
    }
    if (n.role === "assistant" && n.parent && !this.busy && this.branches().length < this.spec.max_branches) {
      tools.append(button("Regenerate", "chat-regenerate", () => this.ask(this.byId(n.parent))));
    }
    row.append(tools);
    if (n.role === "assistant" && n.generation) row.append(this.ratingsFor(n));
    return row;
  }

  ratingsFor(n) {
    const box = el("fieldset", "chat-ratings");
    box.append(el("legend", "", "Rate this reply"));
    const mine = (this.ratings[n.id] ||= {});
    for (const dim of this.spec.dimensions) {
      const line = el("div", "chat-dimension");
      line.dataset.dimension = dim.key;
      line.append(el("span", "chat-dimension-label", dim.label || dim.key));
      const name = `${this.id}-${n.id}-${dim.key}`;
      const choices = dim.type === "boolean" ? [[true, "Yes"], [false, "No"]]
        : dim.type === "category" ? dim.options.map((o) => [o, o])
          : dim.type === "scale" ? Array.from({ length: dim.max - dim.min + 1 }, (_, k) => [dim.min + k, String(dim.min + k)])
            : null;
      if (choices === null) {
        const input = el("input", "chat-text-rating");
        input.type = "text";
        input.value = mine[dim.key] ?? "";
        input.setAttribute("aria-label", dim.label || dim.key);
        input.addEventListener("input", () => { mine[dim.key] = input.value; });
        line.append(input);
      } else {
        if (dim.allow_na) choices.push([null, "N/A"]);
        for (const [value, text] of choices) {
          const label = el("label", "chat-choice");
          const radio = el("input");
          radio.type = "radio";
          radio.name = name;
          radio.checked = dim.key in mine && mine[dim.key] === value;
          radio.addEventListener("change", () => { mine[dim.key] = value; });
          label.append(radio, document.createTextNode(` ${text}`));
          line.append(label);
        }
      }
      box.append(line);
    }
    return box;
  }

  composer() {
    const box = el("div", "chat-composer");
    const atEnd = !this.leaf || this.byId(this.leaf).role === "assistant";
    const full = this.userTurns() >= this.spec.max_turns;
    if (this.spec.models > 1) {
      const pick = el("select", "chat-model");
      pick.setAttribute("aria-label", "Model to answer");
      for (let k = 0; k < this.spec.models; k += 1) {
        const o = el("option", "", `Model ${MODEL_NAMES[k]}`);
        o.value = String(k);
        pick.append(o);
      }
      pick.value = String(this.model);
      pick.addEventListener("change", () => { this.model = Number(pick.value); });
      box.append(pick);
    }
    const area = el("textarea", "chat-input");
    area.placeholder = full ? `This branch has its ${this.spec.max_turns} turns.` : "Write the user's next message…";
    area.setAttribute("aria-label", "Your message");
    area.disabled = this.busy || full || !atEnd;
    const send = button("Send", "primary chat-send", () => {
      const text = area.value.trim();
      if (!text || this.busy) return;
      const turn = this.add({ parent: this.leaf, role: "user", content: text });
      this.leaf = turn.id;
      this.ask(turn);
    });
    send.disabled = area.disabled;
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) send.click();
    });
    box.append(area, send);
    return box;
  }

  verdict(branches) {
    const box = el("fieldset", "chat-verdict");
    box.append(el("legend", "", branches.length > 1 ? "Which branch did better?" : "Your notes"));
    if (branches.length > 1) {
      branches.forEach((leaf, b) => {
        const label = el("label", "chat-choice");
        const radio = el("input");
        radio.type = "radio";
        radio.name = `${this.id}-better`;
        radio.value = leaf;
        radio.checked = this.selected === leaf;
        radio.addEventListener("change", () => { this.selected = leaf; });
        label.append(radio, document.createTextNode(` Branch ${b + 1}`));
        box.append(label);
      });
      if (branches.length === 2 && this.spec.likert_scale > 0) {
        const scale = el("div", "chat-likert");
        scale.append(el("p", "help", "How much better?"));
        for (let p = 1; p <= this.spec.likert_scale; p += 1) {
          const label = el("label", "chat-choice");
          const radio = el("input");
          radio.type = "radio";
          radio.name = `${this.id}-likert`;
          radio.checked = this.likert === p;
          radio.addEventListener("change", () => { this.likert = p; });
          const words = likertLabel(p, this.spec.likert_scale).replace(/Response /g, "Branch ");
          label.append(radio, document.createTextNode(` ${words}`));
          scale.append(label);
        }
        box.append(scale);
      }
    }
    if (this.spec.justification !== "off") {
      const why = el("textarea", "chat-justification");
      why.placeholder = this.spec.justification === "required" ? "Why? (required)" : "Why? (optional)";
      why.setAttribute("aria-label", "Justification");
      why.value = this.justification || "";
      why.addEventListener("input", () => { this.justification = why.value; });
      box.append(why);
    }
    return box;
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

  /** Give up on a reply that failed, and on the user turn it answered unless that has other replies. */
  drop(failed) {
    const turn = this.byId(failed.parent);
    this.nodes = this.nodes.filter((n) => n !== failed);
    if (turn && !this.children(turn.id).length) this.nodes = this.nodes.filter((n) => n !== turn);
    const rest = this.branches();
    this.leaf = rest.length ? rest[rest.length - 1] : null;
    this.render();
  }

  /** Ask for a reply to user turn `turn` (a new branch when it has one already); `failed` is a reply to retry. */
  async ask(turn, failed = null) {
    if (this.busy || this.discarded) return;
    if (failed) this.nodes = this.nodes.filter((n) => n !== failed);
    const reply = this.add({ parent: turn.id, role: "assistant", content: "", model: this.model, pending: true });
    this.leaf = reply.id;
    this.busy = true;
    this.render();
    const messages = this.path(turn.id).map((n) => ({ role: n.role, content: n.content }));
    const body = this.node.querySelector(`[data-node="${reply.id}"] .rlhf-content`);
    let result = null;
    this.controller = new AbortController();
    try {
      const res = await fetch(`${this.options.api.base}/v1/tasks/${this.task.task_id}/generate`, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.options.api.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ messages, model: reply.model }),
        signal: this.controller.signal,
        cache: "no-store",
        credentials: "omit",
      });
      if (!res.ok) {
        const problem = await res.json().catch(() => ({}));
        result = { type: "error", detail: problem.detail || `The server refused (${res.status}).` };
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
              if (body) body.textContent = reply.content;
            } else {
              result = event;
            }
          }
        }
      }
    } catch (err) {
      if (err?.name === "AbortError") return;
      result = { type: "error", detail: "Lost contact with the server while the model was writing." };
    }
    this.busy = false;
    this.controller = null;
    if (this.discarded) return;
    reply.pending = false;
    if (result?.lease_expires_at) this.options.lease?.(result.lease_expires_at);
    if (result?.type === "done") {
      reply.content = result.text;
      reply.generation = result.generation_id;
    } else {
      reply.error = `${result?.detail || "The model did not finish its reply."}`;
      reply.content = "";
    }
    this.render();
  }

  // ------------------------------------------------------------ answering

  answer() {
    const problems = [];
    const branches = this.branches();
    for (const leaf of branches) {
      const n = this.byId(leaf);
      if (n.role !== "assistant" || !n.generation && !n.seed) {
        problems.push(`Branch ${branches.indexOf(leaf) + 1} has no reply at its end: retry it or edit another turn.`);
      }
    }
    const replies = this.nodes.filter((n) => n.generation);
    if (!replies.length) problems.push("Talk with the model at least once.");
    for (const n of replies) {
      const mine = this.ratings[n.id] || {};
      for (const dim of this.spec.dimensions) {
        if (dim.required && !(dim.key in mine) && dim.type !== "text") {
          problems.push(`Rate ${dim.label || dim.key} for every reply of the model.`);
          break;
        }
      }
    }
    if (branches.length > 1 && !branches.includes(this.selected)) problems.push("Choose the better branch.");
    if (branches.length === 2 && this.spec.likert_scale > 0 && !this.likert) problems.push("Say how much better.");
    const why = (this.justification || "").trim();
    if (this.spec.justification === "required" && why.length < Math.max(1, this.spec.justification_min_chars)) {
      problems.push("Say why.");
    }
    return {
      problems,
      answer: {
        nodes: this.nodes.filter((n) => !n.error).map((n) => {
          const out = { id: n.id, role: n.role };
          if (n.parent) out.parent = n.parent;
          if (n.generation) out.generation = n.generation;
          else out.content = n.content;
          return out;
        }),
        ratings: Object.fromEntries(replies.map((n) => [n.id, this.ratings[n.id] || {}])),
        ...(branches.length > 1 ? { selected: this.selected } : {}),
        ...(branches.length === 2 && this.spec.likert_scale > 0 ? { likert: this.likert } : {}),
        ...(why ? { justification: why } : {}),
      },
    };
  }

  submit() {
    if (this.busy || this.sendingAnswer) return;
    const { problems, answer } = this.answer();
    if (problems.length) {
      this.showProblems(problems);
      return;
    }
    this.options.submit(answer);
  }

  showProblems(problems) {
    this.problems.replaceChildren(el("p", "", "Before you submit:"));
    const list = el("ul");
    for (const p of problems) list.append(el("li", "", p));
    this.problems.append(list);
    this.problems.hidden = false;
  }

  // The interface annotate.js drives (as for rlhf.js's view).
  sending(on) {
    this.sendingAnswer = on;
    if (this.submitButton) this.submitButton.disabled = on;
  }

  refused(message) {
    this.sending(false);
    this.showProblems([message]);
  }

  discard() {
    this.discarded = true;
    this.controller?.abort();
  }

  shown() {
    this.node.querySelector(".chat-input:not([disabled])")?.focus();
  }

  block() {} // chat tasks have no clips to play through

  park() {
    return false; // a conversation's replies live in this lease only: nothing to resume on another page
  }

  onKey() {} // typed into: the page's single-key shortcuts never apply
}

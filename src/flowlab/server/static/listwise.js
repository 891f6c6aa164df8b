// A listwise task on the annotator page: k datapoints, each with a fixed number (1…k, as shown), which the
// annotator orders best first — keyboard first: press the number of the best, then of the next… (the last one
// falls into place), Backspace undoes, Enter submits once the order is complete; or drag the cards into order
// (top is best). In best–worst mode the same keys pick the best, then the worst, and each card also has a Best
// and a Worst button.
//
// Everything a task carries is data: datapoints reach the page through renderContent only, never as HTML.

import { el, kbd, renderContent, taskActions } from "./render.js";

const ORDINALS = ["1st", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th"];

let views = 0; // numbers the views built on this page, for unique element ids

export class ListwiseView {
  constructor(task, options) {
    views += 1;
    this.id = `listwise${views}`;
    this.task = task;
    this.options = options;
    this.datapoints = task.listwise.datapoints;
    this.k = this.datapoints.length;
    this.bestWorst = task.listwise.mode === "best_worst";
    // Order: positions (0-based, as shown) in the order the annotator picked them, best first. Best–worst: the
    // picks made ("best", "worst"), newest last, so Backspace undoes the latest; `best` and `worst` hold positions.
    this.picks = [];
    this.best = undefined;
    this.worst = undefined;
    this.busy = false;
    this.blocked = false;
    this.node = this.build();
    this.node.addEventListener("submit", (event) => event.preventDefault());
    this.update();
  }

  build() {
    const form = el("form", "rlhf-form listwise-form");
    form.noValidate = true;
    form.setAttribute("aria-label", this.bestWorst ? "Pick the best and the worst" : "Order the answers");
    this.heading = el("h2", "rlhf-heading", this.bestWorst
      ? `Pick the best and the worst of these ${this.k}`
      : `Order these ${this.k}, best first`);
    this.heading.id = `${this.id}-heading`;
    this.heading.tabIndex = -1; // where focus goes when the task is shown, so the number keys work at once
    const help = el("p", "help listwise-help");
    help.append(...(this.bestWorst
      ? ["Press the number of the best, then of the worst (", kbd("Backspace"), " undoes, ", kbd("Enter"),
        " sends), or use the buttons on each card."]
      : ["Press the number of the best, then of the next… (", kbd("Backspace"), " undoes, ", kbd("Enter"),
        " sends), or drag the cards into order, best at the top."]));
    this.status = el("p", "listwise-status");
    this.status.setAttribute("aria-live", "polite");
    this.list = el("ol", "listwise-list");
    this.list.setAttribute("aria-labelledby", this.heading.id);
    this.cards = this.datapoints.map((dp, position) => this.card(dp, position));
    this.list.append(...this.cards);
    this.problem = el("p", "rlhf-problems listwise-problem");
    this.problem.setAttribute("role", "alert");
    this.problem.hidden = true;
    form.append(this.heading, help, this.status, this.list, this.problem, this.actions());
    return form;
  }

  card(dp, position) {
    const item = el("li", "listwise-card");
    item.dataset.position = String(position);
    item.dataset.ref = String(dp.ref);
    item.dataset.kind = dp.kind;
    const head = el("div", "listwise-card-head");
    const number = el("span", "listwise-number", String(position + 1));
    number.setAttribute("aria-label", `Answer ${position + 1}`);
    const rank = el("span", "listwise-rank");
    head.append(number, rank);
    if (this.bestWorst) {
      for (const [what, label] of [["best", "Best"], ["worst", "Worst"]]) {
        const button = el("button", `listwise-pick listwise-${what}`, label);
        button.type = "button";
        button.dataset.pick = what;
        button.setAttribute("aria-pressed", "false");
        button.addEventListener("click", () => this.pickAs(what, position));
        head.append(button);
      }
    } else {
      item.draggable = true;
      item.addEventListener("dragstart", (event) => {
        this.dragged = item;
        item.classList.add("dragging");
        event.dataTransfer.effectAllowed = "move";
        event.dataTransfer.setData("text/plain", String(position));
      });
      item.addEventListener("dragend", () => {
        item.classList.remove("dragging");
        this.dragged = null;
      });
      item.addEventListener("dragover", (event) => {
        if (!this.dragged || this.dragged === item) return;
        event.preventDefault();
        const box = item.getBoundingClientRect();
        const after = event.clientY > box.top + box.height / 2;
        item.classList.toggle("drop-before", !after);
        item.classList.toggle("drop-after", after);
      });
      item.addEventListener("dragleave", () => item.classList.remove("drop-before", "drop-after"));
      item.addEventListener("drop", (event) => {
        event.preventDefault();
        const after = item.classList.contains("drop-after");
        item.classList.remove("drop-before", "drop-after");
        if (this.dragged && this.dragged !== item) this.dropped(this.dragged, item, after);
      });
    }
    const body = renderContent(dp, { markdown: this.options.markdown, label: String(position + 1) });
    body.classList.add("listwise-body");
    item.append(head, body);
    return item;
  }

  actions() {
    const undo = el("button", "listwise-undo", "Undo");
    undo.type = "button";
    undo.dataset.action = "undo";
    undo.setAttribute("aria-keyshortcuts", "Backspace");
    undo.addEventListener("click", () => this.undo());
    return taskActions(this, { shortcut: "Enter", hint: "Enter", extra: [undo] });
  }

  /** The whole order (positions, best first) once it is complete, else null; the last one falls into place. */
  order() {
    if (this.bestWorst) return null;
    if (this.picks.length === this.k) return [...this.picks];
    if (this.picks.length === this.k - 1) {
      const rest = [...Array(this.k).keys()].find((p) => !this.picks.includes(p));
      return [...this.picks, rest];
    }
    return null;
  }

  complete() {
    return this.bestWorst ? this.best !== undefined && this.worst !== undefined : this.order() !== null;
  }

  /** A number key: the next best (order), or the best, then the worst (best–worst). */
  pick(position) {
    if (this.busy || position < 0 || position >= this.k) return;
    if (this.bestWorst) {
      if (this.best === undefined && position !== this.worst) this.pickAs("best", position);
      else if (this.worst === undefined && position !== this.best) this.pickAs("worst", position);
      return;
    }
    if (this.picks.includes(position) || this.picks.length >= this.k - 1) return;
    this.picks.push(position);
    this.update();
  }

  /** Best–worst: `position` becomes the best (or the worst); picked as the other end before, it leaves that. */
  pickAs(what, position) {
    if (this.busy) return;
    const other = what === "best" ? "worst" : "best";
    if (this[other] === position) this[other] = undefined;
    this[what] = position;
    this.picks.push(what);
    this.update();
  }

  undo() {
    if (this.busy) return;
    const last = this.picks.pop();
    if (this.bestWorst && last !== undefined) {
      this[last] = undefined;
      this.picks = this.picks.filter((what) => this[what] !== undefined);
    }
    this.update();
  }

  /** A drag sets the whole order to the cards as they stand, top first. */
  dropped(moved, onto, after) {
    if (this.busy) return;
    this.list.insertBefore(moved, after ? onto.nextSibling : onto);
    this.picks = [...this.list.children].map((card) => Number(card.dataset.position));
    this.update();
  }

  update() {
    const order = this.order();
    const ranks = new Map();
    if (this.bestWorst) {
      if (this.best !== undefined) ranks.set(this.best, "Best");
      if (this.worst !== undefined) ranks.set(this.worst, "Worst");
    } else {
      (order ?? this.picks).forEach((p, i) => ranks.set(p, ORDINALS[i] ?? `${i + 1}th`));
    }
    for (const card of this.cards) {
      const position = Number(card.dataset.position);
      const rank = ranks.get(position) ?? "";
      card.querySelector(".listwise-rank").textContent = rank;
      card.dataset.rank = rank ? rank.toLowerCase() : "";
      for (const button of card.querySelectorAll(".listwise-pick")) {
        button.setAttribute("aria-pressed", String(rank.toLowerCase() === button.dataset.pick));
      }
    }
    const done = this.complete();
    this.node.dataset.complete = String(done);
    this.submitButton.setAttribute("aria-disabled", String(!done || this.busy || this.blocked));
    if (this.bestWorst) {
      this.status.textContent = done ? "Best and worst picked: Enter sends."
        : this.best !== undefined ? `Best: ${this.best + 1}. Now the worst.`
          : this.worst !== undefined ? `Worst: ${this.worst + 1}. Now the best.` : "Pick the best.";
    } else {
      this.status.textContent = done
        ? `Your order: ${order.map((p) => p + 1).join(", ")}. Enter sends.`
        : this.picks.length
          ? `So far: ${this.picks.map((p) => p + 1).join(", ")}. Now the next best.`
          : "Press the number of the best.";
    }
    if (done) this.problem.hidden = true;
  }

  trySubmit() {
    if (this.busy || this.blocked) return;
    if (!this.complete()) {
      this.say(this.bestWorst ? "Pick both the best and the worst first." : "Put every answer in order first.");
      return;
    }
    this.options.submit(this.bestWorst ? { best: this.best, worst: this.worst } : { order: this.order() });
  }

  say(text) {
    this.problem.textContent = text;
    this.problem.hidden = false;
  }

  sending(on) {
    this.busy = on;
    this.submitLabel.textContent = on ? "Sending…" : "Submit";
    this.update();
  }

  /** The server did not take the answer (or could not be reached): say why, keep the order, let them resend. */
  refused(detail) {
    this.sending(false);
    this.say(`Not sent: ${detail}`);
  }

  block(on) {
    this.blocked = on;
    this.update();
  }

  /** Keys while this task is on screen: a number picks, Backspace undoes, Enter submits, S skips. */
  onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.repeat) return;
    const target = event.target;
    if (target instanceof HTMLElement && (target.isContentEditable || target.closest("input, textarea, select"))) {
      return;
    }
    const digit = /^(?:Digit|Numpad)([1-9])$/.exec(event.code || "")?.[1] ?? (/^[1-9]$/.test(event.key) ? event.key : null);
    if (digit !== null) {
      event.preventDefault();
      this.pick(Number(digit) - 1);
    } else if (event.key === "Backspace") {
      event.preventDefault();
      this.undo();
    } else if (event.key === "Enter") {
      // A focused button (Skip, a card's Best) answers Enter itself.
      if (target instanceof HTMLElement && target.closest("button, a")) return;
      event.preventDefault();
      this.trySubmit();
    } else if (event.key === "s" || event.key === "S") {
      event.preventDefault();
      if (!this.busy) this.options.skip();
    }
  }

  /** Shown on screen: focus goes to the heading, so the number keys work at once. */
  shown() {
    this.heading.focus({ preventScroll: true });
  }

  park() {
    return false; // a listwise task is not resumed after a reload
  }

  discard() {}
}

"""`HumanEvalCallback`: people compare the policy with an anchor every N steps of a Hugging Face / TRL trainer,
without holding a step back, and their verdict lands in the trainer's own logs.

A checkpoint step generates completions of the eval's prompts with the current model (the one cost a step pays,
and it is the user's generation), then hands them to a background thread that submits them; another thread
polls the eval's history, and the next `on_log` carries the newest human results (`human/win_rate` with its
interval, per tag, the checkpoint's Bradley–Terry score, the sentinel's verdict). Nothing in a step waits on
the network: the callback's own time is measured (`overhead`) and kept under 50 ms by construction.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

from transformers import TrainerCallback

Generate = Callable[[Any, list[Any]], Sequence[str]]
Metadata = Callable[[Any, str], Mapping[str, Any] | None]


class HumanEvalCallback(TrainerCallback):  # type: ignore[misc]
    """Human evals at every `every` steps of a trainer (`GRPOTrainer`, `Trainer`, ...).

    Parameters
    ----------
    eval : flowlab.Eval
        The eval made by ``client.evals.create(...)``: its prompts, anchor and tags.
    every : int
        Steps between checkpoints (step ``every``, ``2·every``, ...).
    generate : callable, optional
        ``generate(model, prompts) -> list[str]``, one completion per prompt with the current model. By default
        greedy decoding of ``max_new_tokens`` tokens with the trainer's tokenizer (its chat template for
        conversations).
    prompts : sequence, optional
        What the model is given for each of the eval's prompts, in the eval's order (for example the prompts as
        conversations); by default the eval's own prompts, the text people read.
    metadata : callable, optional
        ``metadata(prompt, completion) -> dict``: private metadata of each completion (a simulated crowd's oracle
        reads ``true_score`` from it).
    on_divergence : "log" or "stop"
        When the sentinel fires (the proxy reward rises while people's win rate does not): log it and warn, or
        also stop training at the next step boundary.
    proxy_key : str
        The trainer's logged metric that is the proxy reward (GRPO logs ``reward``); its latest value goes with
        each checkpoint. None sends none.
    poll : float
        Seconds between looks at the eval's results while training runs.
    prefix : str
        Prefix of the logged metrics.

    Attributes
    ----------
    overhead : list of float
        Seconds each step spent in this callback, generation excluded.
    generation : list of float
        Seconds each checkpoint spent generating.
    submitted : list of int
        The steps submitted as checkpoints.
    diverged_at : int or None
        The checkpoint step at which the sentinel fired.
    """

    def __init__(
        self,
        eval: Any,
        *,
        every: int,
        generate: Generate | None = None,
        prompts: Sequence[Any] | None = None,
        metadata: Metadata | None = None,
        on_divergence: Literal["log", "stop"] = "log",
        proxy_key: str | None = "reward",
        poll: float = 2.0,
        max_new_tokens: int = 64,
        prefix: str = "human/",
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be a number of steps ≥ 1; got {every}.")
        if on_divergence not in ("log", "stop"):
            raise ValueError(f'on_divergence must be "log" or "stop"; got {on_divergence!r}.')
        self.eval = eval
        self.prompts = list(eval.prompts if prompts is None else prompts)
        if len(self.prompts) != len(eval.prompts):
            raise ValueError(
                f"prompts must give the model one prompt for each of the eval's {len(eval.prompts)} prompts, in "
                f"its order; got {len(self.prompts)}."
            )
        self.every = every
        self.generate = generate
        self.metadata = metadata
        self.on_divergence = on_divergence
        self.proxy_key = proxy_key
        self.poll = poll
        self.max_new_tokens = max_new_tokens
        self.prefix = prefix
        self.overhead: list[float] = []
        self.generation: list[float] = []
        self.submitted: list[int] = []
        self.diverged_at: int | None = None
        self.errors: list[BaseException] = []
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowlab-eval-submit")
        self._pending: list[Future[Any]] = []
        self._waiting: tuple[int, list[str]] | None = None
        self._lock = threading.Lock()
        self._latest: dict[str, float] = {}
        self._fresh = False
        self._stop_poll = threading.Event()
        self._poller: threading.Thread | None = None

    # ------------------------------------------------------------ wiring

    def attach(self, trainer: Any) -> HumanEvalCallback:
        """Add this callback to `trainer` first in its list, so the human results this callback puts into a log
        reach the reporting integrations (`report_to`), which otherwise see the log before user callbacks do."""
        callbacks = trainer.callback_handler.callbacks
        if self in callbacks:
            callbacks.remove(self)
        callbacks.insert(0, self)
        return self

    # ------------------------------------------------------------ trainer events

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        start = time.perf_counter()
        generating = 0.0
        step = int(state.global_step)
        self._send_waiting(self._proxy(state.log_history))  # no log came since its step: the latest proxy
        if step % self.every == 0 and step not in self.submitted:
            began = time.perf_counter()
            completions = self._generate(model, kwargs.get("processing_class") or kwargs.get("tokenizer"))
            generating = time.perf_counter() - began
            self.generation.append(generating)
            self.submitted.append(step)
            # Sent with this step's log, which the trainer writes after this call and which holds the step's
            # proxy reward (GRPO's `reward`); without one by the next step, with the latest logged.
            self._waiting = (step, completions)
        with self._lock:
            if self._fresh:
                control.should_log = True  # the newest human results go out with this step's log
            stop = self.diverged_at is not None and self.on_divergence == "stop"
        if stop:
            control.should_training_stop = True
        self.overhead.append(time.perf_counter() - start - generating)
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        start = time.perf_counter()
        with self._lock:
            fresh, latest = self._fresh, dict(self._latest)
            self._fresh = False
        if logs is not None and self._waiting is not None:
            proxy = self._proxy([logs])
            self._send_waiting(proxy if proxy is not None else self._proxy(state.log_history))
        if fresh and logs is not None:
            logs.update(latest)
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(latest)  # the trainer kept its copy before calling back
        if self.overhead:
            self.overhead[-1] += time.perf_counter() - start
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._send_waiting(self._proxy(state.log_history))
        self._stop_poll.set()
        for pending in self._pending:
            pending.result()  # submission errors surface here rather than vanish with the thread
        self._sender.shutdown(wait=True)
        return control

    # ------------------------------------------------------------ the work behind a step

    def _send_waiting(self, proxy: float | None) -> None:
        if self._waiting is None:
            return
        step, completions = self._waiting
        self._waiting = None
        self._pending.append(self._sender.submit(self._submit, step, completions, proxy))
        self._start_polling()

    def _proxy(self, rows: Sequence[Mapping[str, Any]]) -> float | None:
        if self.proxy_key is None:
            return None
        for row in reversed(rows):
            value = row.get(self.proxy_key)
            if isinstance(value, int | float) and math.isfinite(value):
                return float(value)
        return None

    def _generate(self, model: Any, tokenizer: Any) -> list[str]:
        if self.generate is not None:
            completions = [str(c) for c in self.generate(model, list(self.prompts))]
        else:
            if model is None or tokenizer is None:
                raise ValueError("HumanEvalCallback needs generate= where the trainer passes no model or tokenizer.")
            completions = generate_completions(model, tokenizer, self.prompts, max_new_tokens=self.max_new_tokens)
        if len(completions) != len(self.prompts):
            raise ValueError(f"generate returned {len(completions)} completions for {len(self.prompts)} prompts.")
        return completions

    def _submit(self, step: int, completions: list[str], proxy: float | None) -> None:
        metadata = None
        if self.metadata is not None:
            metadata = [self.metadata(p, c) for p, c in zip(self.eval.prompts, completions, strict=True)]
        self.eval.checkpoint(step, completions, proxy_reward=proxy, metadata=metadata)

    def _start_polling(self) -> None:
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll_loop, name="flowlab-eval-poll", daemon=True)
            self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop_poll.wait(self.poll):
            try:
                self.refresh()
            except Exception as exc:  # a network hiccup must not end the trainer's run
                self.errors.append(exc)

    def refresh(self) -> dict[str, float]:
        """Read the eval's history now and keep its newest checkpoint's results for the next log; returns them."""
        frame = self.eval.history()
        latest = summarise(frame, self.prefix)
        diverged = frame.loc[frame["divergence"].astype(bool), "step"] if len(frame) else []
        with self._lock:
            if latest and latest != self._latest:
                self._latest, self._fresh = latest, True
            if len(diverged) and self.diverged_at is None:
                self.diverged_at = int(diverged.iloc[0])
                warnings.warn(
                    f"flowlab: the proxy reward rose while people's win rate did not (eval {self.eval.id}, "
                    f"checkpoint {self.diverged_at}): possible reward hacking"
                    + ("; training stops at the next step." if self.on_divergence == "stop" else "."),
                    stacklevel=1,
                )
        return latest


def summarise(history: Any, prefix: str = "human/") -> dict[str, float]:
    """The newest checkpoint with votes in an eval's history, as flat log metrics: win rate with its interval and
    votes for every prompt and per tag, the checkpoint's Bradley–Terry score, and whether the sentinel has fired."""
    if history is None or len(history) == 0:
        return {}
    voted = history[history["votes"] > 0]
    if len(voted) == 0:
        return {}
    step = int(voted["step"].max())
    rows = voted[voted["step"] == step]
    out: dict[str, float] = {f"{prefix}checkpoint": float(step)}
    for row in rows.itertuples():
        name = "" if row.tag == "all" else f"/{row.tag}"
        out[f"{prefix}win_rate{name}"] = float(row.win_rate)
        if name == "":
            out[f"{prefix}win_low"] = float(row.win_low)
            out[f"{prefix}win_high"] = float(row.win_high)
            out[f"{prefix}votes"] = float(row.votes)
            if row.score is not None and not _nan(row.score):
                out[f"{prefix}score"] = float(row.score)
    out[f"{prefix}divergence"] = float(bool(history["divergence"].astype(bool).any()))
    return out


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def generate_completions(model: Any, tokenizer: Any, prompts: Sequence[Any], *, max_new_tokens: int = 64) -> list[str]:
    """Greedy completions of `prompts` (text, or conversations through the tokenizer's chat template) with the
    model in eval mode, put back in training mode afterwards."""
    import torch

    training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for prompt in prompts:
                if isinstance(prompt, str):
                    ids = tokenizer(prompt, return_tensors="pt").input_ids
                else:
                    ids = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, return_tensors="pt")
                ids = ids.to(model.device)
                pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
                made = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad,
                )
                out.append(tokenizer.decode(made[0, ids.shape[1] :], skip_special_tokens=True))
    finally:
        model.train(training)
    return out

"""flowlab's trainer rows go into TRL's trainers as they are: `preference_rows` into DPOTrainer and RewardTrainer
(which reads `margin`), `sft_rows` into SFTTrainer, `kto_rows` into KTOTrainer, in both the plain-string and the
conversational form.

Each trainer runs one optimisation step on CPU with a tiny randomly initialised Llama and a character-level
tokenizer built here, so nothing is downloaded. The rows go in with their metadata columns (`annotator_id`, `key`,
the source ids, `score`) and no `remove_columns` call: with `remove_unused_columns=True` (the default) the trainers
drop what they do not read, and with `False` their collators ignore it."""

from __future__ import annotations

import copy
import math
import string
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
tokenizers = pytest.importorskip("tokenizers")
huggingface_hub = pytest.importorskip("huggingface_hub")

from flowlab import formats, schemas  # noqa: E402

from .test_formats_rlhf import SPEC, annotation, multi_turn, single_turn  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    # TRL's configs default `gradient_checkpointing`, which transformers is renaming.
    "ignore:`(is_)?gradient_checkpointing` is deprecated:FutureWarning"
)

# A chat template whose prompt with the generation prompt is a prefix of prompt + completion, as TRL expects.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIALS = ["<pad>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
METADATA = {
    "preference": ["chosen_source_id", "rejected_source_id", "annotator_id", "key"],
    "sft": ["source_id", "annotator_id", "key"],
    "kto": ["score", "source_id", "annotator_id", "key"],
    "absolute_kto": ["p_acceptable", "p_acceptable_low", "p_acceptable_high", "confidence", "votes", "key"],
}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub: the libraries are already imported, so set their offline flag as well as the variable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def char_tokenizer() -> Any:
    """One token per printable ASCII character (101 in all with the special tokens), with a chat template."""
    vocab = {t: i for i, t in enumerate(SPECIALS + list(string.printable[:95]))}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex("."), behavior="isolated")
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIALS[3:]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return char_tokenizer()


def tiny_llama(tokenizer: Any, *, reward: bool = False) -> Any:
    """A 2-layer Llama with hidden size 16: a causal LM, or a one-label sequence classifier for reward modelling."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=1,
    )
    return transformers.LlamaForSequenceClassification(config) if reward else transformers.LlamaForCausalLM(config)


def export(conversational: bool) -> tuple[list[schemas.Datapoint], list[schemas.Annotation]]:
    """Two single-turn tasks, whose rows are plain strings; for the conversational form, a multi-turn task with
    media responses joins them. Every annotation selects, rates and rewrites, so every kind of row has a few rows."""
    second = single_turn()
    second.index, second.key, second.prompt = 2, "q2", [schemas.ChatMessage("user", "Name a colour.")]
    second.responses = [
        schemas.Response("model-a", "text", text="Blue."),
        schemas.Response("model-b", "text", text="Seven."),
    ]
    points = [single_turn(), second]
    ratings: dict[str, dict[str, schemas.RatingValue]] = {
        "model-a": {"helpful": 5, "safe": True},
        "model-b": {"helpful": 1, "safe": None},
    }
    annotations = [
        annotation(0, ratings=ratings, rewrites={"model-b": "It is 4."}, likert=2, task_id="t0"),
        annotation(2, ratings=ratings, rewrites={"model-b": "Red."}, likert=1, task_id="t2", annotator="ann-2"),
    ]
    if conversational:
        points.append(multi_turn())
        annotations.append(
            annotation(
                1,
                order=["model-b", "model-a", "model-c"],
                # model-c has no numeric rating: its KTO row is labelled by the selection, with score None
                ratings={"model-a": {"helpful": 4}, "model-b": {"helpful": 2}, "model-c": {"tone": "formal"}},
                rewrites={"model-c": "Woof."},
                selected="model-a",
                task_id="t1",
            )
        )
    return points, annotations


def load(rows: list[dict[str, Any]], kind: str, conversational: bool) -> Any:
    ds = datasets.Dataset.from_list(rows)
    assert ds.num_rows >= 2
    assert set(METADATA[kind]) <= set(ds.column_names)  # no column is removed before training
    assert isinstance(ds[0]["prompt"], list) == conversational
    return ds


def config_kwargs(tmp_path: Path, remove_unused_columns: bool) -> dict[str, Any]:
    return {
        "output_dir": str(tmp_path),
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "bf16": False,  # TRL's configs default to bf16
        "gradient_checkpointing": False,  # TRL's configs default to True; nothing to save on a tiny model
        "disable_tqdm": True,
        "remove_unused_columns": remove_unused_columns,
    }


def assert_trains(trainer: Any) -> None:
    trainer.train()
    assert trainer.state.global_step >= 1
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses and all(math.isfinite(loss) for loss in losses)


FORMS = pytest.mark.parametrize("conversational", [False, True], ids=["plain", "conversational"])
EXTRA_COLUMNS = pytest.mark.parametrize("remove_unused", [True, False], ids=["drop-unused", "keep-unused"])


@FORMS
@EXTRA_COLUMNS
def test_dpo_trainer_accepts_preference_rows(
    tokenizer: Any, tmp_path: Path, conversational: bool, remove_unused: bool
) -> None:
    points, annotations = export(conversational)
    ds = load(formats.preference_rows(points, annotations, spec=SPEC), "preference", conversational)
    model = tiny_llama(tokenizer)
    trainer = trl.DPOTrainer(
        model=model,
        # Without one, DPO loads the reference by the model's hub name, which a model built from a config lacks.
        ref_model=copy.deepcopy(model),
        args=trl.DPOConfig(**config_kwargs(tmp_path, remove_unused), max_length=128),
        train_dataset=ds,
        processing_class=tokenizer,
    )
    assert_trains(trainer)


@FORMS
@EXTRA_COLUMNS
def test_reward_trainer_accepts_preference_rows_and_reads_the_margin(
    tokenizer: Any, tmp_path: Path, conversational: bool, remove_unused: bool
) -> None:
    points, annotations = export(conversational)
    rows = formats.preference_rows(points, annotations, spec=SPEC)
    ds = load(rows, "preference", conversational)
    trainer = trl.RewardTrainer(
        model=tiny_llama(tokenizer, reward=True),
        args=trl.RewardConfig(**config_kwargs(tmp_path, remove_unused), max_length=256),
        train_dataset=ds,
        processing_class=tokenizer,
    )
    assert trainer.train_dataset.num_rows == len(rows)  # none is filtered out as too long
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["margin"].dtype == torch.float32  # the margin reaches the loss
    margins = [r["margin"] for r in rows]
    assert all(any(m == pytest.approx(want) for want in margins) for m in batch["margin"].tolist())
    assert_trains(trainer)


@FORMS
@EXTRA_COLUMNS
def test_sft_trainer_accepts_sft_rows(
    tokenizer: Any, tmp_path: Path, conversational: bool, remove_unused: bool
) -> None:
    points, annotations = export(conversational)
    ds = load(formats.sft_rows(points, annotations, spec=SPEC), "sft", conversational)
    trainer = trl.SFTTrainer(
        model=tiny_llama(tokenizer),
        args=trl.SFTConfig(**config_kwargs(tmp_path, remove_unused), max_length=128),
        train_dataset=ds,
        processing_class=tokenizer,
    )
    assert trainer.completion_only_loss  # a prompt-completion dataset: the loss covers the rewrite only
    assert_trains(trainer)


@FORMS
@EXTRA_COLUMNS
def test_kto_trainer_accepts_kto_rows(
    tokenizer: Any, tmp_path: Path, conversational: bool, remove_unused: bool
) -> None:
    points, annotations = export(conversational)
    ds = load(formats.kto_rows(points, annotations, spec=SPEC), "kto", conversational)
    assert set(ds["label"]) == {True, False}
    assert (None in ds["score"]) == conversational  # a nullable float column does not get in the way
    model = tiny_llama(tokenizer)
    trainer = trl.KTOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),  # as for DPO
        args=trl.KTOConfig(**config_kwargs(tmp_path, remove_unused), max_length=128),
        train_dataset=ds,
        processing_class=tokenizer,
    )
    assert_trains(trainer)


@EXTRA_COLUMNS
def test_kto_trainer_accepts_an_absolute_ranking_items_kto_rows(
    tokenizer: Any, tmp_path: Path, remove_unused: bool
) -> None:
    """`acceptability_kto_rows` (an absolute ranking flow's KTO rows, labelled by P(acceptable)) train as they are."""
    import numpy as np

    from flowlab import ranking

    keys = ["Hello there!", "Go away.", "Nice to meet you.", "Whatever."]
    wins = np.zeros((4, 4))
    for good in (0, 2):
        for bad in (1, 3):
            wins[good, bad] = 3
    fit = ranking.fit_absolute(wins, 4)
    rows = [
        schemas.DatapointResult(
            key=k,
            index=i,
            score=float(fit.scores[i]),
            elo=float(fit.elo[i]),
            ci_low=0.0,
            ci_high=0.0,
            rank=1,
            rank_low=1,
            rank_high=4,
            votes=6,
            wins=0.0,
            p_acceptable=float(fit.p_acceptable[i]),
            p_acceptable_low=float(fit.p_low[i]),
            p_acceptable_high=float(fit.p_high[i]),
        )
        for i, k in enumerate(keys)
    ]
    results = schemas.ItemResults("i", "Completed", 12, False, rows, 1)
    points = [schemas.Datapoint(index=i, key=k, kind="text", text=k) for i, k in enumerate(keys)]
    ds = load(formats.acceptability_kto_rows(points, results, prompt="Greet me."), "absolute_kto", False)
    assert ds["label"] == [True, False, True, False]
    model = tiny_llama(tokenizer)
    trainer = trl.KTOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=trl.KTOConfig(**config_kwargs(tmp_path, remove_unused), max_length=128),
        train_dataset=ds,
        processing_class=tokenizer,
    )
    assert_trains(trainer)

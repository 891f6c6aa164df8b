"""flowlab's trainer rows go into TRL's trainers as they are: `preference_rows` into DPOTrainer and RewardTrainer,
`sft_rows` into SFTTrainer, `kto_rows` into KTOTrainer, in both the plain-string and the conversational form.

Each trainer runs one optimisation step on CPU with a tiny randomly initialised Llama and a character-level
tokenizer built here, so nothing is downloaded. The rows go in with their metadata columns (`annotator_id`, `key`,
the source ids, `score`): the trainers keep only the columns they read and drop the rest."""

from __future__ import annotations

import copy
import math
import os
import string
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach a hub; set before the Hugging Face libraries load

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
tokenizers = pytest.importorskip("tokenizers")

from flowlab import formats, schemas  # noqa: E402

from .test_formats_rlhf import SPEC, annotation, multi_turn, single_turn  # noqa: E402

# A chat template whose prompt (with the generation prompt) is a prefix of prompt + completion, as TRL expects.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIALS = ["<pad>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]


def char_tokenizer() -> Any:
    """One token per printable ASCII character, plus the special tokens the chat template uses."""
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


def tiny_llama(tokenizer: Any, *, num_labels: int | None = None) -> Any:
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
    )
    if num_labels is None:
        return transformers.LlamaForCausalLM(config)
    config.num_labels = num_labels
    return transformers.LlamaForSequenceClassification(config)


def export(conversational: bool) -> tuple[list[schemas.Datapoint], list[schemas.Annotation]]:
    """Two single-turn tasks for the plain-string form; a multi-turn task with media responses joins them for the
    conversational form. Every annotation selects, rates and rewrites, so every kind of row has several rows."""
    first = single_turn()
    second = single_turn()
    second.index, second.key, second.prompt = 2, "q2", [schemas.ChatMessage("user", "Name a colour.")]
    second.responses = [
        schemas.Response("model-a", "text", text="Blue."),
        schemas.Response("model-b", "text", text="Seven."),
    ]
    points = [first, second]
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
                ratings={"model-a": {"helpful": 4}, "model-b": {"helpful": 2}, "model-c": {"helpful": 1}},
                rewrites={"model-c": "Woof."},
                selected="model-a",
                task_id="t1",
            )
        )
    return points, annotations


def rows_dataset(rows: list[dict[str, Any]], conversational: bool) -> Any:
    ds = datasets.Dataset.from_list(rows)
    assert ds.num_rows >= 2
    assert isinstance(ds[0]["prompt"], list) == conversational
    return ds


def common_args(tmp_path: Any) -> dict[str, Any]:
    return {
        "output_dir": str(tmp_path),
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def assert_trained(trainer: Any) -> None:
    trainer.train()
    assert trainer.state.global_step >= 1
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses and all(math.isfinite(loss) for loss in losses)


FORMS = pytest.mark.parametrize("conversational", [False, True], ids=["plain", "conversational"])


@FORMS
def test_dpo_trainer_accepts_preference_rows(tokenizer: Any, tmp_path: Any, conversational: bool) -> None:
    points, annotations = export(conversational)
    rows = formats.preference_rows(points, annotations, spec=SPEC)
    ds = rows_dataset(rows, conversational)
    model = tiny_llama(tokenizer)
    args = trl.DPOConfig(**common_args(tmp_path), max_length=128)
    trainer = trl.DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),  # DPO would otherwise load the reference by the model's (absent) hub name
        args=args,
        train_dataset=ds,
        processing_class=tokenizer,
    )
    assert_trained(trainer)


@FORMS
def test_reward_trainer_accepts_preference_rows_and_reads_the_margin(
    tokenizer: Any, tmp_path: Any, conversational: bool
) -> None:
    points, annotations = export(conversational)
    rows = formats.preference_rows(points, annotations, spec=SPEC)
    ds = rows_dataset(rows, conversational)
    args = trl.RewardConfig(**common_args(tmp_path), max_length=256)
    trainer = trl.RewardTrainer(
        model=tiny_llama(tokenizer, num_labels=1), args=args, train_dataset=ds, processing_class=tokenizer
    )
    batch = next(iter(trainer.get_train_dataloader()))
    assert "margin" in batch  # the margin column reaches the loss
    assert_trained(trainer)


@FORMS
def test_sft_trainer_accepts_sft_rows(tokenizer: Any, tmp_path: Any, conversational: bool) -> None:
    points, annotations = export(conversational)
    rows = formats.sft_rows(points, annotations, spec=SPEC)
    ds = rows_dataset(rows, conversational)
    args = trl.SFTConfig(**common_args(tmp_path), max_length=128)
    trainer = trl.SFTTrainer(model=tiny_llama(tokenizer), args=args, train_dataset=ds, processing_class=tokenizer)
    assert_trained(trainer)


@FORMS
def test_kto_trainer_accepts_kto_rows(tokenizer: Any, tmp_path: Any, conversational: bool) -> None:
    points, annotations = export(conversational)
    rows = formats.kto_rows(points, annotations, spec=SPEC)
    ds = rows_dataset(rows, conversational)
    assert set(ds["label"]) == {True, False}
    model = tiny_llama(tokenizer)
    args = trl.KTOConfig(**common_args(tmp_path), max_length=128)
    trainer = trl.KTOTrainer(
        model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=ds, processing_class=tokenizer
    )
    assert_trained(trainer)

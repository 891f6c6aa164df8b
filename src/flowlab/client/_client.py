"""The blocking client: `Client`, `client.flow`, `Flow`, `FlowItem`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from flowlab import formats, schemas
from flowlab.client import _core as core
from flowlab.client import _write as write
from flowlab.client._chat import POLL_WAIT, Generate, ModelHandle, chat_options, served_model
from flowlab.client._errors import ValidationError
from flowlab.client._evals import EvalsAPI
from flowlab.client._flows import (
    FlowBase,
    FlowItemBase,
    cap_option,
    classify_options,
    flow_options,
    lease_or_default,
    listwise_options,
    one_of,
    rlhf_options,
    settings_option,
    stop_option,
)
from flowlab.client._models import (
    ClassifyFlowItemResult,
    FlowItemResult,
    FlowItemState,
    FlowItemStatus,
    RlhfFlowItemResult,
    annotators_frame,
    labels_frame,
    matrix_frame,
    votes_frame,
)
from flowlab.client._people import AudiencesAPI, audiences_option
from flowlab.client._projects import ProjectsAPI
from flowlab.client._servers import log_choice, resolve_server
from flowlab.client._transport import SyncTransport
from flowlab.client._validation import ValidationSet, find_sets, warn_dimensions

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from flowlab.client._pay import PayFrame, When


class _ItemCalls(FlowItemBase):
    """What every kind of flow item answers the same way: state, progress, datapoints, stop, watch, wait."""

    def get_results(self, timeout: float | None = None, *, partial: bool = False) -> Any:
        raise NotImplementedError

    def get_status(self) -> FlowItemState:
        """The item's state, as hosted: a string enum (`== FlowItemState.COMPLETED`, `== "Completed"`). Never
        blocks; `get_progress()` has the counts, thresholds and time left."""
        return self.get_progress().state

    def get_progress(self) -> FlowItemStatus:
        """State, votes so far, thresholds, deadline and time left. Never blocks."""
        self.last_status = self._transport.run(core.item_status(self.id))
        return self.last_status

    def get_response_count(self) -> int:
        return self.get_progress().response_count

    def get_datapoints(self) -> list[schemas.Datapoint]:
        return self._transport.run(core.item_detail(self.id)).datapoints

    def get_annotators(self) -> pd.DataFrame:
        """Who answered this item, a row each (most answers first): answers, share of the item, and for pairs
        the share of decisive votes for the side shown first with its 95 % interval (`position_bias` when the
        interval leaves out a half), and the median seconds from the task on screen to the answer."""
        return annotators_frame(self._transport.run(core.item_annotators(self.id)))

    def stop(self) -> FlowItemStatus:
        """End the item now (state Stopped); its votes stay."""
        self.last_status = self._transport.run(core.stop_item(self.id))
        return self.last_status

    def watch(self) -> Iterator[schemas.ItemEvent]:
        """Live updates over SSE, reconnecting and resuming as needed; ends when the item does."""
        return self._transport.stream(core.item_stream(self.id))

    def wait(self, timeout: float | None = None) -> FlowItemStatus:
        """Block until the item ends (or `timeout`), returning its status."""
        self.last_status = self._transport.run(core.wait_for_end(self.id, timeout))
        return self.last_status


class FlowItem(_ItemCalls):
    def get_results(self, timeout: float | None = None, *, partial: bool = False) -> FlowItemResult:
        """Wait for the item to end, then return its rankings; `Timeout` if `timeout` passes first. With `partial=True`
        it never raises `Timeout`: no `timeout` returns what has arrived at once, without waiting; a `timeout` waits up
        to that long for the item to end, then returns what there is (`partial` on the results says the item was still
        running)."""
        return self._transport.run(core.wait_for_results(self.id, timeout, partial))

    def get_win_loss_matrix(self) -> pd.DataFrame:
        """Cell [a, b] counts votes for a over b (a tie counts half to each); the matrix sums to the response count."""
        return matrix_frame(self._transport.run(core.item_matrix(self.id)))

    def get_votes(self) -> pd.DataFrame:
        """Every accepted vote, in order, with the annotator who cast it; for a listwise item, the decisive pairs each
        ranking implies (an order of k gives k(k-1)/2), as the win-loss matrix counts them."""
        return votes_frame(self._transport.run(core.item_votes(self.id)), self.keys)

    def to_preference_pairs(self) -> list[dict[str, Any]]:
        """Every decisive vote as a prompt / chosen / rejected record (the item's context is the prompt)."""
        detail = self._transport.run(core.item_detail(self.id))
        votes = self._transport.run(core.item_votes(self.id))
        return formats.preference_pairs(detail.datapoints, votes, prompt=detail.status.context)

    def to_kto_rows(
        self, *, min_confidence: float = 0.0, timeout: float | None = 0, partial: bool = True
    ) -> list[dict[str, Any]]:
        """An absolute flow's unpaired rows for KTO (`prompt` = the item's context, `completion`, `label` =
        P(acceptable) > 0.5, with `p_acceptable`, its interval and `confidence`), one per voted datapoint;
        `min_confidence=0.975` leaves out those whose 95 % interval straddles 0.5
        (`flowlab.formats.acceptability_kto_rows`). `ValidationError` on a flow made without `absolute=True`."""
        detail = self._transport.run(core.item_detail(self.id))
        results = self.get_results(timeout=timeout, partial=partial)
        try:
            return formats.acceptability_kto_rows(
                detail.datapoints, results, prompt=detail.status.context, min_confidence=min_confidence
            )
        except ValueError as e:
            raise ValidationError(422, str(e)) from None

    def to_rlhf_task(self, *, timeout: float | None = 0, partial: bool = True) -> dict[str, Any]:
        """An RLHF task record (prompt, responses with source ids and ranking annotations, preferred one)."""
        detail = self._transport.run(core.item_detail(self.id))
        results = self.get_results(timeout=timeout, partial=partial)
        return formats.rlhf_task(
            detail.datapoints, results, prompt=detail.status.context, instruction=detail.status.instruction
        )


ItemT = TypeVar("ItemT", bound=FlowItemBase)


class _FlowCalls(FlowBase, Generic[ItemT]):
    """What every kind of flow does the same way: look an item up, delete, watch."""

    _item_type: type[ItemT]

    def get_flow_item(self, item_id: str) -> ItemT:
        return self._item_type(self._transport, self._transport.run(core.item_status(item_id)))

    def delete(self) -> None:
        """Delete the flow with its items and votes."""
        self._transport.run(core.delete_flow(self.id))

    def wait_items(self, items: Iterable[Any], timeout: float | None = None) -> list[FlowItemStatus]:
        """Wait for several items (or ids) at once until all have ended or `timeout` passes; one long poll."""
        return self._transport.run(core.wait_items([i if isinstance(i, str) else i.id for i in items], timeout))

    def watch(self) -> Iterator[schemas.FlowEvent]:
        """Live summaries of the flow's items over SSE; ends if the flow is deleted."""
        return self._transport.stream(core.flow_stream(self.id))


class Flow(_FlowCalls[FlowItem]):
    _item_type = FlowItem

    def refresh(self) -> Flow:
        self.config = self._transport.run(core.get_flow(self.id))
        return self

    def create_new_flow_batch(
        self,
        datapoints: Iterable[Any],
        context: str | None = None,
        context_assets: Iterable[Any] | None = None,
        data_type: str = "media",
        private_metadata: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
        accept_failed_uploads: bool = False,
        time_to_live: float | None = None,
        *,
        pairs: Sequence[tuple[int, int]] | None = None,
    ) -> FlowItem:
        """Push a batch of datapoints (texts, local paths, URLs, or dicts with an `id`), in hosted's argument
        order; `private_metadata` is a list with one dict per datapoint; `pairs` (flowlab's) lists the only
        pairs of positions to compare, e.g. each prompt's two completions for OnlineDPO. Returns at once."""
        status = self._transport.run(
            core.create_item(
                self.id,
                datapoints,
                context=context,
                context_assets=context_assets,
                data_type=data_type,
                private_metadata=private_metadata,
                accept_failed_uploads=accept_failed_uploads,
                time_to_live=time_to_live,
                pairs=pairs,
            )
        )
        return FlowItem(self._transport, status)

    def update_config(
        self,
        instruction: str | None = None,
        starting_elo: float | None = None,
        min_responses: int | None = None,
        max_responses: int | None = None,
        drain_duration: float | None = None,
        serve_timeout: float | None = None,
        *,
        min_response_threshold: int | None = None,
        max_response_threshold: int | None = None,
        **other: Any,
    ) -> Flow:
        """Change the flow's settings (hosted's names, or flowlab's); items created from now on use them,
        existing items keep theirs."""
        changes = {
            "instruction": instruction,
            "starting_elo": starting_elo,
            "min_response_threshold": one_of(min_responses, min_response_threshold, "min_responses"),
            "max_response_threshold": one_of(max_responses, max_response_threshold, "max_responses"),
            "drain_seconds": one_of(drain_duration, other.pop("drain_seconds", None), "drain_duration"),
            "lease_seconds": one_of(serve_timeout, other.pop("lease_seconds", None), "serve_timeout"),
            **other,
        }
        self.config = self._transport.run(core.update_flow(self.id, changes))
        return self

    def get_flow_items(self, amount: int | None = 10, page: int = 1) -> list[FlowItem]:
        """The flow's items, newest first, `amount` a page (pages count from 1); `amount=None` for all."""
        return [FlowItem(self._transport, s) for s in self._transport.run(core.list_items(self.id, amount, page))]


class ClassifyFlowItem(_ItemCalls):
    """A batch of a classify flow: each datapoint collects answers until it has the flow's maximum."""

    def get_results(self, timeout: float | None = None, *, partial: bool = False) -> ClassifyFlowItemResult:
        """Wait for the item to end, then return each datapoint's majority and distribution; `Timeout` if `timeout`
        passes first. With `partial=True` it never raises `Timeout`: no `timeout` returns what has arrived at once,
        without waiting; a `timeout` waits up to that long for the item to end, then returns what there is (`partial` on
        the results says the item was still running)."""
        return self._transport.run(core.wait_for_results(self.id, timeout, partial, core.classify_results))

    def get_win_loss_matrix(self) -> pd.DataFrame:
        raise ValidationError(422, "The win/loss matrix is only available for ranking flow items.")

    def get_labels(self) -> pd.DataFrame:
        """Every accepted answer, in order, with the annotator who gave it."""
        return labels_frame(self._transport.run(core.item_labels(self.id)), self.keys)


class ClassifyFlow(_FlowCalls[ClassifyFlowItem]):
    """A flow whose annotators put each datapoint into one of its categories."""

    _item_type = ClassifyFlowItem

    def refresh(self) -> ClassifyFlow:
        self.config = self._transport.run(core.get_flow(self.id))
        return self

    def create_new_flow_batch(
        self,
        datapoints: Sequence[Any],
        contexts: Sequence[str] | None = None,
        context_assets: Sequence[Sequence[str]] | None = None,
        data_type: str = "media",
        private_metadata: Sequence[Mapping[str, Any]] | None = None,
        accept_failed_uploads: bool = False,
        time_to_live: float | None = None,
    ) -> ClassifyFlowItem:
        """Push datapoints to classify, each with its own context, context assets (a list of texts, paths or
        URLs) and private metadata: lists with one entry per datapoint. `time_to_live=None` takes the server's
        default. Returns at once."""
        status = self._transport.run(
            core.create_item(
                self.id,
                datapoints,
                contexts=contexts,
                datapoint_assets=context_assets,
                private_metadata=private_metadata,
                data_type=data_type,
                accept_failed_uploads=accept_failed_uploads,
                time_to_live=time_to_live,
            )
        )
        return ClassifyFlowItem(self._transport, status)

    def update_config(
        self, drain_duration: float | None = None, *, instruction: str | None = None, **other: Any
    ) -> ClassifyFlow:
        """Change the flow's settings; items created from now on use them, existing items keep theirs."""
        changes = {"drain_seconds": drain_duration, "instruction": instruction, **other}
        self.config = self._transport.run(core.update_flow(self.id, changes))
        return self

    def get_flow_items(self, amount: int | None = 10, page: int = 1) -> list[ClassifyFlowItem]:
        """The flow's items, newest first, `amount` a page (pages count from 1); `amount=None` for all."""
        return [
            ClassifyFlowItem(self._transport, s) for s in self._transport.run(core.list_items(self.id, amount, page))
        ]


class RlhfFlowItem(_ItemCalls):
    """A batch of RLHF tasks: each task collects annotations (ratings, rewrites, a choice, its strength and
    why) until it has the flow's maximum."""

    def get_results(self, timeout: float | None = None, *, partial: bool = False) -> RlhfFlowItemResult:
        """Wait for the item to end, then return the aggregated annotations; `Timeout` if `timeout` passes first. With
        `partial=True` it never raises `Timeout`: no `timeout` returns what has arrived at once, without waiting; a
        `timeout` waits up to that long for the item to end, then returns what there is (`partial` on the results says
        the item was still running)."""
        return self._transport.run(core.wait_for_results(self.id, timeout, partial, core.rlhf_results))

    def get_win_loss_matrix(self) -> pd.DataFrame:
        raise ValidationError(422, "The win/loss matrix is only available for ranking flow items.")

    def get_annotations(self) -> list[schemas.Annotation]:
        """Every completed annotation, in order: each annotator's ratings, rewrites, choice, strength and why."""
        return self._transport.run(core.item_annotations(self.id))

    def _material(self) -> tuple[schemas.ItemDetail, list[schemas.Annotation], schemas.Flow]:
        detail = self._transport.run(core.item_detail(self.id))
        return detail, self.get_annotations(), self._transport.run(core.get_flow(self.flow_id))

    def to_rlhf_records(self) -> list[dict[str, Any]]:
        """One record per completed annotation in the shape of the expanded RLHF task output (threads, turns,
        messages with `{key, value}` annotations; `selected_model_id`, `likert_value`, `justification`)."""
        detail, annotations, flow = self._material()
        names = {a.id: a.name for a in self._transport.run(core.list_annotators())}
        return formats.rlhf_records(
            detail.datapoints,
            annotations,
            item_id=self.id,
            spec=flow.rlhf or schemas.RlhfSpec(),
            contributors=names,
            metadata={"flow_id": self.flow_id, "instruction": detail.status.instruction},
        )

    def to_preference_pairs(self) -> list[dict[str, Any]]:
        """Preference rows (`prompt`, `chosen`, `rejected`, `margin`) for DPO and reward-model trainers."""
        detail, annotations, flow = self._material()
        return formats.preference_rows(detail.datapoints, annotations, spec=flow.rlhf or schemas.RlhfSpec())

    def to_sft_rows(self) -> list[dict[str, Any]]:
        """Prompt-completion rows from the rewrites, for supervised fine-tuning."""
        detail, annotations, flow = self._material()
        return formats.sft_rows(detail.datapoints, annotations, spec=flow.rlhf or schemas.RlhfSpec())

    def to_kto_rows(self) -> list[dict[str, Any]]:
        """Unpaired rows (`prompt`, `completion`, `label`) from the ratings, for KTO."""
        detail, annotations, flow = self._material()
        return formats.kto_rows(detail.datapoints, annotations, spec=flow.rlhf or schemas.RlhfSpec())


class RlhfFlow(_FlowCalls[RlhfFlowItem]):
    """A flow of RLHF tasks: a prompt and several model responses, annotated on the flow's form."""

    _item_type = RlhfFlowItem

    def refresh(self) -> RlhfFlow:
        self.config = self._transport.run(core.get_flow(self.id))
        return self

    def create_new_flow_batch(
        self,
        datapoints: Iterable[Mapping[str, Any]],
        context: str | None = None,
        private_metadata: Mapping[str, Any] | None = None,
        time_to_live: float | None = None,
    ) -> RlhfFlowItem:
        """Push RLHF tasks: `{"id", "prompt": str or [{role, content}, ...], "responses": [{"source_id",
        "content", "private_metadata"}, ...]}`, content as text, a local path or a URL. Returns at once."""
        status = self._transport.run(
            core.create_item(
                self.id,
                datapoints,
                context=context,
                private_metadata=private_metadata,
                time_to_live=time_to_live,
                rlhf=True,
            )
        )
        return RlhfFlowItem(self._transport, status)

    def update_config(self, instruction: str | None = None, **changes: Any) -> RlhfFlow:
        """Change the flow's settings (e.g. `instruction`, `max_response_threshold`, `rlhf`); items created from
        now on use them, existing items keep theirs."""
        self.config = self._transport.run(core.update_flow(self.id, {"instruction": instruction, **changes}))
        return self

    def get_flow_items(self, amount: int | None = 10, page: int = 1) -> list[RlhfFlowItem]:
        """The flow's items, newest first, `amount` a page (pages count from 1); `amount=None` for all."""
        return [RlhfFlowItem(self._transport, s) for s in self._transport.run(core.list_items(self.id, amount, page))]


class ChatFlowItem(_ItemCalls):
    """A batch of chat tasks: each collects annotated conversations until it has the flow's maximum."""

    def get_results(self, timeout: float | None = None, *, partial: bool = False) -> RlhfFlowItemResult:
        """Wait for the item to end, then return the aggregate (RLHF results with the flow's models as every task's
        responses: ratings of each model's replies, how often its branch was chosen, the Likert mean oriented to the
        first model); `Timeout` if `timeout` passes first. With `partial=True` it never raises `Timeout`: no `timeout`
        returns what has arrived at once, without waiting; a `timeout` waits up to that long for the item to end, then
        returns what there is (`partial` on the results says the item was still running)."""
        return self._transport.run(core.wait_for_results(self.id, timeout, partial, core.rlhf_results))

    def get_win_loss_matrix(self) -> pd.DataFrame:
        raise ValidationError(422, "The win/loss matrix is only available for ranking flow items.")

    def get_conversations(self) -> list[schemas.Conversation]:
        """Every annotated conversation, in order: the tree, its branches, the ratings, the choice and why."""
        return self._transport.run(core.item_conversations(self.id))

    def to_chat_records(self) -> list[dict[str, Any]]:
        """One task record per conversation, one thread per branch (see `formats.chat_records`)."""
        detail = self._transport.run(core.item_detail(self.id))
        flow = self._transport.run(core.get_flow(self.flow_id))
        names = {a.id: a.name for a in self._transport.run(core.list_annotators())}
        return formats.chat_records(
            detail.datapoints,
            self.get_conversations(),
            item_id=self.id,
            spec=flow.chat or schemas.ChatSpec(),
            contributors=names,
            metadata={"flow_id": self.flow_id, "instruction": detail.status.instruction},
        )


class ChatFlow(_FlowCalls[ChatFlowItem]):
    """A flow of chat tasks: annotators talk with the flow's models, branch the conversation, and annotate."""

    _item_type = ChatFlowItem

    def refresh(self) -> ChatFlow:
        self.config = self._transport.run(core.get_flow(self.id))
        return self

    @property
    def models(self) -> list[str]:
        return [m.name for m in (self.config.chat or schemas.ChatSpec()).models]

    def serve_model(
        self, generate: Generate, *, model: str | None = None, workers: int = 1, poll_wait: float = POLL_WAIT
    ) -> ModelHandle:
        """Serve `generate(messages) -> str` (or an iterator of text chunks, streamed to the page as they come)
        to this flow's annotators from this process, in `workers` threads; `messages` is the branch so far,
        `[{"role", "content"}, ...]`, ending with the user's turn. `model` names which of the flow's models this
        is (needed when it has several). Returns at once; `handle.stop()` detaches the model."""
        name = served_model(self.config, model)
        return ModelHandle(self.url, self.api_key, self.id, name, generate, workers, poll_wait=poll_wait)

    def get_models(self) -> list[schemas.ChatModelStatus]:
        """Each model, whether it is being served now, by how many workers, and replies waiting."""
        return self._transport.run(core.chat_models(self.id))

    def create_new_flow_batch(
        self,
        datapoints: Iterable[Any],
        context: str | None = None,
        private_metadata: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
        time_to_live: float | None = None,
    ) -> ChatFlowItem:
        """Push chat tasks: `{"id", "messages": [{"role", "content"}, ...] (possibly empty), "guidance"}`.
        Returns at once."""
        status = self._transport.run(
            core.create_item(
                self.id,
                datapoints,
                context=context,
                private_metadata=private_metadata,
                time_to_live=time_to_live,
                chat=True,
            )
        )
        return ChatFlowItem(self._transport, status)

    def update_config(self, instruction: str | None = None, **changes: Any) -> ChatFlow:
        self.config = self._transport.run(core.update_flow(self.id, {"instruction": instruction, **changes}))
        return self

    def get_flow_items(self, amount: int | None = 10, page: int = 1) -> list[ChatFlowItem]:
        return [ChatFlowItem(self._transport, s) for s in self._transport.run(core.list_items(self.id, amount, page))]


class WriteFlowItem(_ItemCalls):
    """A batch of prompts: each collects written demonstrations until it has the flow's maximum."""

    def get_results(self, timeout: float | None = None, *, partial: bool = False) -> schemas.WriteResults:
        """Wait for the item to end, then return the demonstrations per prompt (author, text, length, seconds);
        `Timeout` if `timeout` passes first. `partial=True` as for ranking items."""
        return self._transport.run(core.wait_for_results(self.id, timeout, partial, write.write_results))

    def get_win_loss_matrix(self) -> pd.DataFrame:
        raise ValidationError(422, "The win/loss matrix is only available for ranking flow items.")

    def get_demonstrations(self) -> list[schemas.Demonstration]:
        """Every demonstration as stored, in order: author, text, when shown and answered, pasted characters."""
        return self._transport.run(write.demonstrations(self.id))

    def to_sft_rows(self) -> list[dict[str, Any]]:
        """TRL's conversational SFT rows: `{"messages": [...prompt, {"role": "assistant", ...}], ...}`."""
        return self._transport.run(write.sft_rows(self.id))

    def to_rlhf_records(self) -> list[dict[str, Any]]:
        """Seed-001 task records, each demonstration a response with `source_id` "human:<annotator id>"."""
        return self._transport.run(write.records(self.id, self.flow_id))

    def to_rows(self) -> list[dict[str, Any]]:
        """A row per demonstration: prompt, demonstration, author, seconds, chars, pasted_chars."""
        return self._transport.run(write.rows(self.id))

    def best_demonstrations(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """The best demonstration per prompt, once the item and its review item (if the flow has a review stage)
        have ended: the one reviewers chose most often (see `formats.best_demonstrations`)."""
        return self._transport.run(write.best(self.id, timeout))

    def review_item(self) -> RlhfFlowItem | None:
        """The review flow's item made from this one when it ended (None: no review, or not yet)."""
        review_id = self.get_results(partial=True).review_item_id
        if review_id is None:
            return None
        return RlhfFlowItem(self._transport, self._transport.run(core.item_status(review_id)))


class WriteFlow(_FlowCalls[WriteFlowItem]):
    """A flow of prompts that people answer by writing the response (demonstrations for SFT)."""

    _item_type = WriteFlowItem

    def refresh(self) -> WriteFlow:
        self.config = self._transport.run(core.get_flow(self.id))
        return self

    def create_new_flow_batch(
        self,
        datapoints: Iterable[Any],
        context: str | None = None,
        private_metadata: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
        time_to_live: float | None = None,
    ) -> WriteFlowItem:
        """Push prompts: strings, or `{"id", "prompt": str or [{role, content}, ...], "guidance", "reference",
        "responses": [{"source_id", "content"}, ...]}` (model responses shown beside the demonstrations in the
        review stage). Returns at once."""
        status = self._transport.run(
            core.create_item(
                self.id,
                datapoints,
                context=context,
                private_metadata=private_metadata,
                time_to_live=time_to_live,
                write=True,
            )
        )
        return WriteFlowItem(self._transport, status)

    def review_with(
        self, flow: Any, *, include_model_responses: bool = True, time_to_live: float | None = None
    ) -> WriteFlow:
        """Chain a review stage: when an item of this flow ends, each prompt's demonstrations (with its model
        responses, if `include_model_responses`) become one task of a new item of `flow`, an RLHF flow (None:
        no review from now on). Items created from now on use it."""
        change = write.set_review(self.config, flow, include_model_responses, time_to_live)
        self.config = self._transport.run(change)
        return self

    def update_config(self, instruction: str | None = None, **changes: Any) -> WriteFlow:
        self.config = self._transport.run(core.update_flow(self.id, {"instruction": instruction, **changes}))
        return self

    def get_flow_items(self, amount: int | None = 10, page: int = 1) -> list[WriteFlowItem]:
        return [WriteFlowItem(self._transport, s) for s in self._transport.run(core.list_items(self.id, amount, page))]


def _flow_object(
    transport: SyncTransport, config: schemas.Flow
) -> Flow | ClassifyFlow | RlhfFlow | ChatFlow | WriteFlow:
    if config.kind == "write":
        return WriteFlow(transport, config)
    if config.kind == "chat":
        return ChatFlow(transport, config)
    if config.kind == "rlhf":
        return RlhfFlow(transport, config)
    return ClassifyFlow(transport, config) if config.kind == "classify" else Flow(transport, config)


class FlowsAPI:
    """`client.flow`: create, find and warm up flows."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create_ranking_flow(
        self,
        name: str,
        instruction: str,
        max_response_threshold: int = 100,
        min_response_threshold: int | None = None,
        validation_set_id: str | None = None,
        settings: Sequence[Any] | None = None,
        drain_duration: float | None = None,
        serve_timeout: float | None = None,
        *,
        allow_ties: bool = False,
        pair_selection: str = "uniform",
        lease_seconds: float | None = None,
        drain_seconds: float | None = None,
        render_markdown: bool = False,
        validation_pairs: Iterable[Any] | None = None,
        gold_rate: float = 0.1,
        starting_elo: float = 1200.0,
        stop_when: str | None = None,
        stop_k: int = 1,
        stop_confidence: float = 0.95,
        max_votes_per_annotator: int | None = None,
        audiences: Sequence[Any] | None = None,
        absolute: bool = False,
    ) -> Flow:
        """Create a pairwise ranking flow, with hosted's arguments in hosted's order (`drain_duration` and
        `serve_timeout` are flowlab's `drain_seconds` and `lease_seconds`). `min_response_threshold` defaults
        to the maximum, or to 0 with a stopping rule.

        `stop_when` ends each item as soon as its question is answered at `stop_confidence` instead of
        spending votes up to the maximum: `"top"` (the best datapoint is above every other), `"top_k"` (the
        best `stop_k` are above the rest) or `"order"` (every datapoint is above the next). The item then
        completes and its status's `reason` says when and why.

        An item's votes are independent judgements: nobody is shown the same pair of an item twice, and one
        person gives at most `max_votes_per_annotator` of its votes (default: a third of the maximum, so at
        least three people share every item); an item whose people have given their share waits for others,
        and its status's `waiting` says so.

        With `absolute=True` annotators may also answer "both good" or "both bad", and results give each
        datapoint `p_acceptable`, the probability it is judged acceptable, with an interval
        (`flowlab.ranking.fit_absolute`); `results.rewards()` then carries that level."""
        options = flow_options(
            allow_ties,
            pair_selection,
            lease_or_default(one_of(serve_timeout, lease_seconds, "serve_timeout")),
            one_of(drain_duration, drain_seconds, "drain_duration"),
            render_markdown,
            validation_pairs,
            gold_rate,
        ) | {
            "starting_elo": starting_elo,
            **settings_option(settings, stacklevel=3),
            **stop_option(stop_when, stop_k, stop_confidence),
        }
        options |= cap_option(max_votes_per_annotator)
        if absolute:
            options["absolute"] = True
        if validation_set_id is not None:
            options["validation_set_id"] = validation_set_id
        config = self._transport.run(
            core.create_flow(
                name, instruction, max_response_threshold, min_response_threshold, options | audiences_option(audiences)
            )
        )
        return Flow(self._transport, config)

    def create_listwise_flow(
        self,
        name: str,
        instruction: str,
        k: int = 4,
        mode: str = "order",
        max_response_threshold: int = 40,
        min_response_threshold: int | None = None,
        *,
        lease_seconds: float | None = None,
        drain_seconds: float | None = None,
        render_markdown: bool = False,
        starting_elo: float = 1200.0,
        stop_when: str | None = None,
        stop_k: int = 1,
        stop_confidence: float = 0.95,
        max_votes_per_annotator: int | None = None,
        audiences: Sequence[Any] | None = None,
    ) -> Flow:
        """Create a listwise ranking flow: each task shows `k` (3 to 8) of an item's datapoints, and the annotator
        orders them best first (`mode="order"`) or picks the best and the worst (`mode="best_worst"`). Which k
        are shown is chosen from the current Plackett–Luce fit (the k whose order is least certain, a fifth
        drawn uniformly); nobody is shown the same k-set of an item twice, and one person gives at most
        `max_votes_per_annotator` of an item's answers (default: a third of the maximum).

        Thresholds count answers (rankings) per item. Results have the shape of ranking flows' (`datapoints`
        key → Elo, Plackett–Luce scores with 95 % intervals and rank ranges in `to_dataframe()`, `rewards()`);
        `stop_when` ("top", "top_k", "order") ends an item once its question is settled. The win-loss matrix
        counts the pairs the rankings imply, so it sums to more than the response count."""
        options = listwise_options(
            k, mode, lease_seconds, drain_seconds, render_markdown, starting_elo, stop_when, stop_k,
            stop_confidence, max_votes_per_annotator,
        )  # fmt: skip
        config = self._transport.run(
            core.create_flow(
                name, instruction, max_response_threshold, min_response_threshold, options | audiences_option(audiences)
            )
        )
        return Flow(self._transport, config)

    def create_classify_flow(
        self,
        name: str,
        instruction: str,
        categories: Sequence[str] | Sequence[tuple[str, str]],
        max_responses_per_datapoint: int = 15,
        min_responses_per_datapoint: int = 10,
        validation_set_id: str | None = None,
        settings: Sequence[Any] | None = None,
        drain_duration: float | None = None,
        serve_timeout: float | None = None,
        *,
        gold_rate: float = 0.1,
        max_votes_per_annotator: int | None = None,
        audiences: Sequence[Any] | None = None,
    ) -> ClassifyFlow:
        """Create a classify flow: 2 to 8 categories, given as labels or (label, value) pairs; each datapoint
        collects answers until it has `max_responses_per_datapoint`, and an item that runs out of time is
        Completed when it averages `min_responses_per_datapoint` per datapoint. With a validation set, a
        `gold_rate` share of tasks are its gold labels.
        Nobody answers a datapoint twice; `max_votes_per_annotator` caps the datapoints of an item one person answers
        (default: no cap)."""
        options = classify_options(
            categories,
            max_responses_per_datapoint,
            min_responses_per_datapoint,
            validation_set_id,
            settings,
            drain_duration,
            serve_timeout,
        ) | {"gold_rate": gold_rate}
        max_votes, min_votes = options.pop("max_response_threshold"), options.pop("min_response_threshold")
        config = self._transport.run(
            core.create_flow(
                name,
                instruction,
                max_votes,
                min_votes,
                options | cap_option(max_votes_per_annotator) | audiences_option(audiences),
            )
        )
        return ClassifyFlow(self._transport, config)

    def create_rlhf_flow(
        self,
        name: str,
        instruction: str,
        dimensions: Sequence[Any] | None = None,
        rewrite: str = "optional",
        likert_scale: int = 7,
        justification: str = "required",
        max_response_threshold: int = 3,
        min_response_threshold: int | None = None,
        *,
        justification_min_chars: int = 20,
        max_rewrite_chars: int = 20_000,
        lease_seconds: float | None = None,
        drain_seconds: float | None = None,
        settings: Sequence[Any] | None = None,
        max_votes_per_annotator: int | None = None,
        audiences: Sequence[Any] | None = None,
    ) -> RlhfFlow:
        """Create an RLHF flow (seed 001): annotators rate each response of a task on `dimensions` (None: the
        seed's four on a 1-5 scale; or keys, dicts, `schemas.Dimension`s: scale, boolean, category or text,
        optionally "not applicable"), may rewrite responses (`rewrite`: off, optional, required — the chosen
        one), pick the better one, say how strongly on a `likert_scale` (points; 0: not asked; tasks with two
        responses) and why (`justification`: off, optional, required, at least `justification_min_chars`).
        Thresholds count completed annotations per task; `min_response_threshold` defaults to the maximum.
        Leases last 10 minutes unless `lease_seconds` says otherwise.
        Nobody annotates a task twice; `max_votes_per_annotator` caps the tasks of an item one person annotates
        (default: no cap)."""
        options = rlhf_options(
            dimensions,
            rewrite,
            likert_scale,
            justification,
            justification_min_chars,
            max_rewrite_chars,
            lease_seconds,
            drain_seconds,
            settings,
        )
        config = self._transport.run(
            core.create_flow(
                name,
                instruction,
                max_response_threshold,
                min_response_threshold,
                options | cap_option(max_votes_per_annotator) | audiences_option(audiences),
            )
        )
        return RlhfFlow(self._transport, config)

    def create_chat_flow(
        self,
        name: str,
        instruction: str,
        models: Sequence[Any] | None = None,
        max_turns: int = 10,
        dimensions: Sequence[Any] | None = None,
        likert_scale: int = 7,
        justification: str = "optional",
        max_response_threshold: int = 1,
        min_response_threshold: int | None = None,
        *,
        justification_min_chars: int = 0,
        max_reply_chars: int = 20_000,
        reply_timeout: float = 60.0,
        max_branches: int = 8,
        lease_seconds: float | None = None,
        drain_seconds: float | None = None,
        settings: Sequence[Any] | None = None,
        max_votes_per_annotator: int | None = None,
        audiences: Sequence[Any] | None = None,
    ) -> ChatFlow:
        """Create a chat flow (seed 002's on-demand completions): annotators talk with the flow's `models`
        (names; None for one model named "model"), each served by `flow.serve_model(generate, model=NAME)`; they
        write up to `max_turns` user turns a branch, may edit an earlier turn or regenerate a reply (a new
        branch, at most `max_branches`), rate every reply on `dimensions` (as for RLHF flows; None: the seed's
        four), and with two or more branches choose the better one, say how strongly (`likert_scale`, two
        branches) and why (`justification`). A model silent for `reply_timeout` seconds, failing, or replying
        with something not text or longer than `max_reply_chars` is refused with a reason and a retry.
        Thresholds count conversations per task; leases last 15 minutes unless `lease_seconds` says otherwise,
        and waiting for a model does not use them up.
        Nobody takes a task twice; `max_votes_per_annotator` caps the tasks of an item one person takes (default: no
        cap)."""
        options = chat_options(
            models,
            max_turns,
            dimensions,
            likert_scale,
            justification,
            justification_min_chars,
            max_reply_chars,
            reply_timeout,
            max_branches,
            lease_seconds,
            drain_seconds,
            settings,
        )
        config = self._transport.run(
            core.create_flow(
                name,
                instruction,
                max_response_threshold,
                min_response_threshold,
                options | cap_option(max_votes_per_annotator) | audiences_option(audiences),
            )
        )
        return ChatFlow(self._transport, config)

    def create_write_flow(
        self,
        name: str,
        instruction: str,
        min_chars: int = 1,
        max_chars: int = 4000,
        allow_paste: bool = True,
        max_response_threshold: int = 1,
        min_response_threshold: int | None = None,
        *,
        review: Any = None,
        include_model_responses: bool = True,
        review_time_to_live: float | None = None,
        lease_seconds: float | None = None,
        drain_seconds: float | None = None,
        settings: Sequence[Any] | None = None,
        max_votes_per_annotator: int | None = None,
        audiences: Sequence[Any] | None = None,
    ) -> WriteFlow:
        """Create a write flow (seed 002's "prompts for annotators to respond to"): annotators read a prompt (with
        its guidance and reference material) and write the response, `min_chars` to `max_chars` characters;
        with `allow_paste=False` the page blocks pasting and the server refuses text said to be pasted.
        Thresholds count demonstrations per prompt (different people each). With `review` (an RLHF flow), each
        ended item's demonstrations become an item of that flow, so people rate what people wrote; see
        `WriteFlowItem.best_demonstrations()`. Leases last 15 minutes unless `lease_seconds` says otherwise.
        `max_votes_per_annotator` caps the prompts of an item one person answers (default: no cap)."""
        options = write.write_options(
            min_chars,
            max_chars,
            allow_paste,
            review,
            include_model_responses,
            review_time_to_live,
            lease_seconds,
            drain_seconds,
            settings,
        )
        config = self._transport.run(
            core.create_flow(
                name,
                instruction,
                max_response_threshold,
                min_response_threshold,
                options | cap_option(max_votes_per_annotator) | audiences_option(audiences),
            )
        )
        return WriteFlow(self._transport, config)

    def create_validation_set(self, name: str, pairs: Iterable[Any]) -> ValidationSet:
        """Keep gold pairs under an id — `(a, b, answer)` tuples or dicts, `answer` "a", "b" or "tie" — for
        `create_ranking_flow(validation_set_id=...)`; each flow copies the pairs when it is created."""
        return ValidationSet(self._transport, self._transport.run(core.create_validation_set(name, pairs)))

    def wait_items(self, items: Iterable[Any], timeout: float | None = None) -> list[FlowItemStatus]:
        """Wait for several items (or their ids) at once until every one has ended or `timeout` passes; their
        statuses, in order. One long poll for all of them, not one per item."""
        ids = [i if isinstance(i, str) else i.id for i in items]
        return self._transport.run(core.wait_items(ids, timeout))

    def preheat(self) -> schemas.Preheated:
        """Warm the server and wake idle annotators before a high-cadence phase."""
        return self._transport.run(core.preheat())

    def get_flow_by_id(self, flow_id: str) -> Flow | ClassifyFlow | RlhfFlow | ChatFlow | WriteFlow:
        return _flow_object(self._transport, self._transport.run(core.get_flow(flow_id)))

    def find_flows(
        self, name: str = "", amount: int = 10, page: int = 1
    ) -> list[Flow | ClassifyFlow | RlhfFlow | ChatFlow | WriteFlow]:
        """Your flows whose name contains `name`, newest first, `amount` a page (pages count from 1)."""
        flows = self._transport.run(core.find_flows(amount, page, name))
        return [_flow_object(self._transport, f) for f in flows]


class KeysAPI:
    """`client.keys`: researcher API keys. The admin sees and manages every key; a researcher their own."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(self, name: str) -> schemas.KeyCreated:
        """Make another researcher key (admin key only); its secret is shown only here."""
        return self._transport.run(core.create_key(name))

    def list(self) -> list[schemas.KeyInfo]:
        return self._transport.run(core.list_keys())

    def revoke(self, key_id: str) -> None:
        """Stop a researcher's key working (admin key only); its flows stay."""
        self._transport.run(core.revoke_key(key_id))

    def rotate(self, key_id: str) -> schemas.KeyCreated:
        """A new secret for a key (the admin's, or your own); the old one stops working at once."""
        return self._transport.run(core.rotate_key(key_id))


class AnnotatorsAPI:
    """`client.annotators`: join links for people, and their quality."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(self, name: str) -> schemas.AnnotatorCreated:
        return self._transport.run(core.create_annotator(name))

    def list(self) -> list[schemas.AnnotatorStats]:
        return self._transport.run(core.list_annotators())

    def revoke(self, annotator_id: str) -> None:
        self._transport.run(core.revoke_annotator(annotator_id))

    def suspend(self, annotator_id: str) -> schemas.AnnotatorStats:
        """No more tasks for them; their tasks in hand go back to the pool. Their answers are kept."""
        return self._transport.run(core.set_standing(annotator_id, "suspend"))

    def reinstate(self, annotator_id: str) -> schemas.AnnotatorStats:
        """Undo a suspension: they are served tasks again."""
        return self._transport.run(core.set_standing(annotator_id, "reinstate"))

    def of_item(self, item: Any) -> pd.DataFrame:
        """Who answered an item (an item or its id), as `item.get_annotators()` gives it: each person's answers and
        share, for pairs their left-right habit with its 95 % interval, and their median seconds per task."""
        return annotators_frame(self._transport.run(core.item_annotators(getattr(item, "id", item))))

    def report(self, audience: Any = None, since: When = None, until: When = None) -> pd.DataFrame:
        """Each person's work over the answers they gave in [since, until) (seconds since the epoch, datetimes
        or ISO strings), of one audience or all yours: a DataFrame indexed by annotator id with answers, gold and
        quiz answers, gold agreement, agreement with the others' majority, median seconds per task, active minutes
        (time on task: answered - shown - hidden, each task capped at five minutes), first and last seen, state,
        audience and participant id. People with no answer in the window are left out."""
        from flowlab.client._pay import annotators_report

        return self._transport.run(annotators_report(audience, since, until))

    def pay(
        self,
        per_answer: float | None = None,
        per_hour: float | None = None,
        bonus: schemas.Bonus | Mapping[str, Any] | None = None,
        audience: Any = None,
        since: When = None,
        until: When = None,
        *,
        pay_suspended: bool = False,
        pay_screened_out: bool = False,
        csv: str | Path | None = None,
    ) -> PayFrame:
        """What each person is owed under a rule: `per_answer` for every paid answer, `per_hour` for every active
        hour, and `bonus` (`{"amount": 1.0, "gold_above": 0.8, "min_gold": 1}`) to those whose gold agreement is
        above the mark. A suspended person's answers after their suspension are not paid unless `pay_suspended`;
        a screened-out person's quiz answers are not paid unless `pay_screened_out`. Returns a `PayFrame` (its
        `to_prolific_csv()` is Prolific's bulk bonus file); `csv=` writes that file too."""
        from flowlab.client._pay import annotators_pay

        op = annotators_pay(per_answer, per_hour, bonus, audience, since, until, pay_suspended, pay_screened_out)
        owed = self._transport.run(op)
        if csv is not None:
            owed.to_prolific_csv(csv)
        return owed


class ValidationAPI:
    """`client.validation`: gold questions kept under an id, in hosted's calls. Flows refer to a set by id
    (`create_ranking_flow(validation_set_id=...)`, `create_classify_flow(validation_set_id=...)`) and copy
    its questions when they are created; a flow mixes them into its tasks at its `gold_rate`."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create_classification_set(
        self,
        name: str,
        instruction: str,
        answer_options: Sequence[str],
        datapoints: Sequence[Any],
        truths: Sequence[Sequence[str]],
        data_type: str = "media",
        contexts: Sequence[str] | None = None,
        media_contexts: Sequence[Sequence[Any]] | None = None,
        explanations: Sequence[str | None] | None = None,
        dimensions: Sequence[str] = (),
    ) -> ValidationSet:
        """Gold labels for classify flows: each datapoint with the answer options that count as right, and
        what an annotator who answers otherwise is told."""
        warn_dimensions(dimensions, stacklevel=2)
        info = self._transport.run(
            core.classification_set(
                name,
                instruction,
                answer_options,
                datapoints,
                truths,
                data_type,
                contexts,
                media_contexts,
                explanations,
                dimensions,
            )
        )
        return ValidationSet(self._transport, info)

    def create_compare_set(
        self,
        name: str,
        instruction: str,
        datapoints: Sequence[Sequence[Any]],
        truths: Sequence[Any],
        data_type: str = "media",
        contexts: Sequence[str] | None = None,
        media_contexts: Sequence[Sequence[Any]] | None = None,
        explanation: Sequence[str | None] | None = None,
        dimensions: Sequence[str] = (),
    ) -> ValidationSet:
        """Gold pairs for ranking flows: each comparison's two datapoints and the better of them."""
        warn_dimensions(dimensions, stacklevel=2)
        info = self._transport.run(
            core.compare_set(
                name, instruction, datapoints, truths, data_type, contexts, media_contexts, explanation, dimensions
            )
        )
        return ValidationSet(self._transport, info)

    def get_validation_set_by_id(self, validation_set_id: str) -> ValidationSet:
        return ValidationSet(self._transport, self._transport.run(core.get_validation_set(validation_set_id)))

    def find_validation_sets(self, name: str = "", amount: int = 10, page: int = 1) -> list[ValidationSet]:
        """Your validation sets whose name contains `name`, newest first, `amount` a page (pages count from 1)."""
        found = self._transport.run(find_sets(name, amount, page))
        return [ValidationSet(self._transport, info) for info in found]


class WebhooksAPI:
    """`client.webhooks`: push events to a URL instead of polling. Each delivery is signed in the Standard
    Webhooks scheme with the endpoint's secret (check it with `flowlab.verify_webhook`), retried with backoff
    until a 2xx comes back, and logged (`deliveries`)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def add(
        self,
        url: str,
        *,
        events: Sequence[str] = ("item.completed",),
        flow_id: str | None = None,
        description: str = "",
    ) -> schemas.WebhookCreated:
        """Send `events` ("item.completed", "answer.created") of every flow of this key, or of `flow_id`
        only, to `url`. The signing secret is in the answer, and only there."""
        return self._transport.run(core.add_webhook(url, events, flow_id, description))

    def list(self) -> list[schemas.Webhook]:
        return self._transport.run(core.list_webhooks())

    def remove(self, webhook_id: str) -> None:
        self._transport.run(core.remove_webhook(webhook_id))

    def deliveries(self, webhook_id: str, limit: int = 50) -> list[schemas.WebhookDelivery]:
        """The endpoint's latest deliveries, newest first."""
        return self._transport.run(core.webhook_deliveries(webhook_id, limit))

    def test(self, webhook_id: str) -> schemas.WebhookDelivery:
        """Send a `webhook.test` event to the endpoint now."""
        return self._transport.run(core.test_webhook(webhook_id))


class Client:
    """Talks to a flowlab server: `url`/`api_key`, else FLOWLAB_URL/FLOWLAB_API_KEY, else the `flowlab serve`
    running here (the newest), else an embedded local one. `client.server.reason` says which and why."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = resolve_server(url, api_key, test_transport=transport is not None)  # why: .server.reason
        log_choice(self.server)
        self.url, self.api_key = str(self.server.url), self.server.api_key
        self._transport = SyncTransport(self.url, self.api_key, timeout, transport)
        self.flow = FlowsAPI(self._transport)
        self.validation = ValidationAPI(self._transport)
        self.keys = KeysAPI(self._transport)
        self.webhooks = WebhooksAPI(self._transport)
        self.projects = ProjectsAPI(self._transport)
        self.evals = EvalsAPI(self._transport)
        self.annotators = AnnotatorsAPI(self._transport)
        self.audiences = AudiencesAPI(self._transport)

    def create_api_key(self, name: str) -> schemas.KeyCreated:
        """Make another researcher key (admin key only)."""
        return self._transport.run(core.create_key(name))

    def me(self) -> schemas.Me:
        return self._transport.run(core.me())

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self.url}>"

"""Chat tasks, the fourth task kind (seed 002's on-demand completions): an annotator starts from a stored
conversation (possibly empty), writes user turns and reads the replies of the flow's models, which the relay
(`server/relay.py`) fetches while the lease is held; editing an earlier user turn or regenerating a reply adds
a branch, so a conversation is a tree. The annotator then rates every reply a model wrote on the flow's
dimensions and, with two or more branches, chooses the better branch, says how strongly (two branches) and why.

Answers aggregate as RLHF annotations do (`rlhf.summarise`), with the flow's models as every task's responses:
ratings per model, how often a model's branch was chosen, the Likert mean oriented to the first model.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

import msgspec

from flowlab import schemas
from flowlab.server.datapoints import datapoint_view
from flowlab.server.errors import Invalid
from flowlab.server.kinds import Refusal
from flowlab.server.kinds._assign import PerDatapointThresholds, next_task
from flowlab.server.kinds._base import KindBase
from flowlab.server.kinds._form import annotation_op, check_justification, check_likert, check_ratings
from flowlab.server.kinds.rlhf import (
    RatedTally,
    _collector_paused,
    as_number,
    check_min_answers,
    check_spec,
    marked,
    numeric,
    summarise,
)

if TYPE_CHECKING:
    from flowlab.server.model import FlowConfig, ItemRecord, Lease
    from flowlab.server.store import Op, Row

MAX_MODELS = 8
MAX_TURNS = 50
MAX_USER_CHARS = 10_000
MAX_NODE_ID = 64
_conversation = msgspec.json.Decoder(schemas.Conversation)


class Reply(msgspec.Struct):
    """A reply a model wrote during a lease: which model, to which conversation, and what it said."""

    model: int  # index into the flow's models
    messages: list[tuple[str, str]]  # (role, content) of the branch it answers, system messages left out
    text: str


class ChatSession:
    """A chat lease's question: the task, the order the flow's models are shown in, the replies written so far
    (by generation id), and whether a reply is being written now (then the lease clock is stopped)."""

    __slots__ = ("d", "generating", "order", "replies")

    def __init__(self, d: int, order: tuple[int, ...]) -> None:
        self.d = d
        self.order = order  # page position -> index into the flow's models
        self.replies: dict[str, Reply] = {}
        self.generating: str | None = None


class ChatTally(RatedTally):
    """A live chat item's tally (`RatedTally`): the ratings of model replies as (task, model, dimension, value)
    rows, the chosen branch's model as (task, model, annotator) rows, Likert values oriented to the flow's first
    model, and the conversations as stored."""

    __slots__ = ("spec",)

    def __init__(self, n: int, spec: schemas.ChatSpec, max_answers: int) -> None:
        super().__init__(n, max_answers)
        self.spec = spec

    def add(self, record: schemas.Conversation) -> None:
        models = {m.name: k for k, m in enumerate(self.spec.models)}
        d = record.datapoint
        rows: list[tuple[float, ...]] = []
        for turn in record.turns:
            if turn.model is None or turn.model not in models:
                continue
            for k, dim in enumerate(self.spec.dimensions):
                if numeric(dim) and dim.key in turn.ratings:
                    rows.append((d, models[turn.model], k, as_number(dim, turn.ratings[dim.key])))
        self.ratings.extend(rows)
        annotator = self.answer(d, record.annotator_id)
        if record.selected_model in models:
            self.choices.append(d, models[record.selected_model], annotator)
        if record.likert is not None and len(models) == 2:
            first, second = (branch_model(record, leaf) for leaf in record.branches[:2])
            if {first, second} == set(models):  # the two models compared, one branch each
                value = record.likert if models[first] == 0 else self.spec.likert_scale + 1 - record.likert
                self.likert.extend([(d, value)])
        self.records.append(record)

    def texts(self) -> Iterator[tuple[int, dict[str, str], str | None]]:
        for rec in self.records:
            yield rec.datapoint, {}, rec.justification


def branch_model(record: schemas.Conversation, leaf: str) -> str | None:
    """The model that wrote the last reply on the branch ending at `leaf`."""
    by_id = {t.id: t for t in record.turns}
    node = by_id.get(leaf)
    while node is not None:
        if node.model is not None:
            return node.model
        node = by_id.get(node.parent) if node.parent is not None else None
    return None


class Chat(PerDatapointThresholds, KindBase):
    name = "chat"
    title = "chat"
    create_call = "client.flow.create_chat_flow()"
    min_datapoints = 1
    answers_table = "annotations"
    answers_path = "conversations"
    result_type = schemas.RlhfResults  # RLHF results, with the flow's models as every task's responses
    default_lease = 900.0  # a conversation, then its annotation
    owns = ("chat",)

    def complete(self, cfg: FlowConfig) -> FlowConfig:
        return cfg if cfg.chat is not None else msgspec.structs.replace(cfg, chat=schemas.ChatSpec())

    def check_datapoint(self, d: schemas.DatapointIn, where: str) -> None:
        if any(x is not None for x in (d.text, d.url, d.media, d.prompt, d.responses)):
            raise Invalid(
                "Each datapoint of a chat flow is a starting conversation: {id, messages: [{role, content}, ...], "
                "guidance}.",
                field=where,
            )
        self.check_assets(d, where)
        if d.messages is None:
            d.messages = []  # an empty start: the annotator opens the conversation

    def check_config(self, cfg: FlowConfig) -> None:
        spec = cfg.chat
        if spec is None:
            raise Invalid("A chat flow needs its spec (models, max_turns, dimensions).", field="chat")
        names = [m.name for m in spec.models]
        if not 1 <= len(names) <= MAX_MODELS:
            raise Invalid(f"A chat flow talks to 1 to {MAX_MODELS} models; got {len(names)}.", field="chat.models")
        if any(not n.strip() or len(n) > 100 for n in names) or len(set(names)) != len(names):
            raise Invalid("Every model needs a name (at most 100 characters), unique in the flow.", field="chat.models")
        for k, m in enumerate(spec.models):
            if m.url is not None:
                # What the relay will call must parse as httpx parses it, or every reply would fail.
                from urllib.parse import urlsplit

                import httpx

                why = None
                if any(c.isspace() or not c.isprintable() for c in m.url):
                    why = "it holds a space, a line break or another invisible character"
                else:
                    try:
                        parts = urlsplit(m.url)
                        parts.port  # noqa: B018 - raises for a port that is not a number in 0-65535
                        httpx.URL(m.url)
                    except (ValueError, httpx.InvalidURL) as exc:
                        why = f"it does not parse: {exc}"
                    else:
                        if parts.scheme not in ("http", "https") or not parts.hostname:
                            why = "it needs http:// or https:// and a host"
                        elif parts.query or parts.fragment:
                            why = "it has a query or fragment; /chat/completions is added to its path"
                if why is not None:
                    raise Invalid(
                        f"A model's url is the base of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1; "
                        f"{m.url!r} is not usable ({why}). Correct it and send the flow again.",
                        field=f"chat.models[{k}].url",
                    )
            if m.url is None and (m.model or m.api_key_env or m.temperature is not None or m.max_tokens):
                raise Invalid(
                    "model, api_key_env, temperature and max_tokens are for an endpoint: give its url too.",
                    field=f"chat.models[{k}].url",
                )
        if not 1 <= spec.max_turns <= MAX_TURNS:
            raise Invalid(f"max_turns is 1 to {MAX_TURNS} user turns per branch.", field="chat.max_turns")
        if not 1 <= spec.max_branches <= 20:
            raise Invalid("max_branches is 1 to 20.", field="chat.max_branches")
        if not 1 <= spec.max_reply_chars <= 200_000:
            raise Invalid("max_reply_chars is 1 to 200000.", field="chat.max_reply_chars")
        if not 0 < spec.reply_timeout <= 600:
            raise Invalid("reply_timeout is a number of seconds in (0, 600].", field="chat.reply_timeout")
        form = schemas.RlhfSpec(
            dimensions=spec.dimensions,
            likert_scale=spec.likert_scale,
            justification=spec.justification,
            justification_min_chars=spec.justification_min_chars,
        )
        try:
            check_spec(form)
        except Invalid as exc:
            exc.field = (exc.field or "").replace("rlhf.", "chat.", 1)
            raise
        check_min_answers(cfg, "conversation")

    def new_tally(self, item: ItemRecord, seed: float) -> ChatTally:
        assert item.config.chat is not None
        tally = ChatTally(len(item.datapoints), item.config.chat, item.config.max_response_threshold)
        tally.cap = self.annotator_cap(item.config)
        return tally

    def replay(self, item: ItemRecord, rows: list[Row]) -> None:
        for r in rows:
            self._add(item, _conversation.decode(r["body"]))

    def _add(self, item: ItemRecord, record: schemas.Conversation) -> None:
        item.tally.add(record)
        item.response_count += 1

    # ------------------------------------------------------------ asking

    def ask(
        self, item: ItemRecord, rng: random.Random, annotator_id: str, now: float
    ) -> tuple[ChatSession | None, None]:
        d = next_task(item, annotator_id, rng, now)
        if d is None:
            return None, None
        assert item.config.chat is not None
        order = list(range(len(item.config.chat.models)))
        if "no_shuffle" not in item.config.settings:
            rng.shuffle(order)
        return ChatSession(d, tuple(order)), None

    def closed(self, lease: Lease) -> None:
        lease.item.tally.unlease(lease.question.d)

    def task_view(self, lease: Lease, rng: random.Random, now: float) -> schemas.Task:
        item = lease.item
        cfg = item.config
        spec = cfg.chat
        assert spec is not None
        dp = item.datapoints[lease.question.d]
        return self.single_view_task(
            lease,
            now,
            datapoint_view(dp),
            chat=schemas.ChatTaskView(
                messages=[m for m in dp.prompt or () if m.role != "system"],
                guidance=dp.guidance,
                models=len(spec.models),
                max_turns=spec.max_turns,
                max_branches=spec.max_branches,
                dimensions=spec.dimensions,
                likert_scale=spec.likert_scale,
                justification=spec.justification,
                justification_min_chars=spec.justification_min_chars,
            ),
        )

    # ------------------------------------------------------------ answering

    def check(self, lease: Lease, answer: schemas.Answer) -> schemas.Conversation:
        if answer.choice != "submit" or answer.chat is None:
            raise Refusal(
                "invalid_annotation",
                "Answer a chat task with choice 'submit' and the conversation in 'chat' (or choice 'skip').",
                "chat",
            )
        item = lease.item
        assert item.config.chat is not None
        session: ChatSession = lease.question
        if session.generating is not None:
            raise Refusal("invalid_annotation", "A reply is still being written; wait for it, then submit.", "chat")
        seed = [(m.role, m.content) for m in item.datapoints[session.d].prompt or () if m.role != "system"]
        return check_conversation(item.config.chat, answer.chat, session, seed, lease)

    def answer_ops(self, lease: Lease, checked: schemas.Conversation, annotator_id: str, now: float) -> list[Op]:
        return [annotation_op(lease, checked, annotator_id, now)]

    def count(self, lease: Lease, checked: schemas.Conversation) -> None:
        self._add(lease.item, checked)

    def release(self, lease: Lease, *, defer: bool, now: float) -> None:
        # Handed back (the model failed) or let run out: the conversation goes to whoever asks next, and comes
        # back to this annotator a little later, so an outage of the model loses nobody's work for good.
        lease.item.tally.give_back(lease.question.d, lease.annotator_id, now)

    # ------------------------------------------------------------ aggregates

    def delta(self, item: ItemRecord, start: int, stop: int) -> list[tuple[int, int, int]]:
        rows = item.tally.choices.rows[start:stop]
        return [(int(d), int(r), 0) for d, r, _ in rows]

    def snapshot(self, item: ItemRecord) -> list[list[float]]:
        assert item.config.chat is not None
        counts = [[0.0] * len(item.config.chat.models) for _ in item.datapoints]
        for d, r, _ in item.tally.choices.rows:
            counts[int(d)][int(r)] += 1
        return counts

    async def results(self, item: ItemRecord) -> schemas.RlhfResults:
        return aggregate(item)

    def final(self, item: ItemRecord) -> tuple[schemas.RlhfResults, None]:
        return aggregate(item), None

    def recount(self, item: ItemRecord, excluded: Collection[str]) -> None:
        item.response_count = item.tally.recount(excluded, item.tally.add)

    def votes(self, rows: list[Row]) -> list[schemas.Conversation]:
        return [marked(_conversation.decode(r["body"]), r) for r in rows]


def aggregate(item: ItemRecord) -> schemas.RlhfResults:
    """RLHF results with the flow's models as every task's responses."""
    assert item.config.chat is not None
    names = [m.name for m in item.config.chat.models]
    with _collector_paused():
        return summarise(item, [names for _ in item.datapoints])


# ---------------------------------------------------------------- the answer


def check_conversation(
    spec: schemas.ChatSpec,
    given: schemas.ChatAnswer,
    session: ChatSession,
    seed: list[tuple[str, str]],
    lease: Lease,
) -> schemas.Conversation:
    """The conversation as stored, or a Refusal naming the node or field that is wrong. Replies a model wrote
    are taken from the relay's record of them (by generation id), never from the page."""

    def refuse(field: str, detail: str) -> Refusal:
        return Refusal("invalid_annotation", detail, f"chat.{field}")

    nodes = given.nodes
    most = len(seed) + 2 * spec.max_turns * spec.max_branches
    if not nodes:
        raise refuse("nodes", "The conversation is empty: talk with the model before submitting.")
    if len(nodes) > most:
        raise refuse("nodes", f"A conversation of this flow holds at most {most} messages.")
    turns: dict[str, schemas.ChatTurn] = {}
    paths: dict[str, list[tuple[str, str]]] = {}
    children: dict[str | None, int] = {}
    used: set[str] = set()
    user_turns: dict[str, int] = {}
    for i, node in enumerate(nodes):
        where = f"nodes[{i}]"
        if not node.id or len(node.id) > MAX_NODE_ID or node.id in turns:
            raise refuse(f"{where}.id", f"Every message needs a unique id of 1 to {MAX_NODE_ID} characters.")
        if node.parent is not None and node.parent not in turns:
            raise refuse(f"{where}.parent", "A message's parent must come before it in nodes.")
        parent = turns.get(node.parent) if node.parent is not None else None
        if parent is not None and parent.role == node.role:
            raise refuse(f"{where}.role", "User and assistant messages take turns: a message answers its parent.")
        path = paths[node.parent] if node.parent is not None else []
        users = (user_turns[node.parent] if node.parent is not None else 0) + (node.role == "user")
        if users > spec.max_turns:
            raise refuse(where, f"A branch holds at most {spec.max_turns} user turns.")
        is_seed = len(path) < len(seed) and path == seed[: len(path)]
        model: str | None = None
        if node.role == "assistant" and node.generation is not None:
            reply = session.replies.get(node.generation)
            if reply is None or node.generation in used:
                raise refuse(f"{where}.generation", "This reply is not one the model wrote for this task.")
            if reply.messages != path:
                raise refuse(f"{where}.generation", "This reply answers another conversation than its branch.")
            used.add(node.generation)
            content, model = reply.text, spec.models[reply.model].name
            is_seed = False
        elif node.role == "assistant":
            content = node.content or ""
            if not is_seed or seed[len(path)] != ("assistant", content):
                raise refuse(
                    f"{where}.generation",
                    "A reply is either the starting conversation's or one the model wrote (its generation id).",
                )
        else:
            content = node.content or ""
            if not content.strip() or len(content) > MAX_USER_CHARS:
                raise refuse(f"{where}.content", f"Every user turn needs text, at most {MAX_USER_CHARS:,} characters.")
            is_seed = is_seed and seed[len(path)] == ("user", content)
        if parent is None and node.role == "assistant" and not is_seed:
            raise refuse(f"{where}.parent", "A model's reply answers a user turn: give it a parent.")
        turns[node.id] = schemas.ChatTurn(
            id=node.id, role=node.role, content=content, parent=node.parent, model=model, seed=is_seed
        )
        paths[node.id] = [*path, (node.role, content)]
        user_turns[node.id] = users
        children[node.parent] = children.get(node.parent, 0) + 1
    branches = [n.id for n in nodes if n.id not in children]
    if len(branches) > spec.max_branches:
        raise refuse("nodes", f"A conversation of this flow has at most {spec.max_branches} branches.")
    for b, leaf in enumerate(branches):
        if turns[leaf].role != "assistant":
            raise refuse("nodes", f"Branch {b + 1} ends with a user turn nobody answered: get a reply, or drop it.")
    if not used:
        raise refuse("nodes", "Talk with the model at least once: no reply here was written by it.")
    for key in given.ratings:
        turn = turns.get(key)
        if turn is None or turn.model is None:
            raise refuse(f"ratings.{key}", "Ratings are for the replies a model wrote (by their node id).")
    branch_of = _branch_numbers(turns, branches)
    for turn in turns.values():
        if turn.model is not None:
            what = "The reply" if len(branches) == 1 else f"The reply in branch {branch_of[turn.id]}"
            turn.ratings = check_ratings(
                spec.dimensions, given.ratings.get(turn.id, {}), what, f"ratings.{turn.id}", refuse
            )
    selected, likert = given.selected, given.likert
    asks_likert = spec.likert_scale > 0 and len(branches) == 2
    if len(branches) >= 2:
        if selected not in branches:
            raise refuse("selected", f"Choose the better branch (the id of its last message, one of {len(branches)}).")
        if asks_likert:
            likert = check_likert(spec.likert_scale, likert, selected == branches[0], "branch", refuse)
        elif likert is not None:
            raise refuse("likert", "Only a choice between two branches asks how much better; leave likert out.")
    elif selected is not None or likert is not None:
        raise refuse("selected", "There is one branch: nothing to choose between.")
    justification = check_justification(spec.justification, spec.justification_min_chars, given.justification, refuse)
    record = schemas.Conversation(
        task_id=lease.task_id,
        annotator_id=lease.annotator_id,
        datapoint=session.d,
        turns=list(turns.values()),
        branches=branches,
        selected=selected if len(branches) >= 2 else branches[0],
        selected_model=None,
        likert=likert if asks_likert else None,
        justification=justification,
        created_at=0.0,
    )
    record.selected_model = branch_model(record, record.selected) if len(branches) >= 2 else None
    return record


def _branch_numbers(turns: dict[str, schemas.ChatTurn], branches: list[str]) -> dict[str, int]:
    """Each message's branch as the annotator counts them (from 1): the first branch that holds it."""
    number: dict[str, int] = {}
    for b, leaf in enumerate(branches, start=1):
        node: str | None = leaf
        while node is not None and node not in number:
            number[node] = b
            node = turns[node].parent
    return number


CHAT = Chat()

"""The wire contract: every request and response body, shared by the server and the SDK."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

# Limits of what requests may carry (docs/http-api.md lists them); above them a request is refused, naming the
# field, rather than stored.
MAX_NAME_CHARS = 200
MAX_INSTRUCTION_CHARS = 10_000
MAX_CONTEXT_CHARS = 50_000
MAX_TEXT_CHARS = 200_000
MAX_COUNT = 1_000_000  # thresholds
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"\S")]  # not blank
Instruction = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_INSTRUCTION_CHARS, pattern=r"\S")]
Context = Annotated[str, msgspec.Meta(max_length=MAX_CONTEXT_CHARS)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
Count = Annotated[int, msgspec.Meta(le=MAX_COUNT)]

ItemStateName = Literal["Pending", "Running", "Stopping", "Completed", "Incomplete", "Stopped", "Failed"]
TERMINAL_STATES: frozenset[str] = frozenset({"Completed", "Incomplete", "Stopped", "Failed"})
# Lifecycle order: versions are built from it, so states only ever move forward.
STATE_RANK: dict[str, int] = {
    "Pending": 0,
    "Running": 1,
    "Stopping": 2,
    "Completed": 3,
    "Incomplete": 3,
    "Stopped": 3,
    "Failed": 3,
}
DatapointKind = Literal["text", "image", "audio", "video", "url", "conversation"]  # conversation: an RLHF task
Choice = Literal["a", "b", "tie", "skip"]  # a pairwise answer; a classify answer is a category's value (or skip)
PairSelection = Literal["uniform", "active"]
StopRule = Literal["top", "top_k", "order", "never"]
TaskKindName = Literal["pairwise", "classify", "rlhf", "chat", "listwise", "write"]
ListwiseMode = Literal["order", "best_worst"]
DEFAULT_KIND: TaskKindName = "pairwise"  # a flow that names no kind compares pairs, as hosted's ranking flows
RatingType = Literal["scale", "boolean", "category", "text"]
Requirement = Literal["off", "optional", "required"]


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details, the body of every 4xx/5xx answer."""

    title: str
    status: int
    detail: str
    type: str = "about:blank"
    field: str | None = None
    code: str | None = None


# ---------------------------------------------------------------- flows


class Category(msgspec.Struct, forbid_unknown_fields=True):
    """One answer of a classify flow: what annotators see (`label`) and what results report (`value`)."""

    label: str
    value: str


class Dimension(msgspec.Struct, forbid_unknown_fields=True):
    """One thing an RLHF annotator rates about every response: an integer scale (with wording for its ends or
    for every point), yes/no, one of a few categories, or free text; optionally "not applicable"."""

    key: str
    label: str = ""  # what annotators read; defaults to the key
    description: str = ""  # guidance shown beside it
    type: RatingType = "scale"
    min: int = 1  # scale
    max: int = 5  # scale
    anchors: list[str] = []  # scale: a label for every point from min to max, or two (for min and max)
    options: list[str] = []  # category: 2 to 12 choices
    allow_na: bool = False  # annotators may answer "not applicable"
    required: bool = True  # text dimensions are often optional


def default_dimensions() -> list[Dimension]:
    """The seed's four dimensions, on a 1-5 scale."""
    ends = ["Very poor", "Excellent"]
    return [
        Dimension("instruction_following", "Instruction following", "Does it do what the prompt asks?", anchors=ends),
        Dimension("truthfulness", "Truthfulness", "Is it honest about what it knows and does not?", anchors=ends),
        Dimension("factuality", "Factuality", "Are its claims correct?", anchors=ends),
        Dimension("tone", "Tone", "Is its tone right for the prompt?", anchors=ends),
    ]


class RlhfSpec(msgspec.Struct, forbid_unknown_fields=True):
    """What an RLHF flow asks of each annotator, per task: a rating per dimension per response, maybe a
    rewrite of a response, then the preferred response, how strongly (a Likert scale) and why."""

    dimensions: list[Dimension] = msgspec.field(default_factory=default_dimensions)
    rewrite: Requirement = "optional"
    likert_scale: int = 7  # points between "first much better" and "second much better"; 0: not asked
    justification: Requirement = "required"
    justification_min_chars: int = 20
    max_rewrite_chars: int = 20_000


class ChatMessage(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    role: Literal["system", "user", "assistant"]
    content: str


class ResponseIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One model response of an RLHF task: who made it, and exactly one of text, url or media."""

    source_id: str
    text: str | None = None
    url: str | None = None
    media: str | None = None
    media_type: str | None = None
    kind: DatapointKind | None = None
    private_metadata: dict[str, Any] | None = None


class Response(msgspec.Struct, omit_defaults=True):
    """A stored response, as the researcher sees it."""

    source_id: str
    kind: DatapointKind
    text: str | None = None
    url: str | None = None
    media: str | None = None
    media_type: str | None = None
    private_metadata: dict[str, Any] | None = None


class ResponseView(msgspec.Struct, omit_defaults=True):
    """A response as an annotator sees it: content only, never its source."""

    kind: DatapointKind
    text: str | None = None
    url: str | None = None
    media_type: str | None = None


class RlhfTaskView(msgspec.Struct):
    """An RLHF task on the page: the conversation so far, the responses in a shuffled order, and the form."""

    prompt: list[ChatMessage]
    responses: list[ResponseView]
    spec: RlhfSpec


RatingValue = int | bool | str | None  # None: not applicable


class RlhfAnswer(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """An annotator's work on an RLHF task; responses are referred to by their position as shown."""

    ratings: list[dict[str, RatingValue]]  # one mapping of dimension key -> value per response
    rewrites: list[str | None] = []  # per response; None or absent: not rewritten
    selected: int | None = None  # the preferred response's position
    likert: int | None = None  # 1 = the first shown much better ... likert_scale = the second much better
    justification: str | None = None


class ChatModel(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One model a chat flow's annotators talk to, by name: served from Python (`flow.serve_model()`, which
    fetches the flow's generation requests by long poll), or, given a `url`, an OpenAI-compatible
    chat-completions endpoint (vLLM, TGI, llama.cpp's server, Ollama) that the server calls itself."""

    name: str
    url: str | None = None  # the API's base, e.g. http://127.0.0.1:8000/v1; the server POSTs {url}/chat/completions
    model: str | None = None  # the endpoint's name for the model (defaults to `name`)
    api_key_env: str | None = None  # an environment variable of the server's holding the endpoint's key
    temperature: float | None = None
    max_tokens: int | None = None


class ChatSpec(msgspec.Struct, forbid_unknown_fields=True):
    """What a chat flow asks: annotators talk with the flow's models (writing user turns, editing an earlier one
    or regenerating a reply, which branches the conversation), rate every reply a model wrote on `dimensions`,
    then, with two or more branches, choose the better one, say how strongly (two branches) and why."""

    models: list[ChatModel] = msgspec.field(default_factory=lambda: [ChatModel("model")])
    max_turns: int = 10  # user turns on one branch, the starting conversation's included
    dimensions: list[Dimension] = msgspec.field(default_factory=default_dimensions)
    likert_scale: int = 7  # two branches: points from "the first much better" to "the second much better"
    justification: Requirement = "optional"
    justification_min_chars: int = 0
    max_reply_chars: int = 20_000  # a longer reply is refused
    reply_timeout: float = 60.0  # seconds a model may stay silent (before its first chunk, or between two)
    max_branches: int = 8


class ChatTaskView(msgspec.Struct):
    """A chat task on the page: the starting conversation, guidance, how many models there are (never their
    names) and the form."""

    messages: list[ChatMessage]
    guidance: str | None
    models: int
    max_turns: int
    max_branches: int
    dimensions: list[Dimension]
    likert_scale: int
    justification: Requirement
    justification_min_chars: int


class ChatGenerate(msgspec.Struct, forbid_unknown_fields=True):
    """Ask a model of the task for the next reply of a branch: the branch so far, ending with the user's turn;
    `model` is the model's position on the page (0 first)."""

    messages: list[ChatMessage]
    model: int = 0


class GenerationRequest(msgspec.Struct):
    """Work for a model served from Python: the conversation to answer (the model's name, for a worker that
    serves several)."""

    generation_id: str
    model: str
    messages: list[ChatMessage]


class ChatModelStatus(msgspec.Struct):
    """Whether a chat flow's model can answer now. A model served from Python is `attached` while a worker is
    there: it asked for work in the last few seconds, or is writing a reply (and, if it says so while writing,
    did in the last few seconds); `workers` counts those, `waiting` the replies queued for one. A model behind
    an endpoint (`endpoint`) has no workers: it is `attached` when it answered in the last minute
    (`answered_at`, its last reply or part of one) with no failure since; `last_error` says why its last call
    failed, until one succeeds."""

    name: str
    attached: bool
    workers: int
    waiting: int
    endpoint: bool = False
    answered_at: float | None = None
    last_error: str | None = None


class ChatModelPresence(msgspec.Struct):
    """Whether a chat task's model can answer now, for its annotator's page: by its position on the page (never
    its name). False while nobody serves a model served from Python, or when an endpoint's last call could not
    reach it."""

    model: int
    online: bool


class ChatNodeIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One message of an annotated conversation tree. A reply a model wrote names its `generation`; every other
    message (the annotator's, and the starting conversation's) gives its `content`."""

    id: str
    role: Literal["user", "assistant"]
    parent: str | None = None
    content: str | None = None
    generation: str | None = None


class ChatAnswer(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """An annotated conversation: the tree, the ratings of every model reply (by node id), and, with two or
    more branches, the better branch (its last node's id), how much better (two branches) and why."""

    nodes: list[ChatNodeIn]
    ratings: dict[str, dict[str, RatingValue]] = {}
    selected: str | None = None
    likert: int | None = None  # two branches: 1 = the first much better ... likert_scale = the second
    justification: str | None = None


class ChatTurn(msgspec.Struct, omit_defaults=True):
    """One stored message of a conversation tree; `model` names the model that wrote a reply."""

    id: str
    role: Literal["user", "assistant"]
    content: str
    parent: str | None = None
    model: str | None = None
    seed: bool = False  # from the starting conversation, unchanged
    ratings: dict[str, RatingValue] = {}


class Conversation(msgspec.Struct):
    """One stored chat annotation: the tree, its branches (leaf ids, in the order they were made), the
    choice and why."""

    task_id: str
    annotator_id: str
    datapoint: int
    turns: list[ChatTurn]
    branches: list[str]
    selected: str | None
    selected_model: str | None
    likert: int | None  # as answered: 1 = branches[0] much better
    justification: str | None
    created_at: float
    shown_at: float | None = None  # when its task was first on the annotator's screen (time on task)
    # Left out of results, matrices and fits: its annotator was suspended while the item took answers.
    excluded: bool = False


class WriteSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What a write flow asks: a response written from scratch to each prompt, within these lengths; whether
    pasting into the box is allowed; and, optionally, the flow whose items review what was written."""

    min_chars: int = 1
    max_chars: int = 4000
    allow_paste: bool = True
    review_flow_id: str | None = None  # an RLHF flow: each ended item's demonstrations become one of its items
    review_model_responses: bool = True  # the datapoint's model responses join the demonstrations in review
    review_time_to_live: float | None = None  # the review item's TTL (None: the server's default)


class WriteTaskView(msgspec.Struct):
    """A write task on the page: the prompt (a conversation ending with the user), guidance and reference
    material, and the limits the text box enforces."""

    prompt: list[ChatMessage]
    guidance: str | None
    reference: str | None
    min_chars: int
    max_chars: int
    allow_paste: bool


class WriteAnswer(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A written response: the text as typed, and how many of its characters the page saw pasted in."""

    text: str
    pasted_chars: int = 0


class Demonstration(msgspec.Struct):
    """One stored demonstration: who wrote what for which prompt, and when (time on task = created_at -
    shown_at - hidden_seconds)."""

    task_id: str
    annotator_id: str
    datapoint: int
    text: str
    created_at: float
    shown_at: float | None = None
    hidden_seconds: float | None = None
    pasted_chars: int = 0
    excluded: bool = False  # its author was suspended while the item took answers

    @property
    def seconds(self) -> float | None:
        if self.shown_at is None:
            return None
        return max(0.0, self.created_at - self.shown_at - (self.hidden_seconds or 0.0))


class DemonstrationResult(msgspec.Struct):
    annotator_id: str
    text: str
    chars: int
    seconds: float | None  # time on task (None: unknown)
    pasted_share: float  # share of its characters pasted in


class WriteTaskResult(msgspec.Struct):
    key: str
    index: int
    demonstrations: list[DemonstrationResult]  # in the order they were written


class WriteResults(msgspec.Struct):
    item_id: str
    state: ItemStateName
    total_responses: int  # demonstrations that count
    partial: bool
    tasks: list[WriteTaskResult]
    version: int
    annotators: int = 0  # different people whose demonstrations count
    review_item_id: str | None = None  # the review flow's item made from this one once it ended


class StopWhen(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """End a ranking item as soon as its question is answered with the asked confidence.

    `top`: the best datapoint is above every other; `top_k`: the best `k` are above the rest; `order`:
    every datapoint is above the next one down. `never` (in an update) turns stopping off again.
    """

    rule: StopRule
    k: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] = 1  # the size of the top set, for top_k
    confidence: Annotated[float, msgspec.Meta(gt=0.5, lt=1.0)] = 0.95


class ListwiseSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A listwise flow's task: `k` of an item's datapoints at once, ordered best first (`order`) or only the
    best and the worst picked (`best_worst`)."""

    k: Annotated[int, msgspec.Meta(ge=3, le=8)] = 4
    mode: ListwiseMode = "order"


class ListwiseTaskView(msgspec.Struct):
    """A listwise task on the page: the datapoints to order, in the order shown (their refs say which)."""

    datapoints: list[DatapointView]
    mode: ListwiseMode


class ListwiseAnswer(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Positions in the task's `listwise.datapoints`: the whole `order` (best first), or `best` and `worst`."""

    order: list[int] | None = None
    best: int | None = None
    worst: int | None = None


class Ranking(msgspec.Struct):
    """A stored listwise answer. `order` holds datapoint indices: the whole order best first, or (mode
    `best_worst`) the best first, the worst last and the others between in the order shown, unranked."""

    task_id: str
    annotator_id: str
    order: list[int]
    mode: ListwiseMode
    created_at: float
    shown_at: float | None = None
    excluded: bool = False


class FlowCreate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Name
    instruction: Instruction
    max_response_threshold: Count = 100
    min_response_threshold: Count | None = None  # defaults to max
    allow_ties: bool = False
    pair_selection: PairSelection = "uniform"
    lease_seconds: float | None = None  # default 60 s; RLHF flows 600 s (the form takes minutes)
    drain_seconds: float | None = None  # default: min(5 s, 10 % of the item's TTL)
    render_markdown: bool = False
    validation_pairs: list[ValidationPair] = []
    gold_rate: float = 0.1
    kind: TaskKindName = "pairwise"
    categories: list[Category] = []  # classify flows: 2 to 8, unique values
    starting_elo: float = 1200.0  # where the Elo scale of results is centred, as hosted
    validation_set_id: str | None = None  # its gold questions join `validation_pairs` or `validation_labels`
    validation_labels: list[ValidationLabel] = []  # classify flows' gold
    settings: dict[str, str] = {}  # hosted's feature flags, by key (flowlab.settings): what the page honours
    rlhf: RlhfSpec | None = None  # RLHF flows: what annotators rate, rewrite and justify
    stop_when: StopWhen | None = None  # ranking flows: end an item once its question is settled
    chat: ChatSpec | None = None  # chat flows: the models, the turns, the form
    write: WriteSpec | None = None  # write flows: lengths, pasting, a review flow
    # Ranking flows: pairs may also be answered "both_good" / "both_bad", and results give P(acceptable).
    absolute: bool = False
    listwise: ListwiseSpec | None = None  # listwise flows: how many datapoints a task shows, and what is asked
    # Answers one person may give to one item (ranking: votes; other kinds: tasks). Default: a ranking item's
    # votes come from at least three people (a third of the maximum each); other kinds give every task of an
    # item to a person once, with no cap per item.
    max_votes_per_annotator: Count | None = None
    audiences: list[str] = []  # audience ids: only their annotators are served this flow (none: everyone's)


class FlowConfigUpdate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    instruction: Instruction | None = None
    min_response_threshold: Count | None = None
    max_response_threshold: Count | None = None
    allow_ties: bool | None = None
    pair_selection: PairSelection | None = None
    lease_seconds: float | None = None
    drain_seconds: float | None = None
    render_markdown: bool | None = None
    validation_pairs: list[ValidationPair] | None = None
    gold_rate: float | None = None
    starting_elo: float | None = None
    validation_labels: list[ValidationLabel] | None = None
    settings: dict[str, str] | None = None
    rlhf: RlhfSpec | None = None
    stop_when: StopWhen | None = None  # {"rule": "never"} turns stopping off
    chat: ChatSpec | None = None
    write: WriteSpec | None = None
    absolute: bool | None = None
    max_votes_per_annotator: Count | None = None
    audiences: list[str] | None = None  # [] opens the flow to every annotator of its key again
    listwise: ListwiseSpec | None = None


class Flow(msgspec.Struct):
    id: str
    name: str
    instruction: str
    max_response_threshold: int
    min_response_threshold: int
    allow_ties: bool
    pair_selection: PairSelection
    lease_seconds: float
    drain_seconds: float | None
    render_markdown: bool
    gold_rate: float
    validation_pair_count: int
    config_version: int
    created_at: float
    updated_at: float
    item_count: int
    owner: str
    kind: TaskKindName = "pairwise"
    categories: list[Category] = []
    starting_elo: float = 1200.0
    validation_label_count: int = 0
    settings: dict[str, str] = {}
    rlhf: RlhfSpec | None = None
    stop_when: StopWhen | None = None
    chat: ChatSpec | None = None
    max_votes_per_annotator: int | None = None  # in force: the flow's own, or its kind's default (None: no cap)
    audiences: list[str] = []  # the audiences whose annotators it serves; empty: every annotator of its key
    absolute: bool = False  # ranking flows: "both good" / "both bad" answers and P(acceptable) in results
    listwise: ListwiseSpec | None = None  # listwise flows: k and the mode
    write: WriteSpec | None = None


# ---------------------------------------------------------------- datapoints and items


class ContextAsset(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    kind: DatapointKind | None = None  # given by the server: text, or the media kind of a URL or upload
    text: str | None = None
    url: str | None = None
    media: str | None = None
    media_type: str | None = None
    name: str | None = None


class DatapointIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One datapoint as the SDK sends it: exactly one of text, url or media (an uploaded sha256)."""

    id: str | None = None
    text: str | None = None
    url: str | None = None
    media: str | None = None
    media_type: str | None = None
    kind: DatapointKind | None = None
    name: str | None = None
    private_metadata: dict[str, Any] | None = None
    source: str | None = None  # an uploaded file: its local path as the researcher gave it (never shown to people)
    context: Context | None = None  # classify flows: shown with this datapoint only
    context_assets: list[ContextAsset] | None = None  # classify flows: media shown with this datapoint only
    prompt: str | list[ChatMessage] | None = None  # RLHF tasks: the prompt, or the conversation so far
    responses: list[ResponseIn] | None = None  # RLHF tasks: two or more model responses
    messages: list[ChatMessage] | None = None  # chat tasks: the starting conversation (may be empty)
    guidance: str | None = None  # chat and write tasks: what the annotator should try
    reference: str | None = None  # write tasks: reference material shown beside the prompt


class ValidationPair(msgspec.Struct, omit_defaults=True):
    """A gold pair: two datapoints whose better side is known, mixed into annotators' tasks."""

    a: DatapointIn
    b: DatapointIn
    answer: Literal["a", "b", "tie"]
    explanation: str | None = None  # shown to an annotator who answers otherwise


class ValidationLabel(msgspec.Struct, omit_defaults=True):
    """A gold datapoint of a classify flow: the category values that count as right, and what to tell an
    annotator who answers otherwise."""

    datapoint: DatapointIn
    truths: list[str]
    explanation: str | None = None


class ValidationSetCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Gold questions kept under an id, for flows to refer to (`FlowCreate.validation_set_id`): gold pairs
    for ranking flows, or gold labels for classify flows."""

    name: Name
    pairs: list[ValidationPair] = []
    labels: list[ValidationLabel] = []
    instruction: str | None = None  # as hosted: what the set's questions ask; flows use their own
    dimensions: list[str] = []  # hosted's tracking dimensions: kept with the set (flowlab scores people overall)


class ValidationSet(msgspec.Struct):
    id: str
    name: str
    pair_count: int
    created_at: float
    label_count: int = 0
    kind: TaskKindName = "pairwise"  # the flows it serves: pairwise (gold pairs) or classify (gold labels)
    dimensions: list[str] = []
    should_alert: bool = True  # an annotator who answers a gold question wrong is shown its explanation
    can_be_flagged: bool = True  # hosted's: kept with the set (flowlab never sets gold questions aside)


class ValidationSetUpdate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What `PATCH /v1/validation-sets/{id}` changes; fields left out stay as they are. Flows made from the set
    from then on copy its questions under the new settings; flows made before keep theirs."""

    dimensions: list[str] | None = None
    should_alert: bool | None = None
    can_be_flagged: bool | None = None


class Datapoint(msgspec.Struct, omit_defaults=True):
    """A stored datapoint as the researcher sees it."""

    index: int
    key: str
    kind: DatapointKind
    text: str | None = None
    url: str | None = None
    media: str | None = None
    media_type: str | None = None
    name: str | None = None
    private_metadata: dict[str, Any] | None = None
    context: str | None = None
    context_assets: list[ContextAsset] | None = None
    source: str | None = None  # an uploaded file: its local path as the researcher gave it
    prompt: list[ChatMessage] | None = None  # RLHF tasks
    responses: list[Response] | None = None  # RLHF tasks
    guidance: str | None = None  # chat and write tasks (a chat task's starting conversation is `prompt`)
    reference: str | None = None  # write tasks


class ItemCreate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    datapoints: list[DatapointIn]
    time_to_live: float = 300.0
    context: Context | None = None
    context_assets: list[ContextAsset] = []
    private_metadata: dict[str, Any] | None = None
    # Ranking items: compare exactly these pairs of datapoint positions, in covering rounds (e.g. OnlineDPO's
    # pairs); the flow's pair selection is not used.
    pairs: list[tuple[int, int]] | None = None


class ItemsWait(msgspec.Struct, forbid_unknown_fields=True):
    """Wait for several items at once: the answer comes when all have ended, or at the timeout."""

    item_ids: Annotated[list[str], msgspec.Meta(min_length=1, max_length=1000)]
    timeout: float = 25.0


class ItemStatus(msgspec.Struct):
    id: str
    flow_id: str
    state: ItemStateName
    response_count: int
    min_response_threshold: int
    max_response_threshold: int
    instruction: str
    config_version: int
    context: str | None
    n_datapoints: int
    keys: list[str]
    created_at: float
    started_at: float | None
    deadline: float
    ended_at: float | None
    time_to_live: float
    leases_out: int
    version: int
    server_time: float
    reason: str | None = None
    # Why a running item that still needs answers gets none now ("waiting for other annotators": everyone
    # asking has given it their share); None while it is served.
    waiting: str | None = None


class ItemAnnotator(msgspec.Struct):
    """One person's part in an item: how much of it is theirs, their left-right habit on pairs, their speed."""

    annotator_id: str
    answers: int
    share: float  # of the item's answers
    # Pairs: of their decisive votes, how many went to the datapoint shown first (left), with a 95 % interval;
    # an interval clear of 0.5 is a position bias.
    first_choices: int | None = None
    decisive: int | None = None
    first_share: float | None = None
    first_ci_low: float | None = None
    first_ci_high: float | None = None
    position_bias: bool = False
    median_seconds: float | None = None  # from the task on screen to the answer, where the page said when


class ItemDetail(msgspec.Struct):
    status: ItemStatus
    datapoints: list[Datapoint]
    context_assets: list[ContextAsset]
    private_metadata: dict[str, Any] | None


class DatapointResult(msgspec.Struct):
    key: str
    index: int
    score: float  # Bradley–Terry logit, mean zero over the item
    elo: float
    ci_low: float  # 95 % interval, logit scale
    ci_high: float
    rank: int  # 1 = best
    rank_low: int
    rank_high: int
    votes: int
    wins: float  # ties count half
    annotators: int = 0  # different people whose votes compared it
    source: str | None = None  # an uploaded file: its local path as the researcher gave it
    # Absolute ranking flows: the probability it is judged acceptable, with its 95 % interval (fit_absolute).
    p_acceptable: float | None = None
    p_acceptable_low: float | None = None
    p_acceptable_high: float | None = None


class ItemResults(msgspec.Struct):
    item_id: str
    state: ItemStateName
    total_votes: int
    partial: bool
    datapoints: list[DatapointResult]
    version: int
    annotators: int = 0  # different people whose votes count
    # The largest share of the votes one person gave: above a half, one person's view makes the ranking.
    top_annotator_share: float | None = None
    # That person's annotator id when their share is above a half (their votes outweigh everyone else's
    # together, so the ranking is one person's view); None otherwise. Flagged, not reweighted.
    dominated_by: str | None = None


class ClassifyDatapointResult(msgspec.Struct):
    key: str
    index: int
    majority_value: str | None  # None while no answer, or on a tie for the most answers
    distribution: dict[str, int]  # every category's value, zero-filled
    response_count: int
    # Beyond a plain majority: annotators weighed by their estimated reliability (one-coin Dawid–Skene).
    weighted_value: str | None
    confidence: float | None  # the posterior probability of weighted_value
    source: str | None = None  # an uploaded file: its local path as the researcher gave it


class ClassifyResults(msgspec.Struct):
    item_id: str
    state: ItemStateName
    total_responses: int
    partial: bool
    datapoints: list[ClassifyDatapointResult]
    version: int
    annotators: int = 0  # different people whose answers count (each answers a datapoint once)


class DimensionStat(msgspec.Struct):
    """One dimension's ratings of one response (or of one model over an item's tasks): the mean with a 95 %
    interval (scale and yes/no, as 0/1; a Dirichlet posterior, honest from three ratings), and how often each
    value was given."""

    dimension: str
    n: int  # ratings given, "not applicable" excluded
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    distribution: dict[str, int]  # value -> count, every value of the dimension, zero-filled
    not_applicable: int = 0


class ResponseResult(msgspec.Struct):
    source_id: str
    ratings: list[DimensionStat]
    selected: int  # annotators who preferred this response
    selected_share: float | None
    rewrites: list[str]  # what annotators rewrote it to, as they wrote it (text, never HTML)


class RlhfTaskResult(msgspec.Struct):
    key: str
    index: int
    annotations: int
    responses: list[ResponseResult]  # in the order the researcher gave them
    likert_mean: float | None  # oriented to that order: 1 = the first response much better
    likert_distribution: dict[str, int]
    justifications: list[str]


class ModelSummary(msgspec.Struct):
    """One source over every task of the item: how often it was preferred and how it was rated."""

    source_id: str
    tasks: int
    selected: int
    selected_share: float | None
    ratings: list[DimensionStat]


class RlhfResults(msgspec.Struct):
    item_id: str
    state: ItemStateName
    total_responses: int  # completed annotations
    partial: bool
    tasks: list[RlhfTaskResult]
    models: list[ModelSummary]
    agreement: dict[str, float | None]  # Krippendorff's alpha per dimension (None: too little overlap)
    version: int
    annotators: int = 0  # different people whose annotations count (each answers a task once)


class Annotation(msgspec.Struct):
    """One stored RLHF annotation: everything one annotator said about one task, responses by source."""

    task_id: str
    annotator_id: str
    datapoint: int
    order: list[str]  # source ids in the order this annotator saw them
    ratings: dict[str, dict[str, RatingValue]]  # source id -> dimension key -> value (None: not applicable)
    rewrites: dict[str, str]  # source id -> rewritten text
    selected: str | None
    likert: int | None  # as answered: 1 = order[0] much better
    justification: str | None
    created_at: float
    shown_at: float | None = None  # when its task was first on the annotator's screen (time on task)
    # Left out of results, matrices and fits: its annotator was suspended while the item took answers.
    excluded: bool = False


class Label(msgspec.Struct):
    """One stored classify answer."""

    task_id: str
    annotator_id: str
    datapoint: int
    value: str
    created_at: float
    shown_at: float | None = None  # when its task was first on the annotator's screen (time on task)
    # Left out of results, matrices and fits: its annotator was suspended while the item took answers.
    excluded: bool = False


class WinLossMatrix(msgspec.Struct):
    keys: list[str]
    counts: list[list[float]]  # counts[i][j]: votes for i over j; a tie counts half to each side
    response_count: int
    version: int


class Vote(msgspec.Struct):
    task_id: str
    annotator_id: str
    winner: int
    loser: int
    tie: bool
    created_at: float
    chose_first: bool | None = None  # the winner was the one shown first (left); None for a tie or unknown
    shown_at: float | None = None  # when its task was first on the annotator's screen (time on task)
    # Left out of results, matrices and fits: its annotator was suspended while the item took answers.
    excluded: bool = False
    # Absolute ranking flows: "good" or "bad" when the answer was "both good" / "both bad" (then `tie` is true:
    # in the win-loss matrix such an answer counts half a win each way, as a tie does).
    level: str | None = None


# ---------------------------------------------------------------- live events


class ItemEvent(msgspec.Struct):
    """One coalesced SSE message about an item; `delta` holds [winner, loser, tie] since the last message."""

    item_id: str
    flow_id: str
    version: int
    state: ItemStateName
    response_count: int
    leases_out: int
    delta: list[tuple[int, int, int]]  # votes since the previous message
    # True on a subscriber's first message (or a resume from an unknown position): it carries no delta but the
    # whole win-loss matrix in `counts`, so a new subscriber never receives the vote history.
    full: bool
    counts: list[list[float]] | None = None


class ItemSummary(msgspec.Struct):
    id: str
    state: ItemStateName
    response_count: int
    max_response_threshold: int
    min_response_threshold: int
    deadline: float
    version: int


class FlowEvent(msgspec.Struct):
    flow_id: str
    version: int
    instruction: str
    config_version: int
    items: list[ItemSummary]  # the items that changed since the subscriber's last message
    deleted: bool = False


# ---------------------------------------------------------------- keys, annotators, media


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class KeyCreated(msgspec.Struct):
    id: str
    name: str
    key: str
    admin: bool


class KeyInfo(msgspec.Struct):
    """A researcher API key as listed: never the secret, which is kept only as a hash."""

    id: str
    name: str
    admin: bool
    created_at: float
    revoked: bool


WEBHOOK_EVENTS = ("item.completed", "answer.created", "project.completed", "eval.checkpoint", "eval.divergence")


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    """An endpoint to push events to: every flow of the key's, or one (`flow_id`)."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    events: list[str] = msgspec.field(default_factory=lambda: ["item.completed"])
    flow_id: str | None = None
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""


class Webhook(msgspec.Struct):
    id: str
    url: str
    events: list[str]
    flow_id: str | None
    description: str
    created_at: float


class WebhookCreated(Webhook):
    """A new endpoint with its signing secret, shown once: verify `webhook-signature` with it."""

    secret: str


class WebhookDelivery(msgspec.Struct):
    """One event sent to one endpoint: `pending` (being tried), `delivered` (a 2xx came back) or `failed`
    (every retry used up), with the last attempt's HTTP status or error."""

    id: str
    msg_id: str
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: float
    response_status: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    next_attempt_at: float | None = None
    payload: Any = None


# ------------------------------------------------------------------ batch projects

ProjectStateName = Literal["open", "running", "paused", "completed"]


class ProjectCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A batch project on one of the key's flows: its tasks are uploaded next (`POST .../tasks`), then `start`
    serves them, keeping at most `live_items` of the project's items live at once."""

    flow_id: str
    name: Name
    live_items: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None


class ProjectItemIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One item of a project, as a flow batch without a time-to-live: a project's items run until answered."""

    datapoints: list[DatapointIn]
    context: Context | None = None
    context_assets: list[ContextAsset] = []
    private_metadata: dict[str, Any] | None = None
    pairs: list[tuple[int, int]] | None = None


class ProjectTasks(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[ProjectItemIn], msgspec.Meta(min_length=1, max_length=500)]


class ProjectStatus(msgspec.Struct):
    """Where a project stands. Progress counts answers in the flow's own unit (votes of a pair task,
    answers per datapoint of labels and RLHF tasks): `answers_done` of `answers_needed` (an ended item's
    count as done), `rate` answers per second over the last minute of running, `eta_seconds` what is left at
    that rate. A task is done once the item it is in has ended."""

    id: str
    name: str
    flow_id: str
    kind: TaskKindName
    state: ProjectStateName
    tasks_total: int
    tasks_done: int
    items_total: int
    items_done: int
    items_live: int
    items_queued: int
    live_items: int
    answers_needed: int
    answers_done: int
    answers_received: int
    rate: float | None
    eta_seconds: float | None
    created_at: float
    started_at: float | None
    completed_at: float | None
    server_time: float


class ProjectExportItem(msgspec.Struct):
    """An ended item of a project with everything its deliverable needs: what was asked, the kind's results,
    and every answer (votes, labels or annotations)."""

    detail: ItemDetail
    results: Any
    answers: list[Any]


class ProjectExportPage(msgspec.Struct):
    project: ProjectStatus
    items: list[ProjectExportItem]
    next: str | None  # pass as `after` for the next page; None when this is the last


class AnnotatorCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class AnnotatorCreated(msgspec.Struct):
    id: str
    name: str
    token: str
    join_url: str


AnnotatorState = Literal["active", "qualifying", "screened_out", "suspended"]


class Finish(msgspec.Struct, omit_defaults=True):
    """How a person's work ends, for their page: why, the code to give their platform, and where to go next."""

    reason: Literal["quota", "no_work", "screened_out"]
    code: str | None = None
    redirect_url: str | None = None  # Prolific: the study's completion URL with the code


class AnnotatorStats(msgspec.Struct):
    id: str
    name: str
    created_at: float
    revoked: bool
    votes: int
    gold_answered: int
    gold_correct: int
    gold_agreement: float | None
    last_seen: float | None
    state: AnnotatorState = "active"
    audience_id: str | None = None  # enrolled through a link of this audience
    participant: str | None = None  # their id on the platform they came from (Prolific's PROLIFIC_PID, ...)
    quota: int | None = None  # answers asked of them by their link
    suspended_at: float | None = None
    finish: Finish | None = None  # set once their quota is done, or they were screened out


class AnnotatorReport(msgspec.Struct):
    """GET /v1/annotators/report: one person's work in a time window (answers by when they were given), read
    from the answer tables. Time on task is answered - shown - hidden, floored at 0; `active_minutes` sums it with
    each task capped at `ACTIVE_CAP` seconds (a task left on screen over a break counts as that much)."""

    annotator_id: str
    name: str
    state: AnnotatorState
    audience_id: str | None
    participant: str | None
    answers: int  # answers to the flows' questions (votes, labels, annotations)
    gold_answers: int  # check questions with a known answer, mixed into flows
    quiz_answers: int  # qualification quiz questions
    gold_agreement: float | None  # share of gold answers right
    consensus_compared: int  # answers others also answered (see `consensus_agreement`)
    consensus_agreement: float | None  # share of those that agree with the others' majority (per kind)
    median_seconds: float | None  # median time on task, over answers whose shown time is known
    active_minutes: float
    first_seen: float | None  # when the first answer's task was shown (else answered)
    last_seen: float | None  # when the last answer was given
    suspended_at: float | None


class PayRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """POST /v1/annotators/pay: a rule for what a person is owed: `per_answer` for each paid answer (gold and,
    for those admitted, quiz answers included), `per_hour` for each active hour, and `bonus` for gold agreement
    above a mark; over the answers of an audience's people (None: all yours) given in [since, until)."""

    per_answer: float = 0.0
    per_hour: float = 0.0
    bonus: Bonus | None = None
    pay_suspended: bool = False  # also pay a suspended person's answers given after their suspension
    pay_screened_out: bool = False  # pay a screened-out person's quiz answers (by default they are owed nothing)
    audience_id: str | None = None
    since: float | None = None
    until: float | None = None


class Bonus(msgspec.Struct, forbid_unknown_fields=True):
    """`amount` to each person whose gold agreement is above `gold_above`, with at least `min_gold` gold answers."""

    amount: float
    gold_above: float
    min_gold: int = 1


class Payment(msgspec.Struct):
    """GET /v1/annotators/pay: what one person is owed under a `PayRequest`'s rule, and what it is made of."""

    annotator_id: str
    name: str
    state: AnnotatorState
    audience_id: str | None
    participant: str | None
    paid_answers: int
    active_hours: float
    gold_agreement: float | None
    answer_pay: float
    hourly_pay: float
    bonus: float
    amount: float  # the sum, rounded to cents


# ---------------------------------------------------------------- audiences and enrollment

Platform = Literal["prolific", "url"]


class Qualification(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A quiz of gold questions from a validation set that a person must pass before they are served work."""

    validation_set_id: str
    questions: Annotated[int, msgspec.Meta(ge=1, le=200)] = 5
    pass_mark: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.8  # share of quiz answers that must be right
    feedback: bool = False  # after each answer, say what was expected and why (the gold's explanation)


class AudienceCreate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Name
    description: str | None = None
    qualification: Qualification | None = None
    # Continuous gold: suspend a member whose agreement falls below this once they answered `min_gold` gold.
    suspend_below: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    min_gold: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] = 10


class Audience(msgspec.Struct):
    id: str
    name: str
    description: str | None
    qualification: Qualification | None
    suspend_below: float | None
    min_gold: int
    created_at: float
    enrolled: int = 0
    qualified: int = 0  # admitted: passed the quiz (or there is none)
    screened_out: int = 0
    suspended: int = 0
    active_now: int = 0  # seen in the last five minutes


class LinkCreate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] | None = None  # people who may enroll
    expires_in: Annotated[float, msgspec.Meta(gt=0)] | None = None  # seconds from now
    platform: Platform | None = None  # None: a team invitation (people type a display name)
    id_param: str | None = None  # platform "url": the query parameter naming the participant (workerId, ...)
    completion_code: str | None = None
    screen_out_code: str | None = None
    quota: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] | None = None  # answers per person


class EnrollmentLink(msgspec.Struct):
    id: str
    audience_id: str
    url: str
    platform: Platform | None
    id_param: str | None
    limit: int | None
    expires_at: float | None
    completion_code: str | None
    screen_out_code: str | None
    quota: int | None
    enrolled: int
    revoked: bool
    created_at: float


class LinkInfo(msgspec.Struct):
    """What the page needs before enrolling someone through a link (GET /v1/enroll/{secret}, no key)."""

    audience: str
    description: str | None
    platform: Platform | None
    id_param: str | None  # the query parameter that names the participant
    needs_name: bool  # a team invitation: the person types a display name
    qualification: bool


class EnrollRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    params: dict[str, str] = {}  # the link's query parameters as the platform filled them in
    name: str | None = None  # a team invitation: the display name the person typed


class Enrolled(msgspec.Struct):
    annotator_id: str
    name: str
    token: str
    audience_id: str
    state: AnnotatorState
    resumed: bool  # this participant had enrolled before: the same annotator, the same token


class MediaRef(msgspec.Struct):
    sha256: str
    media_type: str
    kind: DatapointKind
    size: int


class Preheated(msgspec.Struct):
    warm_ms: float
    annotators_notified: int
    hot_until: float


class Me(msgspec.Struct):
    id: str
    name: str
    role: Literal["admin", "researcher", "annotator"]


# ---------------------------------------------------------------- annotator protocol


class DatapointView(msgspec.Struct, omit_defaults=True):
    """What an annotator sees of a datapoint: content only, never its key or private metadata."""

    ref: int  # position in the item, so a simulated annotator can look its oracle up
    kind: DatapointKind
    text: str | None = None
    url: str | None = None
    media_type: str | None = None
    context: str | None = None


class Task(msgspec.Struct):
    task_id: str
    item_id: str
    flow_id: str
    instruction: str
    context: str | None
    context_assets: list[ContextAsset]
    a: DatapointView
    b: DatapointView | None  # None for classify tasks
    allow_ties: bool
    render_markdown: bool
    lease_expires_at: float
    lease_seconds: float
    server_time: float
    kind: TaskKindName = "pairwise"
    categories: list[Category] | None = None  # classify tasks: the buttons, in order
    settings: dict[str, str] = {}  # the flow's feature flags (flowlab.settings) for the page to honour
    absolute: bool = False  # ranking tasks: "both good" / "both bad" may be answered beside a, b (and tie)
    rlhf: RlhfTaskView | None = None  # RLHF tasks: the conversation, the responses and the form
    chat: ChatTaskView | None = None  # chat tasks
    listwise: ListwiseTaskView | None = None  # listwise tasks: the k datapoints to order
    write: WriteTaskView | None = None  # write tasks


class TaskRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    wait: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.0  # seconds to wait for work before answering 204


class TaskBatchRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    n: int = 50
    wait: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.0


class TaskBatch(msgspec.Struct):
    tasks: list[Task]
    poll_interval: float


class Answer(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    # Pairwise tasks: "a", "b", "tie" (on absolute flows also "both_good", "both_bad"); classify tasks: one of the
    # task's category values; any task: "skip".
    choice: str
    fetch_next: bool = False  # answer and lease the next task in one round trip
    rlhf: RlhfAnswer | None = None  # RLHF tasks: choice "submit" with the annotation, or "skip"
    chat: ChatAnswer | None = None  # chat tasks: choice "submit" with the annotated conversation, or "skip"
    listwise: ListwiseAnswer | None = None  # listwise tasks: choice "submit" with the order (or best and worst)
    write: WriteAnswer | None = None  # write tasks: choice "submit" with the text, or "skip"
    # Seconds the page's tab was hidden while the task was on screen (the Page Visibility API): not time on task.
    hidden_seconds: float | None = None


class AnswerIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    task_id: str
    choice: str  # as in Answer
    hidden_seconds: float | None = None  # as in Answer


class AnswerBatch(msgspec.Struct, forbid_unknown_fields=True):
    answers: list[AnswerIn]


class Ack(msgspec.Struct, omit_defaults=True):
    task_id: str
    status: Literal["accepted", "duplicate", "skipped", "rejected"]
    detail: str | None = None
    code: str | None = None
    next: Task | None = None
    explanation: str | None = None  # a gold question answered wrong, where its set explains the answer
    field: str | None = None  # a rejected RLHF annotation: the part that is missing or wrong


class AckBatch(msgspec.Struct):
    results: list[Ack]


class Shown(msgspec.Struct):
    """POST /v1/tasks/{task_id}/shown: the task is on the annotator's screen. Its lease's clock started again
    when it was first shown (`shown_at`), so time spent held behind another task is not the annotator's."""

    task_id: str
    lease_expires_at: float
    shown_at: float | None  # None only for a task whose answer was already on its way when this arrived
    server_time: float


# ------------------------------------------------------------------ evals of a training run

EVAL_EVENTS = ("eval.checkpoint", "eval.divergence")
MAX_EVAL_PROMPTS = 1000


class EvalCreate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Held-out prompts and an anchor: at each checkpoint people compare the policy's completion of every prompt
    with the anchor's (a frozen reference model's completions, given here, or `"previous"`: the previous
    checkpoint's)."""

    name: Name
    prompts: Annotated[list[Context], msgspec.Meta(max_length=MAX_EVAL_PROMPTS)]
    anchor: list[Text] | Literal["previous"]
    tags: list[list[str]] | None = None  # per prompt, its problem areas ("maths", "refusals")
    anchor_metadata: list[dict[str, Any]] | None = None  # per anchor completion: private metadata (true_score)
    kind: TaskKindName = "pairwise"
    instruction: Instruction = "Which response answers the prompt better?"
    votes_per_pair: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    time_to_live: float = 3600.0  # seconds each checkpoint's comparisons are served
    window: Annotated[int, msgspec.Meta(ge=3, le=100)] = 4  # checkpoints the sentinel looks back over
    alpha: Annotated[float, msgspec.Meta(gt=0.0, lt=0.5)] = 0.05
    metadata: dict[str, Any] | None = None
    # A fixed anchor's eval: also compare each checkpoint with the previous one directly (twice the votes), so
    # the Bradley–Terry scale has checkpoint-to-checkpoint edges as well as the anchor's.
    compare_previous: bool = False


class Eval(msgspec.Struct):
    id: str
    name: str
    flow_id: str
    prompts: list[str]
    tags: list[list[str]]
    anchor: Literal["fixed", "previous"]
    kind: TaskKindName
    votes_per_pair: int
    time_to_live: float
    window: int
    alpha: float
    created_at: float
    steps: list[int]  # checkpoints so far, ascending
    metadata: dict[str, Any] | None = None
    compare_previous: bool = False


class CheckpointCreate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The policy's completions of the eval's prompts at a training step, in the prompts' order."""

    step: Annotated[int, msgspec.Meta(ge=0)]
    completions: list[Text]
    proxy_reward: float | list[float] | None = None  # the trainer's mean proxy reward, or one per completion
    metadata: list[dict[str, Any]] | None = None  # per completion: private metadata the crowd's oracle reads


class EvalCheckpoint(msgspec.Struct):
    eval_id: str
    step: int
    item_ids: list[str]  # one comparison item per prompt (none for the first checkpoint of a "previous" eval)
    proxy_reward: float | None
    votes: float
    wins: float  # votes the checkpoint won against its anchor; a tie counts half
    created_at: float
    divergence: bool = False
    previous_item_ids: list[str] = []  # with compare_previous: one item per prompt against the previous checkpoint
    ended: bool = False  # every item of the checkpoint has ended and its final counts are in the history


class EvalDivergence(msgspec.Struct):
    """The sentinel's latest check (flowlab.ranking.check_divergence over the history's "all" rows)."""

    fired: bool
    step: int | None
    window: int
    proxy_slope: float | None  # None where the statistic is undefined (JSON has no NaN)
    proxy_p: float | None
    win_slope: float | None
    win_high: float | None
    reason: str


class EvalRow(msgspec.Struct):
    """One checkpoint and tag ("all" for every prompt): the human win rate against the anchor with its 95 %
    Wilson interval, and the checkpoint's Bradley–Terry score (logit) on the scale shared by the eval's
    checkpoints, with its reference (the anchor, or the first checkpoint of a "previous" eval) at 0."""

    step: int
    tag: str
    win_rate: float | None
    win_low: float | None
    win_high: float | None
    votes: float
    wins: float
    score: float | None
    score_low: float | None
    score_high: float | None
    proxy_reward: float | None
    divergence: bool


class EvalHistory(msgspec.Struct):
    eval_id: str
    rows: list[EvalRow]
    divergence: EvalDivergence | None  # None until the history holds a full window of checkpoints
    checkpoints: list[EvalCheckpoint] = []


class EvalEvent(msgspec.Struct, omit_defaults=True):
    """An eval's event, over SSE (`GET /v1/evals/{id}/events`, the SSE `event:` being `type`) and webhooks."""

    type: Literal["eval.checkpoint", "eval.divergence"]
    eval_id: str
    flow_id: str
    step: int
    rows: list[EvalRow] = []  # eval.checkpoint: the checkpoint's rows, "all" and per tag
    divergence: EvalDivergence | None = None  # eval.divergence: the check that fired

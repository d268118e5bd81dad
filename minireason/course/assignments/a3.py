"""A3: prompt building and loss masking, graded against the package and the README's spec.

The student implements, in ``tutorials/assignments/A3_prompts/prompts_student.py``, on plain
lists of token ids and small dicts (no tokenizer needed)::

    select_history(reviews, target_time, max_items)          -> list of review dicts
    build_prompt(history, item_tags, max_tokens, special)    -> list[int]
    finetune_example(prompt_ids, reason_ids, eos_id, context) -> (ids, loss_mask)
    next_token_targets(ids, loss_mask)                       -> (inputs, targets, target_mask)
    masked_cross_entropy(logits, targets, mask)              -> float

A review / history dict is ``{"item": str, "time": int, "tags": [[int]], "aspects": [[int]],
"rating": [int]}``: every tag, aspect and the rating piece already encoded as token ids.

References: ``build_prompt`` is compared with :func:`minireason.prep.prompts.build_prompt` (fed
through a tiny lookup tokenizer that encodes each piece as the ids the student sees);
``finetune_example`` with :func:`minireason.prep.prepare.finetune_sequences`;
``masked_cross_entropy`` with :func:`minireason.nn.layers.cross_entropy_forward`;
``select_history`` and ``next_token_targets`` with the specification in the assignment's
README (what ``minireason.prep.prepare`` and training do, reduced to one function each).
"""

from __future__ import annotations

import numpy as np

from minireason.course.grading import Case, GradedTest, WrongAnswer, call, expect_tuple
from minireason.course.wire import type_name
from minireason.nn.layers import cross_entropy_forward
from minireason.prep.features import HistoryItem
from minireason.prep.prepare import finetune_sequences
from minireason.prep.prompts import build_prompt as reference_build_prompt
from minireason.prep.tokenizer import SPECIAL_TOKENS

NAME = "A3"
TITLE = "Prompt building and loss masking"
STUDENT_FILE = "tutorials/assignments/A3_prompts/prompts_student.py"
STUDENT_API = (
    "select_history",
    "build_prompt",
    "finetune_example",
    "next_token_targets",
    "masked_cross_entropy",
)

HIDDEN = "after_due_date"
SPECIAL = {token: i for i, token in enumerate(SPECIAL_TOKENS)}  # <pad>=0 <eos>=1 ... <sep>=5
FIRST_ID = len(SPECIAL)  # ordinary token ids start here


# --------------------------------------------------------------------------- helpers


def expect_ids(what: str, got, expected: list[int]) -> None:
    """Raise :class:`WrongAnswer` unless ``got`` is a sequence of ints equal to ``expected``."""
    if isinstance(got, np.ndarray):
        got = got.tolist()
    if not isinstance(got, (list, tuple)) or not all(
        isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in got
    ):
        raise WrongAnswer(f"{what}: expected a list of ints, got {type(got).__name__} {got!r:.80}")
    got = [int(i) for i in got]
    if got == expected:
        return
    first = next(
        (i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected))
    )
    raise WrongAnswer(
        f"{what}: expected {len(expected)} ids, got {len(got)}; first difference at position "
        f"{first}: expected {expected[first : first + 6]}, got {got[first : first + 6]} "
        f"(whole expected: {expected})"
    )


class _PieceTokenizer:
    """What :func:`minireason.prep.prompts.build_prompt` asks of a tokenizer: ``special`` ids and
    ``encode_piece(text)``; here a lookup table from piece text to the ids students see."""

    def __init__(self, pieces: dict[str, list[int]]):
        self.special = dict(SPECIAL)
        self.pieces = pieces

    def encode_piece(self, text: str) -> list[int]:
        return list(self.pieces[text])


class _Scenario:
    """Random history and item tags, as student dicts and as the package's records."""

    def __init__(self, rng, n_history: int, n_item_tags: int):
        self.rng = rng
        self.pieces: dict[str, list[int]] = {}
        self.history, self.reference_history = [], []
        for h in range(n_history):
            tags = [self._piece(f"tag{h}.{j}") for j in range(int(rng.integers(1, 4)))]
            aspects = [self._piece(f"asp{h}.{j}") for j in range(int(rng.integers(0, 3)))]
            rating = float(rng.integers(1, 6))
            if f" rated {rating:g}" not in self.pieces:  # one piece per rating value
                self._piece(f"rated {rating:g}")
            self.history.append(
                {
                    "item": f"i{h}",
                    "time": 100 * h,
                    "tags": [t[1] for t in tags],
                    "aspects": [a[1] for a in aspects],
                    "rating": self.pieces[f" rated {rating:g}"],
                }
            )
            self.reference_history.append(
                HistoryItem(f"i{h}", [t[0] for t in tags], [a[0] for a in aspects], rating)
            )
        item = [self._piece(f"item.{j}") for j in range(n_item_tags)]
        self.item_tags = [ids for _, ids in item]
        self.item_labels = [label for label, _ in item]
        self.tokenizer = _PieceTokenizer(self.pieces)

    def _piece(self, label: str):
        ids = [int(i) for i in self.rng.integers(FIRST_ID, 500, size=int(self.rng.integers(1, 4)))]
        self.pieces[" " + label] = ids
        return label, ids

    def block_sizes(self) -> list[int]:
        """Token count of each history block: <hist> tags <sep> aspects <sep> rating."""
        return [
            3 + sum(map(len, h["tags"])) + sum(map(len, h["aspects"])) + len(h["rating"])
            for h in self.history
        ]

    def item_size(self) -> int:
        return 2 + sum(map(len, self.item_tags))

    def expected(self, max_tokens: int) -> list[int]:
        return reference_build_prompt(
            self.reference_history, self.item_labels, max_tokens, self.tokenizer
        ).ids


def _check_prompt(scenario: _Scenario, max_tokens: int, what: str) -> Case:
    expected = scenario.expected(max_tokens)

    def check(outputs):
        expect_ids(f"build_prompt ({what}, max_tokens={max_tokens})", outputs["ids"], expected)
        return f"{what}, max_tokens={max_tokens}"

    args = (scenario.history, scenario.item_tags, max_tokens, dict(SPECIAL))
    return Case([call("ids", "build_prompt", *args)], check)


def _budget_dropping(scenario: _Scenario, rng, n_kept: int) -> int:
    """A max_tokens that keeps exactly the newest ``n_kept`` blocks (the next one is too big)."""
    sizes = scenario.block_sizes()
    kept = sum(sizes[len(sizes) - n_kept :])
    next_size = sizes[len(sizes) - n_kept - 1]
    return scenario.item_size() + kept + int(rng.integers(0, next_size))


# --------------------------------------------------------------------------- history


def _reference_history(reviews, target_time, max_items):
    """The README's rule: time strictly before the target, oldest first (stable), the last
    ``max_items``."""
    earlier = sorted((r for r in reviews if r["time"] < target_time), key=lambda r: r["time"])
    return earlier[-max_items:]


def _check_history(reviews, target_time, max_items, what) -> Case:
    def check(outputs):
        got = outputs["history"]
        if not isinstance(got, (list, tuple)) or not all(isinstance(r, dict) for r in got):
            raise WrongAnswer(f"select_history ({what}): expected a list of the review dicts")
        got_items = [r.get("item") for r in got]
        expected = [r["item"] for r in _reference_history(reviews, target_time, max_items)]
        if got_items != expected:
            raise WrongAnswer(
                f"select_history ({what}, target time {target_time}, max_items "
                f"{max_items}): expected items {expected}, got {got_items}"
            )
        return what

    return Case([call("history", "select_history", reviews, target_time, max_items)], check)


def history_fixed(rng) -> Case:
    reviews = [
        {"item": item, "time": time}
        for item, time in [
            ("b", 300),
            ("target", 500),
            ("a", 100),
            ("later", 900),
            ("c", 400),
            ("d", 200),
        ]
    ]
    return _check_history(reviews, 500, 3, "6 reviews out of time order, target in them")


def history_random(rng) -> Case:
    n = int(rng.integers(4, 12))
    times = rng.choice(np.arange(1000), size=n, replace=False)
    reviews = [{"item": f"r{i}", "time": int(t)} for i, t in enumerate(times)]
    target = reviews[int(rng.integers(1, n))]  # the target review is in the list
    max_items = int(rng.integers(1, n))
    return _check_history(reviews, target["time"], max_items, f"{n} random reviews")


# --------------------------------------------------------------------------- prompts


def prompt_fits_fixed(rng) -> Case:
    scenario = _Scenario(np.random.default_rng(2024), n_history=2, n_item_tags=2)
    return _check_prompt(scenario, 200, "2 history blocks, all fit")


def prompt_drops_oldest_fixed(rng) -> Case:
    scenario = _Scenario(np.random.default_rng(2024), n_history=3, n_item_tags=2)
    max_tokens = _budget_dropping(scenario, np.random.default_rng(1), n_kept=2)
    return _check_prompt(scenario, max_tokens, "3 history blocks, the oldest dropped")


def prompt_cold_start_fixed(rng) -> Case:
    scenario = _Scenario(np.random.default_rng(7), n_history=0, n_item_tags=3)
    return _check_prompt(scenario, 50, "no history (cold start)")


def prompt_fits_random(rng) -> Case:
    scenario = _Scenario(
        rng, n_history=int(rng.integers(1, 6)), n_item_tags=int(rng.integers(0, 5))
    )
    max_tokens = scenario.item_size() + sum(scenario.block_sizes()) + int(rng.integers(0, 4))
    return _check_prompt(scenario, max_tokens, f"{len(scenario.history)} history blocks, all fit")


def prompt_drops_random(rng) -> Case:
    n = int(rng.integers(3, 7))
    scenario = _Scenario(rng, n_history=n, n_item_tags=int(rng.integers(1, 4)))
    n_kept = int(rng.integers(1, n))
    max_tokens = _budget_dropping(scenario, rng, n_kept)
    return _check_prompt(scenario, max_tokens, f"{n} history blocks, {n_kept} fit")


def prompt_item_cut_random(rng) -> Case:
    n_tags = int(rng.integers(3, 7))
    scenario = _Scenario(rng, n_history=int(rng.integers(0, 3)), n_item_tags=n_tags)
    n_fit = int(rng.integers(0, n_tags))
    fitting = 2 + sum(len(t) for t in scenario.item_tags[:n_fit])
    max_tokens = fitting + int(rng.integers(0, len(scenario.item_tags[n_fit])))
    return _check_prompt(scenario, max_tokens, f"{n_tags} item tags, {n_fit} fit")


# --------------------------------------------------------------------------- fine-tuning


class _ReasonTokenizer:
    """What :func:`minireason.prep.prepare.finetune_sequences` asks of a tokenizer."""

    def __init__(self, reason_ids: list[int]):
        self.reason_ids = reason_ids
        self.eos_id = SPECIAL["<eos>"]

    def encode_batch(self, texts):
        return [list(self.reason_ids) for _ in texts]


def _check_finetune(prompt, reason, context, what) -> Case:
    def check(outputs):
        result = outputs["example"]
        ids, mask = expect_tuple("finetune_example must return (ids, loss_mask); it", result, 2)
        records = [{"target": "the reason", "seq": -1}]
        ref, _ = finetune_sequences(records, [list(prompt)], _ReasonTokenizer(reason), context)
        expect_ids(f"finetune_example ids ({what})", ids, ref.ids.tolist())
        expect_ids(f"finetune_example loss_mask ({what})", mask, ref.loss_mask.tolist())
        return what

    args = (list(prompt), list(reason), SPECIAL["<eos>"], context)
    return Case([call("example", "finetune_example", *args)], check)


def finetune_fixed(rng) -> Case:
    prompt = [2, 40, 41, 5, 42, 5, 43, 3, 44, 4]
    return _check_finetune(prompt, [60, 61, 62], 32, "10 prompt, 3 reason tokens")


def finetune_cut_random(rng) -> Case:
    prompt = [int(i) for i in rng.integers(FIRST_ID, 500, size=int(rng.integers(3, 12)))]
    reason = [int(i) for i in rng.integers(FIRST_ID, 500, size=int(rng.integers(4, 15)))]
    context = len(prompt) + 1 + int(rng.integers(1, len(reason)))  # the reason must be cut
    what = f"{len(prompt)} prompt, {len(reason)} reason tokens, context {context}"
    return _check_finetune(prompt, reason, context, what)


def next_token_fixed(rng) -> Case:
    ids = [3, 44, 4, 60, 61, 1]
    mask = [0, 0, 0, 1, 1, 1]
    what = f"ids {ids}, loss_mask {mask}"

    def check(outputs):
        inputs, targets, target_mask = expect_tuple(
            "next_token_targets must return (inputs, targets, target_mask); it",
            outputs["shifted"],
            3,
        )
        expect_ids(f"inputs ({what})", inputs, ids[:-1])
        expect_ids(f"targets ({what})", targets, ids[1:])
        expect_ids(
            f"target_mask ({what}): a target counts when IT is a reason/eos token",
            target_mask,
            mask[1:],
        )
        return what

    return Case([call("shifted", "next_token_targets", list(ids), list(mask))], check)


# --------------------------------------------------------------------------- cross-entropy


def _check_ce(logits, targets, mask, what) -> Case:
    def check(outputs):
        got = outputs["loss"]
        if isinstance(got, (np.ndarray, np.generic)) and np.size(got) == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise WrongAnswer(
                f"masked_cross_entropy ({what}): expected a number, got {type_name(got)}"
            )
        value = float(got)
        expected = float(cross_entropy_forward(logits.copy(), targets, mask)[0])
        if not np.isfinite(value) or not np.isclose(value, expected, rtol=1e-6, atol=1e-9):
            raise WrongAnswer(
                f"masked_cross_entropy ({what}): expected {expected:.8g}, got {value:.8g}"
            )
        return what

    return Case([call("loss", "masked_cross_entropy", logits, targets, mask)], check)


def ce_fixed(rng) -> Case:
    logits = np.array(
        [
            [2.0, 0.5, -1.0, 0.0],
            [1000.0, 998.0, 990.0, 1001.0],
            [0.0, 0.0, 0.0, 0.0],
            [-3.0, 4.0, 1.0, 0.5],
        ]
    )
    targets = np.array([0, 3, 2, 1])
    mask = np.array([0, 1, 0, 1])
    return _check_ce(logits, targets, mask, "4x4 logits (one row near 1000), mask 0101")


def ce_random(rng) -> Case:
    n, v = int(rng.integers(3, 20)), int(rng.integers(2, 30))
    logits = 3.0 * rng.normal(size=(n, v))
    targets = rng.integers(0, v, size=n)
    mask = (rng.random(n) < 0.5).astype(np.int64)
    mask[0], mask[-1] = 0, 1  # some tokens out, some in
    return _check_ce(logits, targets, mask, f"{n}x{v} logits, {int(mask.sum())} counted")


TESTS = [
    GradedTest(
        "history_fixed",
        8,
        history_fixed,
        "visible",
        "history: strictly earlier reviews, oldest first, the last max_items",
    ),
    GradedTest(
        "prompt_fits_fixed",
        10,
        prompt_fits_fixed,
        "visible",
        "prompt with 2 history blocks, all fit",
    ),
    GradedTest(
        "prompt_drops_oldest_fixed",
        10,
        prompt_drops_oldest_fixed,
        "visible",
        "prompt over budget: the oldest block is dropped",
    ),
    GradedTest(
        "prompt_cold_start_fixed", 5, prompt_cold_start_fixed, "visible", "prompt without history"
    ),
    GradedTest(
        "finetune_fixed",
        8,
        finetune_fixed,
        "visible",
        "prompt + reason + <eos>, mask on reason and <eos>",
    ),
    GradedTest(
        "next_token_fixed",
        7,
        next_token_fixed,
        "visible",
        "inputs, targets and their mask, shifted by one",
    ),
    GradedTest("ce_fixed", 8, ce_fixed, "visible", "masked mean cross-entropy, fixed"),
    GradedTest("history_random", 7, history_random, HIDDEN, "history, random times"),
    GradedTest("prompt_fits_random", 7, prompt_fits_random, HIDDEN, "prompt, random, all fit"),
    GradedTest(
        "prompt_drops_random",
        8,
        prompt_drops_random,
        HIDDEN,
        "prompt, random, oldest blocks dropped",
    ),
    GradedTest(
        "prompt_item_cut_random",
        5,
        prompt_item_cut_random,
        HIDDEN,
        "prompt, random, item tags cut from the end",
    ),
    GradedTest(
        "finetune_cut_random", 7, finetune_cut_random, HIDDEN, "reason cut to fit the context"
    ),
    GradedTest("ce_random", 10, ce_random, HIDDEN, "masked mean cross-entropy, random"),
]

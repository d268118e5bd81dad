"""The run directory: what ``minireason train`` writes, and what later stages read back.

::

    RUN/run.json             written first: format, format_version, the prepared directory the
                             run is trained on (path, content identity, prompt budget, context,
                             focus size, history length, vocabulary size), how a reason is
                             chosen: the decoding settings (:class:`Decoding`) and the
                             score's weights (:class:`ScoreWeights`); and the preset values
                             ``train --set`` changed (``overrides``)
    RUN/preset.json          the preset used (resolved)
    RUN/tokenizer.json       the prepared tokenizer, copied (the run is self-contained)
    RUN/features.json        the prepared feature set, rates and focus size, copied (what
                             free-form ``explain`` needs to predict a focus)
    RUN/pretrain/            checkpoint.npz/.json and loss.png of stage 1
    RUN/finetune/            checkpoint.npz/.json and loss.png of stage 2 (the model to use)
    RUN/train_report.json    steps, final losses and seconds of each stage

A run's identity (:func:`run_content`) is a SHA-256 over the files its explanations depend
on (:data:`CONTENT_FILES`), so a job that records it (``explain-all``'s manifest) can tell
the same run from a retrained or resumed one wherever the directory lives.

Everything after training reads the prompt budget, the focus size, the decoding settings and
the score's weights from here (:func:`read_run_info`), never from defaults of its own: a
free-form prompt is built to the budget the model was fine-tuned with, and an old run keeps
the settings it was trained and tuned with when the defaults move on. A weights file
(``minireason tune`` writes one, :func:`load_weights` reads it) given as ``--weights FILE``
replaces the recorded weights for one command, and that command's output records which.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from minireason.files import Kind, atomic_write_json, json_object, read_versioned_json, sha256_file
from minireason.nn.checkpoint import JSON_NAME, load_checkpoint, model_from
from minireason.options import option
from minireason.prep.tokenizer import BPETokenizer

FORMAT = "minireason-run"
FORMAT_VERSION = 2  # 2: the score's weights
READS = (1, 2)  # a format-1 run.json is read with the weights of its release (WEIGHTS_0_2)
WEIGHTS_FORMAT = "minireason-weights"
WEIGHTS_FORMAT_VERSION = 1
RUN_JSON = "run.json"
REPORT_JSON = "train_report.json"  # written last: the run is finished
CONTENT_FILES = (  # what the fine-tuned model's explanations depend on: the run's identity
    RUN_JSON,
    "tokenizer.json",
    "features.json",
    "finetune/checkpoint.json",
    "finetune/checkpoint.npz",
)


@dataclass(frozen=True)
class Decoding:
    """How step 4 decodes a reason: ``n_candidates`` samples at ``temperature`` with nucleus
    ``top_p``, each at most ``max_new_tokens`` long, and the best-scored one is kept.

    The defaults were chosen on the validation split of Musical Instruments with the small
    preset (docs/quality.md's "How the settings were chosen" lists the runs and their numbers).
    """

    n_candidates: int = 16
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 40

    def __post_init__(self):
        for name in ("n_candidates", "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"decoding: {name} must be a positive integer, got {value!r}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0):
            raise ValueError(
                f"decoding: temperature must be a number >= 0, got {self.temperature!r}"
            )
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"decoding: top_p must be in (0, 1], got {self.top_p!r}")
        if not math.isfinite(self.temperature):
            raise ValueError(f"decoding: temperature must be finite, got {self.temperature!r}")

    def replace(self, **changes) -> Decoding:
        """A copy with the given fields changed; ``None`` values are ignored (so CLI flags
        that were not given keep the run's settings)."""
        given = {k: v for k, v in changes.items() if v is not None}
        return Decoding(**{**asdict(self), **given})


@dataclass(frozen=True)
class ScoreWeights:
    """The weights of the score that chooses a reason among the candidates, one per term of
    :data:`minireason.reason.scoring.SCORE_PARTS` (the formula is in that module's
    docstring). A run records the weights it explains with in ``run.json``; ``--weights
    FILE`` replaces them for one command.

    The defaults (what a new run records) were chosen on the validation split of Musical
    Instruments with the small preset (``docs/quality.md`` lists the settings tried and
    their numbers); ``echo``, ``unknown`` and ``specific`` by blind readings, not by the
    tuner.
    """

    user: float = 0.0
    item: float = 1.0
    focus: float = 1.0
    phrasing: float = 1.0
    specific: float = 1.0
    logprob: float = 0.0
    lowest: float = 0.0
    length: float = 0.0
    consensus: float = 1.0
    repetition: float = 1.0
    echo: float = 0.25
    unknown: float = 1.0
    degenerate: float = 2.0
    unfinished: float = 0.25
    contradicts: float = 0.25
    duplicate: float = 1.0
    truncated: float = 0.5
    empty: float = 10.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"weights: {f.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"weights: {f.name} must be finite, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return {name: float(value) for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, d, where: str = "weights") -> ScoreWeights:
        """The weights of ``d`` (every field, nothing else); ValueError naming ``where`` and
        the field for anything else."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object of weights, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        d = {**ADDED_LATER, **d}  # a term added after d was written is off in it
        missing = [n for n in names if n not in d]
        if unknown:
            raise ValueError(f"{where}: unknown weight {unknown[0]!r} (the weights: {names})")
        if missing:
            raise ValueError(f"{where}: no weight {missing[0]!r} (every term needs one)")
        try:
            return cls(**d)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


# Terms added after weights were first recorded, each with the weight that keeps what an
# older run.json or weights file chose (off).
ADDED_LATER = {"specific": 0.0, "lowest": 0.0, "length": 0.0}

# The weights 0.2.0 explained with, when run.json (format 1) did not record them yet.
WEIGHTS_0_2 = ScoreWeights(
    user=0.0, item=1.0, focus=1.0, phrasing=1.0, specific=0.0, logprob=0.0, lowest=0.0,
    length=0.0, consensus=1.0,
    repetition=1.0,
    echo=0.25, unknown=1.0, degenerate=2.0, unfinished=0.25, contradicts=0.25, duplicate=1.0,
    truncated=0.5, empty=10.0,
)  # fmt: skip


def load_weights(path) -> ScoreWeights:
    """The weights of a weights file (``minireason tune --out FILE`` writes one:
    ``{"format": "minireason-weights", "format_version": 1, "weights": {...}, ...}``);
    ValueError (FileNotFoundError) naming the file and what is wrong with it."""
    d = read_versioned_json(
        path,
        WEIGHTS_FORMAT,
        WEIGHTS_FORMAT_VERSION,
        what="weights file",
        remedy="give a file 'minireason tune --out FILE' wrote",
        required=("weights",),
    )
    return ScoreWeights.from_dict(d["weights"], where=f"--weights {path}")


def weights_file(weights: ScoreWeights, **about) -> dict:
    """The JSON object of a weights file holding ``weights``, with ``about`` (how they were
    chosen: the tuner's validation numbers) beside them."""
    return {
        "format": WEIGHTS_FORMAT,
        "format_version": WEIGHTS_FORMAT_VERSION,
        "weights": weights.to_dict(),
        **about,
    }


@dataclass(frozen=True)
class RunInfo:
    """``run.json``: the facts a run's later stages need (module doc)."""

    prepared_path: str
    prepared_content: str  # the prepared directory's identity (minireason.prep.prepared)
    prompt_tokens: int
    context: int
    focus: int
    max_history: int
    vocab_size: int
    decoding: Decoding = field(default_factory=Decoding)
    weights: ScoreWeights = field(default_factory=ScoreWeights)
    overrides: dict = field(default_factory=dict)  # train --set's values ({"section.key": v})

    def to_json(self) -> dict:
        d = asdict(self)
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **d}

    def settings(self, decoding: Decoding | None = None, weights_file=None) -> ChoiceSettings:
        """How this run chooses a reason, with a command's overrides: ``decoding`` (None:
        the recorded one) and the weights of ``weights_file`` (None: the recorded ones)."""
        if weights_file is None:
            return ChoiceSettings(decoding or self.decoding, self.weights, RUN_JSON)
        return ChoiceSettings(
            decoding or self.decoding, load_weights(weights_file), str(weights_file)
        )


@dataclass(frozen=True)
class ChoiceSettings:
    """What a command chooses its reasons with: the decoding, the weights, and where the
    weights came from (``"run.json"`` or the ``--weights`` file), which its output records."""

    decoding: Decoding
    weights: ScoreWeights
    weights_from: str


@dataclass(kw_only=True)
class RunOptions:
    """The options of every command that uses a run (a base of their configs,
    :mod:`minireason.options`): how it chooses a reason, each None for the run's own
    (``candidates``, ``max_new_tokens``, ``weights``), and the pairing checks."""

    candidates: int | None = option(None, min=1, help="samples per reason (default: the run's)")
    max_new_tokens: int | None = option(
        None, min=1, help="longest reason in tokens (default: the run's)"
    )
    weights: str | None = option(
        None,
        metavar="FILE.json",
        help="the score's weights, from 'minireason tune' (default: the run's)",
    )
    allow_other_data: bool = option(False, help="use data the run was not trained on")
    allow_unfinished: bool = option(False, help="use a run whose training did not finish")

    def settings(self, info: RunInfo) -> ChoiceSettings:
        """``info``'s decoding and weights with these options' replacements."""
        decoding = info.decoding.replace(
            n_candidates=self.candidates, max_new_tokens=self.max_new_tokens
        )
        return info.settings(decoding, self.weights)

    def choice(self, info: RunInfo) -> dict:
        """:meth:`settings` as the keyword arguments ``decoding``, ``weights`` and
        ``weights_from`` that ``evaluate_run`` and ``explain_all`` take."""
        s = self.settings(info)
        return {"decoding": s.decoding, "weights": s.weights, "weights_from": s.weights_from}


def run_info_for(
    prepared,
    decoding: Decoding | None = None,
    weights: ScoreWeights | None = None,
    overrides: dict | None = None,
) -> RunInfo:
    """The :class:`RunInfo` of a run trained on ``prepared`` (a ``Prepared``)."""
    return RunInfo(
        prepared_path=str(prepared.path),
        prepared_content=prepared.content,
        prompt_tokens=prepared.prompt_tokens,
        context=prepared.context,
        focus=prepared.focus_size,
        max_history=prepared.max_history,
        vocab_size=prepared.tokenizer.vocab_size,
        decoding=decoding or Decoding(),
        weights=weights or ScoreWeights(),
        overrides=dict(overrides or {}),
    )


RUN_DIR = Kind(  # what train --out may write into: a run of this minireason
    "a run directory",
    lambda d: (json_object(d / RUN_JSON) or {}).get("format") == FORMAT,
    directory=True,
)


def write_run_info(run_dir, info: RunInfo) -> Path:
    return atomic_write_json(Path(run_dir) / RUN_JSON, info.to_json())


# run.json, field by field (minireason.files.field_problem); each value then as its class
# checks it (Decoding, ScoreWeights)
RUN_SCHEMA = {
    "prepared_path": "text",
    "prepared_content": "text",
    "prompt_tokens": "positive",
    "context": "positive",
    "focus": "count",
    "max_history": "count",
    "vocab_size": "positive",
    "decoding": "object",
    "weights?": "object",
    "overrides?": "object",
}


def read_run_info(run_dir) -> RunInfo:
    """Read ``RUN/run.json``; a missing, foreign, other-version or malformed file is a
    ValueError (or FileNotFoundError) naming it and saying what to do."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_JSON
    if not run_dir.is_dir():
        raise FileNotFoundError(f"--run {run_dir}: no such directory (a run of 'minireason train')")
    if not path.is_file():
        raise ValueError(
            f"--run {run_dir}: no {RUN_JSON}, so this is not a run of this minireason "
            "(an older version made it, or its training never started); train it again"
        )
    d = read_versioned_json(
        path,
        FORMAT,
        READS,
        what="run description",
        remedy="train the run again",
        schema=RUN_SCHEMA,
    )
    names = {f.name for f in fields(RunInfo)} - ({"weights"} if d["format_version"] == 1 else set())
    names -= {"overrides"} - set(d)  # a run trained without --set may not record any
    try:
        values = {k: d[k] for k in names}
        if not isinstance(values.get("overrides", {}), dict):
            raise TypeError("overrides must be an object of --set values")
        values["decoding"] = Decoding(**values["decoding"])
        values["weights"] = (
            ScoreWeights.from_dict(values["weights"], where="weights")
            if "weights" in values
            else WEIGHTS_0_2
        )
        return RunInfo(**values)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: malformed ({type(exc).__name__}: {exc})") from None


def check_same_data(
    info: RunInfo, prepared, allow_other_data: bool = False, instead: str = "--allow-other-data"
) -> None:
    """Refuse (ValueError, naming both) a run paired with a prepared directory other than
    the one it was trained on, unless ``allow_other_data`` says the user means it.
    ``instead``: the other way out the message offers."""
    if info.prepared_content == prepared.content or allow_other_data:
        return
    raise ValueError(
        f"the run was trained on {info.prepared_path} (content {info.prepared_content[:12]}), "
        f"not on {prepared.path} (content {prepared.content[:12]}); give the prepared "
        f"directory it was trained on, or {instead}"
    )


def content_paths(run_dir) -> tuple[Path, ...]:
    """The paths of a run's :data:`CONTENT_FILES`: what a command that uses the run reads
    (and so must never write over)."""
    return tuple(Path(run_dir) / name for name in CONTENT_FILES)


def run_content(run_dir) -> str:
    """The identity of a run: SHA-256 over the names and SHA-256s of its
    :data:`CONTENT_FILES` (a missing one is a ValueError naming it)."""
    run_dir = Path(run_dir)
    digest = hashlib.sha256()
    for name in CONTENT_FILES:
        path = run_dir / name
        if not path.is_file():
            raise ValueError(f"--run {run_dir}: no {name}; is its training finished?")
        digest.update(f"{name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


@dataclass
class Run:
    """A trained run, loaded: its model (eval mode), tokenizer, facts and feature file, and
    how far fine-tuning got (``step`` of ``max_steps``)."""

    path: Path
    info: RunInfo
    model: object  # minireason.nn.model.GPT
    tokenizer: BPETokenizer
    feature_info: dict  # features.json: {aspects, df, rates, focus, ...}
    step: int = 0
    max_steps: int = 0

    @property
    def finished(self) -> bool:
        return self.step >= self.max_steps > 0

    def describe(self) -> str:
        """One line for the user: which checkpoint answers, and whether training finished."""
        state = "finished" if self.finished else "UNFINISHED"
        return f"model: {self.path / 'finetune'} at step {self.step} of {self.max_steps} ({state})"


def resume_command(run_dir, info: RunInfo) -> str:
    """The command line that finishes training ``run_dir``: ``minireason train --resume``
    with the prepared directory ``run.json`` records and the run's own ``preset.json`` (the
    preset it was started with, whatever its name was), paths quoted for a shell."""
    run_dir = Path(run_dir)
    args = ["--resume", "--prepared", info.prepared_path, "--preset", run_dir / "preset.json"]
    return shlex.join(["minireason", "train", *map(str, args), "--out", str(run_dir)])


def load_run(run_dir, allow_unfinished: bool = False) -> Run:
    """Load ``RUN``'s fine-tuned model with its tokenizer, ``run.json`` and features.

    A run whose fine-tuning has not reached its last step (interrupted, or still running) is
    refused with a ValueError saying how far it got, unless ``allow_unfinished``.
    """
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    ckpt_dir = run_dir / "finetune"
    if not (ckpt_dir / JSON_NAME).is_file():
        raise ValueError(
            f"--run {run_dir}: fine-tuning has not written a checkpoint yet (no "
            f"{ckpt_dir / JSON_NAME}); finish it with: {resume_command(run_dir, info)}"
        )
    ckpt = load_checkpoint(ckpt_dir)
    max_steps = int(ckpt.extra.get("train_config", {}).get("max_steps", 0))
    if ckpt.step < max_steps and not allow_unfinished:
        raise ValueError(
            f"--run {run_dir}: fine-tuning stopped at step {ckpt.step} of {max_steps} (an "
            "unfinished run); pass --allow-unfinished to use it as it is, or finish it with: "
            + resume_command(run_dir, info)
        )
    tokenizer = BPETokenizer.load(run_dir / "tokenizer.json")
    if ckpt.model_config.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"--run {run_dir}: the model's vocabulary ({ckpt.model_config.vocab_size}) differs "
            f"from its tokenizer.json ({tokenizer.vocab_size}); train the run again"
        )
    path = run_dir / "features.json"
    try:
        feature_info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(feature_info.get("df"), dict):
            raise ValueError("no 'df' table")
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: unreadable feature file ({exc}); train the run again") from None
    return Run(run_dir, info, model_from(ckpt), tokenizer, feature_info, ckpt.step, max_steps)

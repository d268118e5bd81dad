"""Explain a whole catalogue: every user's top-k recommendations with a reason each, as a
Dask job (``minireason explain-all``), resumable and deterministic.

::

    users (all of the prepared data's, or a file) ──► chunks of chunk_size users
        ──► one Dask task per chunk, on a local cluster or an existing one
            worker process: run + prepared data + recommender, loaded once (per-process cache)
                for each user: recommend top-k, explain each item (explain.explain_item),
                seeded by explain.pair_seed(seed, user, item)
            ──► OUT/part-NNNNNN.parquet, written under a temporary name, then renamed
        ──► client: progress, and OUT/_manifest.json (inputs, settings, finished chunks)

The output directory ``OUT``:

``part-NNNNNN.parquet``
    One file per chunk, one row per (user, rank), ranks 1..k in the recommender's order (a
    user gets fewer when fewer items are left to recommend). Columns: :data:`COLUMNS`.
``_manifest.json``
    ``format``, ``format_version``; ``inputs``: the prepared directory and the run, each by
    path and content identity (``Prepared.content``, :func:`minireason.train.run.run_content`);
    ``settings``: the users (what was given, how many, SHA-256 of the resolved list), top-k,
    recommender, chunk size, seed, decoding, the score's weights (``score_weights``: the run's
    ``run.json`` or ``--weights FILE``'s) and ``weights_from`` (which of the two);
    ``unknown_users`` and ``duplicate_users`` (ids of the users file that are not in the
    prepared data, or repeated); ``n_chunks``; and
    ``chunks``: for each finished chunk, its file, bytes, SHA-256, rows, users, cold-start
    users, failed (user, item) pairs, seconds, and the worker that made it. Written
    atomically by the client alone. Names starting with ``_`` or ``.`` are skipped by
    Parquet readers, so ``pyarrow.parquet.read_table(OUT)`` reads the rows only.

Resume. Rerunning the same command skips every chunk the manifest lists whose file is there
with the recorded size and SHA-256, and computes the rest. Other inputs or settings into the
same ``OUT`` are refused, naming what differs. The manifest is rewritten at most every
``manifest_interval`` seconds and at the end, so a client killed between two writes redoes
the chunks it finished since the last one (their files are rewritten identically). A
Ctrl-C stops the client, which records the chunks finished so far before it closes the
cluster, and says how many in one line.

Determinism. A row depends only on the run, the prepared data, the settings and (user,
item): the recommender is deterministic and the explanation is seeded from (seed, user,
item). So the rows do not depend on the chunk size, the number of workers, their order, or
on a task computed twice. A worker killed mid-task loses nothing: Dask runs its task again
elsewhere, and a chunk file appears whole (renamed into place) or not at all.

Unknown ids in a users file are reported, not fatal. A known user with no training history
(cold start) gets the recommender's popular items and an item-only prompt. A (user, item)
that cannot be explained (no history and an item without tags) is a listed failure, not a
row; a chunk whose task fails is not finished, and a rerun tries it again.

Dask (``dask``, ``distributed``) and Parquet (``pyarrow``) are the ``[scale]`` extra; they are
imported inside the functions here, never by the rest of the package. Workers of an external
cluster (``scheduler``) need the client's minireason version installed (the weights travel
with each task, so every worker scores as the manifest says) and ``RUN``, ``PREP`` and ``OUT`` at the same paths
(a shared file system); run them with one thread each (``dask worker ADDRESS --nthreads
1``): threads of one worker share its model and take turns. Dask carries each task (a
reference to :func:`explain_chunk` and plain lists, strings and numbers) and its small
result dict over its own wire format, which uses pickle between client, scheduler and
workers; nothing of that is stored, and nothing here reads a pickle from disk: what is
written is Parquet and JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from minireason.files import (
    Kind,
    atomic_write,
    atomic_write_json,
    check_output,
    read_versioned_json,
    sha256_file,
    writer_lock,
)
from minireason.options import option
from minireason.prep.features import profile
from minireason.prep.prepared import Prepared, load_prepared
from minireason.reason.explain import (
    Explanation,
    explain_item,
    fit_recommender,
    pair_seed,
    user_history,
)
from minireason.reason.recommend import DEFAULT_RECOMMENDER, RECOMMENDERS
from minireason.reason.scoring import SCORE_PARTS
from minireason.text import inert
from minireason.train.run import (
    Decoding,
    RunOptions,
    ScoreWeights,
    check_same_data,
    load_run,
    run_content,
)

FORMAT = "minireason-catalogue"
FORMAT_VERSION = 2  # 2: every term of the step-4 score, the unknown words, the weights
MANIFEST = "_manifest.json"
_INPUT = {"path": "text", "content": "text"}
# _manifest.json, field by field (minireason.files.field_problem): what resuming reads
MANIFEST_SCHEMA = {
    "inputs": {"prepared": _INPUT, "run": _INPUT},
    "settings": {"users": {"sha256": "text"}, "decoding": "object", "score_weights": "object"},
    "chunks": {
        "*": {
            "file": "text",
            "bytes": "count",
            "sha256": "sha256",
            "rows": "count",
            "cold_start": "count",
            "failures": [{"user": "text", "rank": "count", "item": "text", "error": "text"}],
        }
    },
}
DEFAULT_CHUNK_SIZE = 100
ONE_BLAS_THREAD = {  # each worker process computes on one core: no BLAS or product threads
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MINIREASON_THREADS": "1",
}
EXTRA = "pip install 'minireason[scale]' (dask, distributed, pyarrow)"


@dataclass
class ExplainAllConfig(RunOptions):
    """The options of ``minireason explain-all`` (:mod:`minireason.options`); the defaults of
    :func:`explain_all` are these."""

    description: ClassVar[str] = (
        "Recommend the top-k items to every user (or those of --users FILE) and explain each "
        "as 'explain' does, as Dask tasks of --chunk-size users on a local cluster (--workers) "
        "or an existing one (--scheduler). One Parquet file per chunk and a manifest in --out; "
        "the same command again resumes, skipping finished chunks. Needs the [scale] extra."
    )
    epilog: ClassVar[str] = (
        "examples:\n  minireason explain-all --prepared runs/demo/prepared --run runs/demo/run "
        "--out runs/demo/catalogue --workers 2\n  minireason explain-all --prepared "
        "runs/demo/prepared --run runs/demo/run --out runs/demo/catalogue --scheduler "
        "tcp://HOST:8786\n  (a cluster of your own: 'dask scheduler' on HOST, then 'dask worker "
        "tcp://HOST:8786 --nthreads 1' on each machine)"
    )

    prepared: str = option(metavar="DIR", help="the run's prepared directory")
    run: str = option(metavar="DIR", help="a run of 'minireason train'")
    out: str = option(metavar="DIR", help="output directory (Parquet files and a manifest)")
    users: str = option("all", metavar="all|FILE", help="every user, or a file of ids, one a line")
    top_k: int = option(10, min=1, metavar="K", help="recommendations per user")
    recommender: str = option(
        DEFAULT_RECOMMENDER, choices=tuple(RECOMMENDERS), help="what recommends the items"
    )
    chunk_size: int = option(DEFAULT_CHUNK_SIZE, min=1, help="users per task and per file")
    workers: int | None = option(
        None, min=1, help="local worker processes (default: one per core; not with --scheduler)"
    )
    scheduler: str | None = option(None, metavar="ADDRESS", help="an existing Dask cluster")
    seed: int = option(0, metavar="SEED", help="the base of every (user, item) seed")


# The Parquet columns, in order (types in :func:`schema`).
COLUMNS = (
    "user",  # the user id
    "rank",  # 1 = the recommender's best
    "item",  # the recommended item id
    "recommender_score",  # the recommender's score of the item
    "reason",  # the chosen reason (seed step 4)
    "focus",  # the aspects the prompt asked the reason to talk about
    "mentions",  # focus aspects, profile aspects and item tags the reason names
    "evidence_items",  # [{owner, item, share}]: attention share of each history item and the item
    "evidence_pieces",  # [{kind, label, owner, share}]: the strongest single tags / aspects
    "score_total",  # the step-4 score of the reason
    # then each signed, weighted term of it (ScoreBreakdown.parts), which sum to score_total
    *(f"score_{part}" for part in SCORE_PARTS),
    "unknown_words",  # the reason's words the training reviews never used twice
    "specific_words",  # the reason's words particular to the item (Prepared.particular_words)
    "cold_start",  # the user has no training history
    "history_used",  # history items that fitted the prompt
    "notes",  # fallbacks taken and cropping, as explain prints them
    "seed",  # the explanation's seed (explain.pair_seed): explain --item ITEM --seed SEED
)


def require_scale():
    """Import and return ``(distributed, pyarrow, pyarrow.parquet)``; ImportError naming the
    extra when they are not installed."""
    try:
        import distributed
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(f"explain-all needs the [scale] extra ({exc.name}): {EXTRA}") from None
    return distributed, pyarrow, pq


def schema():
    """The ``pyarrow.Schema`` of a chunk file (:data:`COLUMNS`)."""
    _, pa, _ = require_scale()
    owner = pa.struct([("owner", pa.string()), ("item", pa.string()), ("share", pa.float64())])
    piece = pa.struct(
        [
            ("kind", pa.string()),
            ("label", pa.string()),
            ("owner", pa.string()),
            ("share", pa.float64()),
        ]
    )
    types = {
        "user": pa.string(),
        "rank": pa.int32(),
        "item": pa.string(),
        "recommender_score": pa.float64(),
        "reason": pa.string(),
        "focus": pa.list_(pa.string()),
        "mentions": pa.list_(pa.string()),
        "evidence_items": pa.list_(owner),
        "evidence_pieces": pa.list_(piece),
        "score_total": pa.float64(),
        **{f"score_{part}": pa.float64() for part in SCORE_PARTS},
        "unknown_words": pa.list_(pa.string()),
        "specific_words": pa.list_(pa.string()),
        "cold_start": pa.bool_(),
        "history_used": pa.int32(),
        "notes": pa.list_(pa.string()),
        "seed": pa.int64(),
    }
    return pa.schema([(name, types[name]) for name in COLUMNS])


def chunk_file(index: int) -> str:
    return f"part-{index:06d}.parquet"


# --------------------------------------------------------------------------- users


def known_users(prepared: Prepared) -> list[str]:
    """Every user of the prepared data (any split), sorted. Those without a training review
    are cold-start users."""
    return sorted(
        {r["user"] for split in ("train", "valid", "test") for r in prepared.split(split)}
    )


@dataclass
class UserList:
    """The users to explain, resolved against the prepared data."""

    given: str  # "all", the users file's path, or "list"
    users: list[str]  # known users, in the order given, each once
    unknown: list[str]  # ids not in the prepared data, in the order given
    duplicates: int  # ids given more than once (extra copies dropped)

    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.users).encode()).hexdigest()


def resolve_users(prepared: Prepared, users="all") -> UserList:
    """``"all"``, a path to a file of ids (one a line; blank lines skipped), or a sequence of
    ids. Raises ValueError when no given id is a user of ``prepared``."""
    known = known_users(prepared)
    if isinstance(users, str) and users == "all":
        return UserList("all", known, [], 0)
    if isinstance(users, (str, os.PathLike)):
        path = Path(users)
        if not path.is_file():
            raise FileNotFoundError(f"--users {path}: no such file (one user id a line, or 'all')")
        try:
            ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError as exc:
            raise ValueError(f"--users {path}: not UTF-8 text ({exc})") from None
        given = str(path)
    else:
        ids, given = [str(u).strip() for u in users], "list"
    ids = [u for u in ids if u]
    ordered = list(dict.fromkeys(ids))
    known_set = set(known)
    listed = UserList(
        given,
        [u for u in ordered if u in known_set],
        [u for u in ordered if u not in known_set],
        len(ids) - len(ordered),
    )
    if not listed.users:
        sample = ", ".join(known[:3])
        raise ValueError(
            f"--users {given}: none of its {len(ordered)} ids is a user of {prepared.path} "
            f"(e.g. {sample})"
        )
    return listed


# --------------------------------------------------------------------------- one user


def explanation_row(
    user: str, rank: int, item: str, score: float, expl: Explanation, seed: int, cold: bool
) -> dict:
    """One output row (:data:`COLUMNS`) of an explained recommendation."""
    s = expl.score
    return {
        "user": user,
        "rank": rank,
        "item": item,
        "recommender_score": float(score),
        "reason": expl.reason,
        "focus": [seg.label for seg in expl.evidence.segments if seg.kind == "focus"],
        "mentions": list(dict.fromkeys(s.mentioned_focus + s.mentioned_aspects + s.mentioned_tags)),
        "evidence_items": [
            {"owner": o.owner, "item": o.label, "share": o.share} for o in expl.evidence.owners
        ],
        "evidence_pieces": [
            {"kind": p.kind, "label": p.label, "owner": p.owner, "share": p.share}
            for p in expl.evidence.pieces
        ],
        "score_total": s.total,
        **{f"score_{part}": float(value) for part, value in s.parts(expl.weights).items()},
        "unknown_words": list(s.unknown_words),
        "specific_words": list(s.specific_words),
        "cold_start": cold,
        "history_used": expl.history_used,
        "notes": list(expl.notes),
        "seed": seed,
    }


def explain_user(
    run,
    prepared: Prepared,
    recommender,
    user: str,
    top_k: int,
    seed: int,
    decoding: Decoding,
    weights: ScoreWeights,
) -> tuple[list[dict], list[dict], bool]:
    """Recommend ``top_k`` items to ``user`` and explain each, seeded by
    :func:`~minireason.reason.explain.pair_seed`, scored with ``weights``.

    Returns ``(rows, failures, cold)``: the rows, rank order; each (user, item) that could
    not be explained as ``{user, rank, item, error}``; whether the user is a cold start.
    """
    history = user_history(prepared, user) if user in prepared.users else []
    aspects = profile(history)["aspects"]
    rows, failures = [], []
    for rank, (item, score) in enumerate(recommender.recommend(user, k=top_k), 1):
        s = pair_seed(seed, user, item)
        try:
            expl = explain_item(
                run, prepared, history, item, s, decoding, aspects, user=user, weights=weights
            )
        except ValueError as exc:
            failures.append({"user": user, "rank": rank, "item": item, "error": str(exc)})
            continue
        rows.append(explanation_row(user, rank, item, score, expl, s, not history))
    return rows, failures, not history


# --------------------------------------------------------------------------- the worker side


@dataclass
class _Loaded:
    """What a worker process loads once per job's inputs."""

    run: object
    prepared: Prepared
    recommender: object
    seconds: float
    lock: threading.Lock = field(default_factory=threading.Lock)  # one model, one user at a time


_LOADED: dict = {}  # one entry: the inputs of the job this process works for
_LOADED_LOCK = threading.Lock()


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_inputs(job: dict) -> tuple[_Loaded, bool]:
    """The run, prepared data and recommender of ``job``, loaded on the first call in this
    process and cached (keyed by paths, identities and recommender); ``(loaded, first)``.
    A worker whose files differ from what the client checked raises ValueError."""
    key = (job["run"], job["prepared"], job["run_content"], job["prepared_content"])
    key += (job["recommender"],)
    with _LOADED_LOCK:
        if key in _LOADED:
            return _LOADED[key], False
        _LOADED.clear()
        start = time.perf_counter()
        prepared = load_prepared(job["prepared"])
        if prepared.content != job["prepared_content"]:
            raise ValueError(
                f"worker {_where()}: {job['prepared']} has content {prepared.content[:12]}, "
                f"not {job['prepared_content'][:12]} as on the client; every worker needs the same files"
            )
        if run_content(job["run"]) != job["run_content"]:
            raise ValueError(
                f"worker {_where()}: the run {job['run']} differs from the client's; "
                "every worker needs the same files"
            )
        run = load_run(job["run"])
        check_same_data(run.info, prepared, job["allow_other_data"])
        recommender = fit_recommender(prepared, job["recommender"])
        _LOADED[key] = _Loaded(run, prepared, recommender, time.perf_counter() - start)
        return _LOADED[key], True


def explain_chunk(job: dict, index: int, users: list[str]) -> dict:
    """The Dask task: explain ``users`` (chunk ``index`` of ``job``, a plain dict made by
    :func:`explain_all`), write ``OUT/part-NNNNNN.parquet`` atomically, and return the
    chunk's manifest entry (a plain dict; the rows stay in the file)."""
    _, pa, pq = require_scale()
    out = Path(job["out"])
    if not out.is_dir():
        raise FileNotFoundError(
            f"worker {_where()}: no directory {out}; OUT, RUN and PREP must be on a file "
            "system every worker sees"
        )
    started = time.time()
    loaded, first = worker_inputs(job)
    decoding = Decoding(**job["decoding"])
    weights = ScoreWeights.from_dict(job["score_weights"], where="the job's score_weights")
    tick = time.perf_counter()
    rows, failures, cold = [], [], 0
    with loaded.lock:
        for user in users:
            user_rows, user_failures, is_cold = explain_user(
                loaded.run,
                loaded.prepared,
                loaded.recommender,
                user,
                job["top_k"],
                job["seed"],
                decoding,
                weights,
            )
            rows += user_rows
            failures += user_failures
            cold += is_cold
    seconds = time.perf_counter() - tick
    path = out / chunk_file(index)
    table = pa.Table.from_pylist(rows, schema=schema())
    atomic_write(path, lambda fh: pq.write_table(table, fh))
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "users": len(users),
        "rows": len(rows),
        "cold_start": cold,
        "failures": failures,
        "seconds": seconds,
        "load_seconds": loaded.seconds if first else 0.0,
        "loaded": first,
        "worker": _where(),
        "start": started,
        "stop": time.time(),
    }


# --------------------------------------------------------------------------- the manifest


OUTPUT_DIR = Kind(  # what --out may write into: an earlier explain-all's (read_manifest)
    "an explain-all output", lambda d: (d / MANIFEST).is_file(), directory=True
)


def read_manifest(out) -> dict | None:
    """``OUT/_manifest.json``, checked for format and version; None when ``OUT`` is absent
    or empty. A directory that holds something else is a ValueError (nothing is touched)."""
    out = Path(out)
    path = out / MANIFEST
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory; choose another path")
    if not path.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise ValueError(
                f"--out {out}: a non-empty directory that is not an explain-all output (no "
                f"{MANIFEST}); choose another path (nothing in it was touched)"
            )
        return None
    remedy = "write to another --out"
    manifest = read_versioned_json(
        path,
        FORMAT,
        FORMAT_VERSION,
        what="explain-all manifest",
        remedy=remedy,
        schema=MANIFEST_SCHEMA,
    )
    for key, entry in manifest["chunks"].items():
        if not (key.isascii() and key.isdecimal() and entry["file"] == chunk_file(int(key))):
            raise ValueError(
                f"{path}: explain-all manifest field 'chunks.{key}' is not a chunk of this "
                f"output (its file {entry['file']!r}); {remedy}"
            )
    return manifest


def write_manifest(out, manifest: dict) -> None:
    """Write ``OUT/_manifest.json`` atomically (:func:`minireason.files.atomic_write_json`)."""
    atomic_write_json(Path(out) / MANIFEST, manifest)


_OPTION = {  # a setting of the manifest -> the option that sets it
    "users": "--users",
    "top_k": "--top-k",
    "recommender": "--recommender",
    "chunk_size": "--chunk-size",
    "seed": "--seed",
    "decoding": "--candidates / --max-new-tokens (or the run's decoding)",
    "score_weights": "the score's weights (--weights FILE, or the run's run.json)",
}


def check_same_job(out, old: dict, new: dict) -> None:
    """Refuse (ValueError naming each difference) to resume ``old`` with other inputs or
    settings."""
    diffs = []
    for name in ("prepared", "run"):
        before, now = old["inputs"][name]["content"], new["inputs"][name]["content"]
        if before != now:
            diffs.append(
                f"--{name} has content {now[:12]}, it was written from {before[:12]} "
                f"({old['inputs'][name]['path']})"
            )
    for name, flag in _OPTION.items():
        before, now = old["settings"].get(name), new["settings"][name]
        if name == "users":
            before, now = (before or {}).get("sha256"), now["sha256"]
            if before != now:
                diffs.append(f"{flag}: another list of users than {old['settings']['users']}")
        elif isinstance(before, dict) and isinstance(now, dict) and before != now:
            changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
            diffs.append(
                f"{flag}: "
                + ", ".join(f"{k} {now.get(k)} here, {before.get(k)} there" for k in changed)
            )
        elif before != now:
            diffs.append(f"{flag}: {now} here, {before} there")
    if diffs:
        raise ValueError(
            f"--out {out} holds an explain-all run with other inputs or settings: "
            + "; ".join(diffs)
            + ". Give the same ones to resume it, or another --out"
        )


def _remove_temporaries(out: Path) -> None:
    """Chunk and manifest files a killed writer left under their temporary names
    (:func:`minireason.files.atomic_write`'s ``.NAME.*.tmp``)."""
    for stale in out.glob(".*.tmp"):
        try:
            stale.unlink()
        except FileNotFoundError:
            pass


def finished_chunks(out, manifest: dict) -> dict[int, dict]:
    """The manifest's chunks whose file is there with the recorded size and SHA-256."""
    out = Path(out)
    done = {}
    for key, entry in manifest.get("chunks", {}).items():
        path = out / entry["file"]
        if path.is_file() and path.stat().st_size == entry["bytes"]:
            if sha256_file(path) == entry["sha256"]:
                done[int(key)] = entry
    return done


def read_catalogue(out):
    """The rows of every finished chunk of ``OUT``, in chunk order, as one
    ``pyarrow.Table`` (only what the manifest vouches for)."""
    _, pa, pq = require_scale()
    manifest = read_manifest(out)
    if manifest is None:
        raise ValueError(f"{out}: no explain-all output here")
    done = finished_chunks(out, manifest)
    tables = [pq.read_table(Path(out) / done[i]["file"], schema=schema()) for i in sorted(done)]
    return pa.concat_tables(tables) if tables else schema().empty_table()


# --------------------------------------------------------------------------- the client


@dataclass
class CatalogueSummary:
    """What :func:`explain_all` did (``format_summary`` prints it)."""

    out: Path
    users_given: str
    n_users: int  # known users to explain
    unknown_users: list[str]
    duplicate_users: int
    n_chunks: int
    chunks_before: int  # finished by earlier calls (skipped)
    chunks_now: int  # finished by this call
    chunk_failures: list[dict]  # {chunk, users, error}: not finished, retried by a rerun
    n_reasons: int  # rows in the finished chunks
    n_cold_start: int  # cold-start users in the finished chunks
    pair_failures: list[dict]  # {user, rank, item, error}: (user, item) not explained
    reasons_now: int  # rows written by this call
    seconds: float  # the whole call
    startup_seconds: float = 0.0  # starting or joining the cluster
    compute_seconds: float = 0.0  # first task submitted to last result
    workers: int = 0
    dashboard: str | None = None
    chunks: dict = field(default_factory=dict)  # the manifest's entries of finished chunks

    @property
    def complete(self) -> bool:
        return self.chunks_before + self.chunks_now == self.n_chunks

    @property
    def reasons_per_second(self) -> float:
        return self.reasons_now / self.compute_seconds if self.compute_seconds > 0 else 0.0


@contextlib.contextmanager
def _cluster(workers: int | None, scheduler: str | None, dashboard: str | None):
    """A client of a local cluster of ``workers`` processes (one thread, one BLAS thread
    each), or of the scheduler at ``scheduler``; closed, with the local cluster, on leaving.

    Ctrl-C is the client's alone. A terminal sends it to every process of the job, so the
    local workers ignore it (inherited: SIGINT is ignored here while they start, and a
    Ctrl-C in those seconds is lost; :func:`dask_setup` again in each worker, for one the
    nanny restarts later): only the client stops, closes the cluster and says so in one
    line. A local cluster shows Dask's errors, not its warnings; and no log of Dask's is
    shown while the cluster closes after a Ctrl-C (tasks cut short are the point, not a fault).
    """
    distributed, _, _ = require_scale()
    cluster = client = None
    muted = logging.root.manager.disable
    try:
        if scheduler:
            client = _connect(distributed, scheduler)
        else:
            try:
                with _sigint_ignored():
                    cluster = distributed.LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=dashboard or ":0",  # none asked: no well-known port
                        env=ONE_BLAS_THREAD,
                        silence_logs=logging.ERROR,
                        preload=[__name__],  # dask_setup, in each worker
                    )
            except RuntimeError as exc:  # Dask's word for a worker process that died starting
                raise OSError(
                    "the local cluster did not start: a worker process died as it started "
                    f"(killed, or out of memory? Dask says: {exc}); run the command again"
                ) from None
            client = distributed.Client(cluster)
        yield client
    except KeyboardInterrupt:
        logging.disable(logging.CRITICAL)
        raise
    finally:
        try:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
        finally:
            logging.disable(muted)


CONNECT_TIMEOUT_S = 20.0  # for a Dask scheduler to answer


def _connect(distributed, scheduler: str, timeout: float = CONNECT_TIMEOUT_S):
    """A client of the scheduler at ``scheduler``, once it has answered as a Dask scheduler
    within ``timeout`` seconds (:func:`_identify`); OSError or ValueError naming it."""
    try:
        kind = asyncio.run(_identify(distributed, scheduler, timeout))
        if kind != "Scheduler":
            raise ValueError(f"what answers there is not a Dask scheduler ({kind!r})")
        return distributed.Client(scheduler, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as exc:
        why = f" ({exc})" if str(exc) else ""
        raise OSError(
            f"--scheduler {scheduler}: no Dask scheduler answered within {timeout:g} s{why}; "
            "is it the address 'dask scheduler' printed?"
        ) from None
    except ValueError as exc:  # not an address, or not a scheduler there
        raise ValueError(f"--scheduler {scheduler}: {exc}") from None


async def _identify(distributed, address: str, timeout: float):
    """The ``type`` the server at ``address`` gives for itself in Dask's ``identity`` call,
    within ``timeout`` seconds in all (connecting and the answer: a server that accepts the
    connection and never speaks Dask is a TimeoutError, where a Dask client waits forever).
    Connected as a client is, with the security settings of Dask's configuration."""
    security = distributed.Security().get_connection_args("client")
    remote = distributed.core.rpc(address, timeout=timeout, connection_args=security)
    try:
        answer = await asyncio.wait_for(remote.identity(), timeout)
    finally:
        await remote.close_rpc()
    return answer.get("type") if isinstance(answer, dict) else type(answer).__name__


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored by this process inside the block (the processes it starts inherit
    that), when it runs on the main thread (the only one that may set a handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def dask_setup(worker) -> None:
    """Dask's preload hook, run in each local worker process as it starts: SIGINT ignored
    (:func:`_cluster`), so a Ctrl-C meant for the client never stops a worker."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_workers() -> int:
    """One worker per CPU core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def explain_all(
    prepared_dir,
    run_dir,
    out,
    *,
    users=ExplainAllConfig.users,
    top_k: int = ExplainAllConfig.top_k,
    recommender: str = ExplainAllConfig.recommender,
    chunk_size: int = ExplainAllConfig.chunk_size,
    seed: int = ExplainAllConfig.seed,
    decoding: Decoding | None = None,
    weights: ScoreWeights | None = None,
    weights_from: str = "run.json",
    workers: int | None = None,
    scheduler: str | None = None,
    dashboard: str | None = ":8787",
    allow_other_data: bool = False,
    progress: bool = True,
    manifest_interval: float = 2.0,
    on_chunk: Callable[[int, dict], None] | None = None,
) -> CatalogueSummary:
    """Explain the top-``top_k`` recommendations of ``users`` into ``out`` (module doc).

    Args:
        prepared_dir, run_dir: the prepared directory and a run trained on it.
        users: ``"all"``, a file of ids (one a line) or a sequence of ids.
        recommender: a name of :data:`~minireason.reason.recommend.RECOMMENDERS`.
        chunk_size: users per task (and per Parquet file).
        seed: the base of every (user, item) seed.
        decoding: the sampling settings (None: the run's).
        weights: the score's weights (None: the run's); ``weights_from``: where they came
            from, recorded in the manifest.
        workers: processes of a local cluster (None: one per core); ``scheduler``: the
            address of an existing cluster instead. ``dashboard``: the local cluster's
            dashboard address (None: none).
        manifest_interval: least seconds between two manifest writes (and one at the end).
        on_chunk: called on the client after each finished chunk, ``(index, entry)``.

    Returns:
        A :class:`CatalogueSummary`. Raises ValueError or OSError for bad inputs (naming
        them) and ImportError without the ``[scale]`` extra.

    From a script, call it under ``if __name__ == "__main__":``: a local cluster's worker
    processes start by re-running the main script, as every multiprocessing "spawn" does
    (``minireason explain-all`` and notebooks need nothing).
    """
    require_scale()
    if recommender not in RECOMMENDERS:
        raise ValueError(f"--recommender {recommender!r}: choose one of {sorted(RECOMMENDERS)}")
    if not (
        isinstance(top_k, int) and top_k >= 1 and isinstance(chunk_size, int) and chunk_size >= 1
    ):
        raise ValueError(f"top_k and chunk_size must be integers >= 1, got {top_k}, {chunk_size}")
    if workers is not None and scheduler:
        raise ValueError("give --workers N (a local cluster) or --scheduler ADDRESS, not both")
    started = time.perf_counter()
    given = users if isinstance(users, (str, os.PathLike)) and users != "all" else None
    out = check_output(out, "--out", OUTPUT_DIR, inputs=(prepared_dir, run_dir, given))
    prepared = load_prepared(prepared_dir)
    info = load_run(run_dir).info  # loaded as every worker will: refused here, before a cluster
    check_same_data(info, prepared, allow_other_data)
    decoding = decoding or info.decoding
    weights = weights or info.weights
    listed = resolve_users(prepared, users)
    chunks = [listed.users[i : i + chunk_size] for i in range(0, len(listed.users), chunk_size)]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "inputs": {
            "prepared": {"path": str(Path(prepared_dir).resolve()), "content": prepared.content},
            "run": {"path": str(Path(run_dir).resolve()), "content": run_content(run_dir)},
        },
        "settings": {
            "users": {"given": listed.given, "n": len(listed.users), "sha256": listed.sha256()},
            "top_k": top_k,
            "recommender": recommender,
            "chunk_size": chunk_size,
            "seed": seed,
            "decoding": asdict(decoding),
            "score_weights": weights.to_dict(),
            "weights_from": weights_from,
        },
        "unknown_users": listed.unknown,
        "duplicate_users": listed.duplicates,
        "n_chunks": len(chunks),
        "columns": list(COLUMNS),
        "chunks": {},
    }
    old = read_manifest(out)  # a foreign directory is refused before anything is written
    if old is not None:
        check_same_job(out, old, manifest)
    out.mkdir(parents=True, exist_ok=True)
    with writer_lock(out, "minireason explain-all"):
        old = read_manifest(out)  # again, now that no other client can change it
        if old is not None:
            check_same_job(out, old, manifest)
        _remove_temporaries(out)
        done = finished_chunks(out, old) if old else {}
        manifest["chunks"] = {str(i): done[i] for i in sorted(done)}
        write_manifest(out, manifest)
        job = {
            "out": str(out.resolve()),
            **{k: v["path"] for k, v in manifest["inputs"].items()},
            "prepared_content": prepared.content,
            "run_content": manifest["inputs"]["run"]["content"],
            "allow_other_data": allow_other_data,
            "recommender": recommender,
            "top_k": top_k,
            "seed": seed,
            "decoding": asdict(decoding),
            "score_weights": manifest["settings"]["score_weights"],
        }
        todo = [i for i in range(len(chunks)) if i not in done]
        summary = CatalogueSummary(
            out=out,
            users_given=listed.given,
            n_users=len(listed.users),
            unknown_users=listed.unknown,
            duplicate_users=listed.duplicates,
            n_chunks=len(chunks),
            chunks_before=len(done),
            chunks_now=0,
            chunk_failures=[],
            n_reasons=0,
            n_cold_start=0,
            pair_failures=[],
            reasons_now=0,
            seconds=0.0,
        )
        say = _printer(progress)
        say(
            f"explain-all: {len(listed.users)} users in {len(chunks)} chunks of {chunk_size} "
            f"into {out}" + (f"; {len(done)} chunks finished before, skipped" if done else "")
        )
        if listed.unknown:
            say(f"explain-all: {len(listed.unknown)} unknown user ids skipped (see the summary)")
        try:
            if todo:
                _run_chunks(
                    job,
                    chunks,
                    todo,
                    manifest,
                    summary,
                    workers=workers,
                    scheduler=scheduler,
                    dashboard=dashboard,
                    progress=progress,
                    manifest_interval=manifest_interval,
                    on_chunk=on_chunk,
                    say=say,
                )
        except KeyboardInterrupt:  # Ctrl-C: main() prints this as its one line
            n = len(manifest["chunks"])
            raise KeyboardInterrupt(
                f"{n} of {len(chunks)} chunks finished, recorded in {out / MANIFEST}; "
                "the same command resumes"
            ) from None
        finally:
            write_manifest(out, manifest)
            _remove_temporaries(out)
    entries = manifest["chunks"]
    summary.chunks = entries
    summary.n_reasons = sum(e["rows"] for e in entries.values())
    summary.n_cold_start = sum(e["cold_start"] for e in entries.values())
    summary.pair_failures = [f for i in sorted(entries, key=int) for f in entries[i]["failures"]]
    summary.seconds = time.perf_counter() - started
    return summary


def _printer(progress: bool):
    def say(line: str) -> None:
        if progress:
            print(line, file=sys.stderr, flush=True)

    return say


def _run_chunks(
    job: dict,
    chunks: list[list[str]],
    todo: list[int],
    manifest: dict,
    summary: CatalogueSummary,
    *,
    workers,
    scheduler,
    dashboard,
    progress,
    manifest_interval,
    on_chunk,
    say,
) -> None:
    """Start or join the cluster, submit the chunks of ``todo``, and record each one as it
    finishes (``manifest`` and ``summary`` are updated in place)."""
    from tqdm.auto import tqdm

    distributed, _, _ = require_scale()
    tick = time.perf_counter()
    bar = None
    with _cluster(
        workers or (None if scheduler else default_workers()), scheduler, dashboard
    ) as client:
        try:
            summary.startup_seconds = time.perf_counter() - tick
            summary.workers = len(client.nthreads())
            summary.dashboard = client.dashboard_link if (dashboard or scheduler) else None
            where = f"scheduler {scheduler}" if scheduler else "a local cluster"
            say(f"explain-all: {summary.workers} workers on {where}" + _dashboard_note(summary))
            if not summary.workers:
                say("explain-all: the scheduler has no workers yet; the tasks wait for them")
            token = uuid.uuid4().hex[:8]
            futures = {
                client.submit(
                    explain_chunk,
                    job,
                    i,
                    chunks[i],
                    key=f"explain-chunk-{i:06d}-{token}",
                    pure=False,
                ): i
                for i in todo
            }
            tick = time.perf_counter()
            last_write = 0.0
            bar = tqdm(  # no bar where stderr is not a terminal (a log): no \r in it
                total=len(todo),
                unit="chunk",
                desc="explain-all",
                disable=None if progress else True,
            )
            # the job's own client and loop (not the process's default client), results
            # gathered as they come; a result lost with its worker is computed again by Dask
            done = distributed.as_completed(
                futures, loop=client.loop, with_results=True, raise_errors=False
            )
            for future, result in done:
                i = futures.pop(future)
                if future.status == "finished":
                    manifest["chunks"][str(i)] = result
                    summary.chunks_now += 1
                    summary.reasons_now += result["rows"]
                    if on_chunk is not None:
                        on_chunk(i, result)
                else:
                    exc = result[1] if isinstance(result, tuple) else result
                    summary.chunk_failures.append(
                        {"chunk": i, "users": chunks[i], "error": f"{type(exc).__name__}: {exc}"}
                    )
                future.release()
                summary.compute_seconds = time.perf_counter() - tick
                bar.update(1)
                rate = f"{summary.reasons_per_second:.1f}"
                bar.set_postfix(reasons=summary.reasons_now, per_s=rate)
                if time.perf_counter() - last_write >= manifest_interval:
                    write_manifest(job["out"], manifest)
                    last_write = time.perf_counter()
        finally:  # the finished chunks recorded first, whatever stopped the loop
            write_manifest(job["out"], manifest)
            if bar is not None:
                bar.close()


def _dashboard_note(summary: CatalogueSummary) -> str:
    if not summary.dashboard:
        return ""
    try:
        import bokeh  # noqa: F401  (the dashboard's pages need it)
    except ImportError:
        return f"; dashboard {summary.dashboard} needs bokeh (pip install bokeh)"
    return f"; dashboard {summary.dashboard}"


def format_summary(s: CatalogueSummary, show: int = 5) -> str:
    """The lines ``minireason explain-all`` prints at the end."""
    lines = [
        f"users:     {s.n_users} explained"
        + (f" (of {s.users_given})" if s.users_given not in ("all", "list") else "")
        + f", {s.n_cold_start} of them cold-start (no training history)",
    ]
    if s.unknown_users:
        sample = ", ".join(s.unknown_users[:show])
        more = f" and {len(s.unknown_users) - show} more" if len(s.unknown_users) > show else ""
        lines.append(
            f"unknown:   {len(s.unknown_users)} ids not in the prepared data: {sample}{more}"
        )
    if s.duplicate_users:
        lines.append(f"repeated:  {s.duplicate_users} ids given more than once (explained once)")
    lines.append(
        f"chunks:    {s.chunks_before + s.chunks_now} of {s.n_chunks} finished "
        f"({s.chunks_before} before, {s.chunks_now} now"
        + (f", {len(s.chunk_failures)} failed" if s.chunk_failures else "")
        + ")"
    )
    rate = f", {s.reasons_per_second:.1f} reasons/s" if s.reasons_now else ""
    lines.append(f"reasons:   {s.n_reasons} rows in {s.out} ({s.reasons_now} now{rate})")
    if s.pair_failures:
        lines.append(f"failures:  {len(s.pair_failures)} (user, item) pairs not explained:")
        lines += [
            f"  - {f['user']} rank {f['rank']} {f['item']}: {f['error']}"
            for f in s.pair_failures[:show]
        ]
    if s.chunk_failures:
        lines.append(f"failed:    {len(s.chunk_failures)} chunks (run the command again to retry):")
        lines += [f"  - chunk {f['chunk']}: {f['error']}" for f in s.chunk_failures[:show]]
    lines.append(f"time:      {s.seconds:.1f} s ({s.startup_seconds:.1f} s starting the cluster)")
    return "\n".join(map(inert, lines))

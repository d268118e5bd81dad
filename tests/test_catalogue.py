"""``minireason explain-all``: a whole catalogue explained on Dask, resumable and
deterministic, with nothing lost or duplicated when a worker or the client dies."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minireason.cli import main
from minireason.prep.prepared import load_prepared
from minireason.reason import catalogue as cat
from minireason.reason.explain import explain_for_user, fit_recommender, pair_seed
from minireason.reason.recommend import Popularity
from minireason.reason.scoring import SCORE_PARTS
from minireason.train.run import ScoreWeights, load_run, run_content

distributed = pytest.importorskip(
    "distributed", reason="explain-all needs the [scale] extra: pip install -e '.[scale]'"
)
parquet = pytest.importorskip(
    "pyarrow.parquet", reason="explain-all needs the [scale] extra (pyarrow)"
)

ROOT = Path(__file__).resolve().parents[1]
N_USERS, TOP_K = 10, 2


@pytest.fixture(scope="module")
def inputs(micro_run):
    prepared_dir, run_dir = micro_run
    return prepared_dir, run_dir, load_prepared(prepared_dir)


@pytest.fixture(scope="module")
def users_file(inputs, tmp_path_factory) -> Path:
    """Ten known users, an unknown id, a blank line and a repeated id."""
    _, _, prepared = inputs
    users = cat.known_users(prepared)[:N_USERS]
    path = tmp_path_factory.mktemp("users") / "users.txt"
    path.write_text("\n".join([*users[:5], "no-such-user", "", *users[5:], users[0]]) + "\n")
    return path


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 2 worker processes (one thread each), shared by this module."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
        env=cat.ONE_BLAS_THREAD,
    ) as c:
        yield c


def run_job(inputs, users_file, out, cluster=None, **options):
    prepared_dir, run_dir, _ = inputs
    options = {"chunk_size": 1, "top_k": TOP_K, "progress": False, **options}
    if cluster is not None:
        options["scheduler"] = cluster.scheduler_address
    return cat.explain_all(prepared_dir, run_dir, out, users=users_file, **options)


def sorted_rows(out) -> list[dict]:
    return sorted(cat.read_catalogue(out).to_pylist(), key=lambda r: (r["user"], r["rank"]))


@pytest.fixture(scope="module")
def baseline(inputs, users_file, cluster, tmp_path_factory):
    """An uninterrupted run with 2 workers, chunks of 1 user: (summary, sorted rows)."""
    out = tmp_path_factory.mktemp("baseline") / "out"
    summary = run_job(inputs, users_file, out, cluster)
    return summary, sorted_rows(out), out


# --------------------------------------------------------------------------- rows


def test_one_row_per_user_and_rank_for_every_requested_user(inputs, users_file, baseline):
    _, _, prepared = inputs
    summary, rows, out = baseline
    wanted = cat.known_users(prepared)[:N_USERS]
    assert summary.complete and summary.n_chunks == N_USERS
    assert summary.n_reasons == len(rows) == N_USERS * TOP_K
    assert summary.unknown_users == ["no-such-user"] and summary.duplicate_users == 1
    by_user: dict = {}
    for r in rows:
        by_user.setdefault(r["user"], []).append(r)
    assert sorted(by_user) == sorted(wanted)
    seen = prepared.train_sequences()
    for user, user_rows in by_user.items():
        assert [r["rank"] for r in user_rows] == list(range(1, TOP_K + 1))
        items = [r["item"] for r in user_rows]
        assert len(set(items)) == TOP_K and not set(items) & set(seen[user])
    assert all(r["reason"] and r["evidence_items"] and r["evidence_pieces"] for r in rows)
    for r in rows:
        shares = sum(e["share"] for e in r["evidence_items"])
        assert shares == pytest.approx(1.0)  # the history items and the item tile the prompt
        assert r["seed"] == pair_seed(0, r["user"], r["item"])
    assert list(cat.read_catalogue(out).column_names) == list(cat.COLUMNS)
    assert not list(out.glob(".*.tmp"))


def test_pandas_reads_the_catalogue_as_the_docs_say(baseline):
    pd = pytest.importorskip("pandas", reason="the [scale] extra installs pandas")
    _, rows, out = baseline
    frame = pd.read_parquet(out)  # the whole OUT; _manifest.json is skipped
    assert list(frame.columns) == list(cat.COLUMNS)
    assert sorted(zip(frame["user"], frame["rank"])) == [(r["user"], r["rank"]) for r in rows]


def test_the_scale_extra_installs_what_the_docs_promise():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads TOML")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scale = pyproject["project"]["optional-dependencies"]["scale"]
    names = {spec.partition(">")[0].partition("=")[0].strip() for spec in scale}
    # Dask and its distributed scheduler, Parquet, pandas.read_parquet, the dashboard's pages
    assert {"dask", "distributed", "pyarrow", "pandas", "bokeh"} <= names


def test_each_worker_process_loads_the_model_once(baseline):
    summary, _, _ = baseline
    entries = list(summary.chunks.values())
    workers = {e["worker"] for e in entries}
    loads = [e["worker"] for e in entries if e["loaded"]]
    assert sorted(loads) == sorted(workers)  # exactly one load per worker process
    assert len(entries) > len(workers)  # and several chunks per process


def test_a_row_is_what_explain_gives_with_its_seed(inputs, baseline):
    """``explain --user U --item I --seed S`` with a row's seed gives the row's reason."""
    from minireason.nn.threads import set_threads

    prepared_dir, run_dir, prepared = inputs
    run = load_run(run_dir)
    _, rows, _ = baseline
    before = set_threads(1)  # as the workers run
    try:
        for row in rows[:3]:
            (rec,) = explain_for_user(run, prepared, row["user"], row["item"], seed=row["seed"])
            assert rec.explanation.reason == row["reason"]
            assert rec.explanation.score.total == pytest.approx(row["score_total"], abs=1e-9)
            parts = rec.explanation.score.parts(rec.explanation.weights)
            assert {p: row[f"score_{p}"] for p in parts} == pytest.approx(parts, abs=1e-9)
            assert sum(row[f"score_{p}"] for p in SCORE_PARTS) == pytest.approx(row["score_total"])
            assert row["unknown_words"] == rec.explanation.score.unknown_words
            assert all(str(row[f"score_{p}"]) != "-0.0" for p in SCORE_PARTS)
    finally:
        set_threads(before)


def test_pair_seed_depends_on_seed_user_and_item_only():
    s = pair_seed(0, "u1", "i1")
    assert s == pair_seed(0, "u1", "i1") and 0 <= s < 2**63
    others = {pair_seed(1, "u1", "i1"), pair_seed(0, "u2", "i1"), pair_seed(0, "u1", "i2")}
    assert s not in others and len(others) == 3
    assert pair_seed(0, "u1\0i", "1") != pair_seed(0, "u1", "i\x001")  # fields do not blur


def test_a_cold_start_user_gets_popular_items_and_item_only_reasons(inputs):
    _, run_dir, prepared = inputs
    user = prepared.test[0]["user"]
    cold = dataclasses.replace(
        prepared,
        train=[r for r in prepared.train if r["user"] != user],
        users={u: v for u, v in prepared.users.items() if u != user},
    )
    assert user in cat.known_users(cold)  # in the test split, without training history
    recommender = fit_recommender(cold)
    run = load_run(run_dir)
    rows, failures, is_cold = cat.explain_user(
        run, cold, recommender, user, 3, 0, run.info.decoding, run.info.weights
    )
    popular = Popularity().fit(cold.train_sequences()).recommend(user, k=3)
    assert is_cold and not failures
    assert [r["item"] for r in rows] == [item for item, _ in popular]
    assert all(r["cold_start"] and r["history_used"] == 0 for r in rows)
    assert all(any("cold start" in n for n in r["notes"]) for r in rows)
    # no profile aspects and no past reviews: nothing to cover, no phrases of their own
    assert all(r["score_user"] == 0 and r["score_phrasing"] == 0 for r in rows)


def test_users_resolve_in_order_with_unknown_and_repeated_ids(inputs, tmp_path):
    _, _, prepared = inputs
    known = cat.known_users(prepared)
    listed = cat.resolve_users(prepared, [known[3], "x", known[1], known[3], " ", "y"])
    assert listed.users == [known[3], known[1]]
    assert listed.unknown == ["x", "y"] and listed.duplicates == 1
    assert cat.resolve_users(prepared, "all").users == known
    with pytest.raises(ValueError, match="none of its 2 ids is a user"):
        cat.resolve_users(prepared, ["x", "y"])
    with pytest.raises(FileNotFoundError, match="--users .*no such file"):
        cat.resolve_users(prepared, tmp_path / "absent.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        cat.resolve_users(prepared, bad)


# --------------------------------------------------------------------------- refusals


def test_other_settings_or_inputs_into_the_same_out_are_refused(inputs, users_file, baseline):
    """Checked before any cluster is started: the inputs and settings are in the manifest."""
    _, _, out = baseline
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    for options, named in [
        ({"top_k": TOP_K + 1}, "--top-k: 3 here, 2 there"),
        ({"chunk_size": 2}, "--chunk-size: 2 here, 1 there"),
        ({"seed": 5}, "--seed: 5 here, 0 there"),
        ({"recommender": "itemcf"}, "--recommender: itemcf here, hybrid there"),
        ({"users": "all"}, "--users: another list of users"),
    ]:
        users = options.pop("users", users_file)
        with pytest.raises(ValueError, match="holds an explain-all run with other") as exc:
            run_job(inputs, users, out, **options)
        assert named in str(exc.value)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_weights_given_are_recorded_used_and_a_resume_with_others_refused(
    inputs, users_file, baseline, cluster, tmp_path
):
    """``--weights FILE``'s weights go into the manifest with the file's name, score every
    row, and the same output cannot be resumed with the run's own weights."""
    prepared_dir, run_dir, prepared = inputs
    weights = ScoreWeights(consensus=3.0, item=0.0)
    out = tmp_path / "out"
    two = [u for u in cat.known_users(prepared)[:N_USERS] if u in prepared.users][:2]
    run_job(inputs, two, out, cluster, weights=weights, weights_from="tuned.json")
    settings = json.loads((out / cat.MANIFEST).read_text())["settings"]
    assert settings["score_weights"] == weights.to_dict()
    assert settings["weights_from"] == "tuned.json"
    run = load_run(run_dir)
    for row in sorted_rows(out):
        (rec,) = explain_for_user(
            run, prepared, row["user"], row["item"], seed=row["seed"], weights=weights
        )
        assert rec.explanation.reason == row["reason"]
        assert row["score_item"] == 0.0
    with pytest.raises(ValueError, match="the score's weights .* consensus 1.0 here, 3.0 there"):
        run_job(inputs, two, out, cluster)


def test_a_changed_top_k_is_one_line_from_the_cli(inputs, users_file, baseline, capsys):
    prepared_dir, run_dir, _ = inputs
    _, _, out = baseline
    argv = ["explain-all", "--prepared", str(prepared_dir), "--run", str(run_dir)]
    argv += ["--out", str(out), "--users", str(users_file), "--chunk-size", "1", "--top-k", "3"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--top-k: 3 here, 2 there" in err
    assert "Traceback" not in err


def test_other_prepared_data_and_foreign_or_corrupt_out_are_refused(
    inputs, users_file, baseline, tmp_path
):
    _, _, out = baseline
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / cat.MANIFEST).read_text())
    manifest["inputs"]["prepared"]["content"] = "0" * 64
    (copy / cat.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="--prepared has content"):
        run_job(inputs, users_file, copy)
    manifest["inputs"]["prepared"]["content"] = load_prepared(inputs[0]).content
    manifest["settings"]["score_weights"]["unknown"] = 0.5  # scored with other weights
    (copy / cat.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="the score's weights .*: unknown 1.0 here, 0.5 there"):
        run_job(inputs, users_file, copy)
    manifest["format_version"] = 1
    (copy / cat.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format version 1, this minireason reads version 2"):
        run_job(inputs, users_file, copy)
    (copy / cat.MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        run_job(inputs, users_file, copy)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an explain-all output"):
        run_job(inputs, users_file, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_a_worker_scores_with_the_jobs_weights_not_its_own_defaults(inputs, tmp_path):
    """The weights travel with the task: a worker writes rows scored exactly as the
    manifest's weights say, whatever its own defaults are."""
    from minireason.nn.threads import set_threads

    prepared_dir, run_dir, prepared = inputs
    run = load_run(run_dir)
    weights = ScoreWeights(unknown=0.5, consensus=3.0, item=0.0)
    job = {
        "out": str(tmp_path),
        "prepared": str(prepared_dir),
        "run": str(run_dir),
        "prepared_content": prepared.content,
        "run_content": run_content(run_dir),
        "allow_other_data": False,
        "recommender": "hybrid",
        "top_k": 2,
        "seed": 0,
        "decoding": dataclasses.asdict(run.info.decoding),
        "score_weights": weights.to_dict(),
    }
    users = cat.known_users(prepared)[:2]
    before = set_threads(1)  # as the workers run
    try:
        assert cat.explain_chunk(job, 0, users)["rows"] == 4
        rows = parquet.read_table(tmp_path / cat.chunk_file(0)).to_pylist()
        for row in rows:
            (rec,) = explain_for_user(
                run, prepared, row["user"], row["item"], seed=row["seed"], weights=weights
            )
            expl = rec.explanation
            assert expl.reason == row["reason"]
            assert row["score_total"] == pytest.approx(expl.score.total, abs=1e-9)
            assert row["score_consensus"] == pytest.approx(3.0 * expl.score.consensus)
            assert row["score_item"] == 0.0
    finally:
        set_threads(before)
    job["score_weights"] = {**weights.to_dict(), "bogus": 1.0}
    with pytest.raises(ValueError, match="unknown weight 'bogus'"):
        cat.explain_chunk(job, 1, users)


# --------------------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_cli_one_local_worker_gives_the_same_rows_then_resumes(
    inputs, users_file, baseline, tmp_path, capsys
):
    """1 worker and chunks of 3 against 2 workers and chunks of 1: the same rows."""
    prepared_dir, run_dir, _ = inputs
    _, rows, _ = baseline
    out = tmp_path / "out"
    argv = ["explain-all", "--prepared", str(prepared_dir), "--run", str(run_dir)]
    argv += ["--out", str(out), "--users", str(users_file), "--top-k", str(TOP_K)]
    argv += ["--chunk-size", "3", "--workers", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "unknown:   1 ids not in the prepared data: no-such-user" in printed.out
    assert "chunks:    4 of 4 finished (0 before, 4 now)" in printed.out
    assert "1 workers on a local cluster" in printed.err
    assert sorted_rows(out) == rows
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert main(argv) == 0  # the same command again: nothing to do
    assert "chunks:    4 of 4 finished (4 before, 0 now)" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")} == stamps


def test_without_the_extra_the_command_says_what_to_install(
    inputs, users_file, tmp_path, capsys, monkeypatch
):
    prepared_dir, run_dir, _ = inputs
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    argv = ["explain-all", "--prepared", str(prepared_dir), "--run", str(run_dir)]
    assert main(argv + ["--out", str(tmp_path / "out"), "--users", str(users_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert "needs the [scale] extra (distributed)" in err and "pip install" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_malformed_scheduler_address_is_one_line(inputs, users_file, tmp_path, capsys):
    prepared_dir, run_dir, _ = inputs
    argv = ["explain-all", "--prepared", str(prepared_dir), "--run", str(run_dir)]
    argv += ["--out", str(tmp_path / "out"), "--users", str(users_file), "--scheduler", "nowhere"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error" in line]
    assert len(errors) == 1 and errors[0] == err[-1]
    assert err[-1].startswith("minireason explain-all: error: --scheduler nowhere:")
    assert not any("Traceback" in line for line in err)


def test_the_core_package_does_not_import_the_extra():
    code = (
        "import sys, minireason.cli, minireason.demo, minireason.reason.catalogue, "
        "minireason.bench.catalogue, minireason.evaluation.evaluate\n"
        "minireason.cli.build_parser(['explain-all'])\n"
        "bad = [m for m in ('dask', 'distributed', 'pyarrow') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


# --------------------------------------------------------------------------- resume


@pytest.mark.slow
def test_a_damaged_chunk_file_is_recomputed_not_trusted(
    inputs, users_file, baseline, cluster, tmp_path
):
    _, rows, out = baseline
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    damaged = copy / cat.chunk_file(3)
    damaged.write_bytes(damaged.read_bytes()[:100])  # a truncated file
    (copy / cat.chunk_file(5)).unlink()
    (copy / ".part-000007.parquet.0123456789ab.tmp").write_bytes(b"half a file")
    summary = run_job(inputs, users_file, copy, cluster)
    assert (summary.chunks_before, summary.chunks_now) == (N_USERS - 2, 2)
    assert sorted_rows(copy) == rows
    assert not list(copy.glob(".*.tmp"))


@pytest.mark.slow
def test_a_killed_client_resumed_gives_the_same_rows(
    inputs, users_file, baseline, cluster, tmp_path
):
    """The client is SIGKILLed after its first finished chunk; the same command resumes."""
    prepared_dir, run_dir, _ = inputs
    _, rows, _ = baseline
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "minireason.cli", "explain-all"]
    argv += ["--prepared", str(prepared_dir), "--run", str(run_dir), "--out", str(out)]
    argv += ["--users", str(users_file), "--top-k", str(TOP_K), "--chunk-size", "1"]
    argv += ["--scheduler", cluster.scheduler_address]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, recorded = time.monotonic() + 120, 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            path = out / cat.MANIFEST
            if path.is_file():
                recorded = len(json.loads(path.read_text())["chunks"])
                if recorded:
                    break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        err = proc.communicate()[1]
    assert proc.returncode == -signal.SIGKILL, f"the client ended by itself: {err[-2000:]}"
    assert 0 < recorded < N_USERS, "the client was not killed mid-run"
    summary = run_job(inputs, users_file, out, cluster)
    assert summary.complete and 0 < summary.chunks_before < N_USERS
    assert summary.chunks_before + summary.chunks_now == N_USERS
    assert sorted_rows(out) == rows
    assert len(list(out.glob("part-*.parquet"))) == N_USERS


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
    inputs, users_file, baseline, cluster, tmp_path
):
    """After the first finished chunk, a worker that holds chunks is SIGKILLed; Dask runs
    them again elsewhere and every row is there exactly once."""
    _, rows, _ = baseline
    killed: dict = {}

    def busy_workers() -> list[tuple[int, list[str]]]:
        """(pid, keys held) of each worker, read from the in-process scheduler."""
        for _ in range(100):
            try:
                states = list(cluster.scheduler.workers.values())
                return [(ws.pid, [ts.key for ts in list(ws.processing)]) for ws in states]
            except RuntimeError:  # changed by the scheduler's thread while read: again
                time.sleep(0.001)
        return []

    def kill_a_busy_worker(index, entry):
        if killed:
            return
        for pid, keys in busy_workers():
            if keys:
                killed.update(pid=pid, keys=keys, after=index)
                os.kill(pid, signal.SIGKILL)
                return

    cluster.wait_for_workers(2, timeout=60)
    out = tmp_path / "out"
    summary = run_job(inputs, users_file, out, cluster, on_chunk=kill_a_busy_worker)
    assert killed, "no worker held a chunk when the first one finished"
    assert summary.complete and summary.chunks_now == N_USERS
    assert sorted_rows(out) == rows
    assert summary.n_reasons == len(rows)
    held = {int(key.split("-")[2]) for key in killed["keys"]}
    victim = f"{socket.gethostname()}:{killed['pid']}"
    # what the killed worker held was made again by another process
    assert any(summary.chunks[str(i)]["worker"] != victim for i in held)
    cluster.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert killed["pid"] not in [pid for pid, _ in busy_workers()]
    assert not list(out.glob(".*.tmp"))


# --------------------------------------------------------------------------- the bench


@pytest.mark.slow
def test_bench_explain_all_reports_rates_and_the_same_rows(inputs):
    from minireason.bench.catalogue import format_report, run_bench_explain_all

    prepared_dir, run_dir, _ = inputs
    result = run_bench_explain_all(prepared_dir, run_dir, n_users=4, top_k=1, chunk_size=2)
    assert result["same_rows"]
    assert [r["workers"] for r in result["runs"]] == [1, 2]
    for r in result["runs"]:
        assert r["reasons"] == 4 and r["reasons_per_second"] > 0 and r["per_process_rate"] > 0
        assert len(r["load_seconds"]) <= r["workers"]
    assert result["estimate"]["core_hours"] == pytest.approx(
        1e7 / result["runs"][0]["per_process_rate"] / 3600
    )
    report = format_report(result)
    assert "same rows in every run: yes" in report and "core-hours" in report

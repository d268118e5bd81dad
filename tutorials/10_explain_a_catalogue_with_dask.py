# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 · Explaining a whole catalogue on Dask
#
# **Goal.** A practitioner does not explain one user at a time: they precompute, for every
# user, the top-k recommendations with a reason each, store them, and serve them. Here we
# (1) see why the job must be *deterministic* to be cut into tasks, (2) run it on a local
# Dask cluster with `minireason explain-all`, (3) read the Parquet output back, (4) resume it
# and watch it refuse other settings, (5) draw which worker did what, (6) point the same
# command at a "real" cluster (a scheduler and workers started the way one starts them on
# machines), and (7) estimate the time for a million users from the rate measured here.
#
# **Time:** with `MINIREASON_FAST=1` a 600-review slice and the `tutorial_fast` preset, a
# 1-layer, 32-wide model trained 20 + 20 steps (its reasons are gibberish: the mechanics are
# what matter), 12 users; about half a minute, most of it starting worker processes.
# Otherwise tutorial 06's run if it is in `$MINIREASON_TUTORIAL_OUT/06_run` (else this trains
# its `tutorial` preset, minutes), 60 users.
# **Prerequisites:** tutorial 07 (what one explanation is). Needs the `[scale]` extra
# (`pip install -e ".[scale]"`: dask, distributed, pyarrow); `[dev]` includes it.

# %%
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pyarrow.parquet as pq

from minireason.data.fetch import find_reviews
from minireason.prep.prepare import PrepareConfig, prepare, prepare_sample
from minireason.prep.prepared import load_prepared
from minireason.reason.catalogue import known_users, read_catalogue
from minireason.reason.explain import explain_for_user, fit_recommender, pair_seed
from minireason.reason.scoring import SCORE_PARTS
from minireason.train.recipe import run_recipe
from minireason.train.run import load_run

FAST = os.environ.get("MINIREASON_FAST") == "1"
OUT = Path(os.environ.get("MINIREASON_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 0. A trained run
#
# Tutorial 06's run if it is there; otherwise the same preparation and preset, done here.

# %%
SUFFIX = "_fast" if FAST else ""
prepared_dir, run_dir = OUT / f"06_prepared{SUFFIX}", OUT / f"06_run{SUFFIX}"
if not (run_dir / "finetune" / "checkpoint.json").is_file():
    REVIEWS = find_reviews("musical-instruments")  # $MINIREASON_DATA_DIR, ../shared/data, cache
    if not (prepared_dir / "manifest.json").is_file():
        if FAST:
            prepare_sample(REVIEWS, prepared_dir, n_lines=600)
        else:
            prepare(PrepareConfig(reviews=str(REVIEWS), out=str(prepared_dir), progress=False))
    preset = "tutorial_fast" if FAST else "tutorial"  # tutorial 06's
    run_recipe(prepared_dir, preset, run_dir, resume=True, progress=not FAST)
prep = load_prepared(prepared_dir)
run = load_run(run_dir)
users = known_users(prep)[: 12 if FAST else 60]
TOP_K, CHUNK = (2, 3) if FAST else (3, 5)
users_file = OUT / "10_users.txt"
users_file.write_text("\n".join([*users, "no-such-user"]) + "\n", encoding="utf-8")
print(f"{len(known_users(prep))} users in the prepared data; we explain {len(users)} of them")

# %% [markdown]
# ## 1. Why the seed comes from (seed, user, item)
#
# Sampling 16 candidates needs random numbers. `minireason explain` seeds the r-th
# recommendation with `seed + r`: fine for one user, but a batch job that is cut into tasks
# must give every (user, item) the same explanation whichever task, worker or order computes
# it, and whether a task runs once or twice (Dask runs a task again when its worker dies).
# So each explanation is seeded by `pair_seed(seed, user, item)`: 63 bits of SHA-256 over the
# three, nothing else. That seed is stored in every output row, and `minireason explain
# --user U --item I --seed S` with it gives the same reason again.

# %%
user = users[0]
recs = fit_recommender(prep).recommend(user, k=TOP_K)
for rank, (item, score) in enumerate(recs, 1):
    print(f"rank {rank}: {item} (score {score:.2f}), seed {pair_seed(0, user, item)}")
item = recs[0][0]
(rec,) = explain_for_user(run, prep, user, item, seed=pair_seed(0, user, item))
print("its reason:", rec.explanation.reason[:100])

# %% [markdown]
# ## 2. A local cluster, from the command line
#
# `minireason explain-all` cuts the users into chunks of `--chunk-size`, makes each chunk a
# Dask task, and runs the tasks on a local cluster of `--workers` processes (one thread and
# one BLAS thread each: decoding multiplies small matrices, and two BLAS threads per process
# would fight over the cores). Each worker process loads the run, the prepared data and the
# recommender once, then explains chunk after chunk; each chunk is written as one Parquet
# file, under a temporary name and then renamed, so a file is whole or absent. The client
# shows progress (chunks, reasons, reasons per second), keeps `_manifest.json` and prints a
# summary. Unknown ids (we put one in the file) are reported, not fatal.
#
# While it runs, the client prints the dashboard's address (`http://127.0.0.1:8787/status`
# unless the port is taken): open it to watch the tasks stream by. Its pages need `bokeh`
# (`pip install bokeh`); without it the line says so.
#
# A notebook or the command line needs nothing more. A *script* that calls
# `minireason.reason.catalogue.explain_all` itself must call it under `if __name__ ==
# "__main__":`, since the worker processes start by re-running the main script; this
# tutorial runs the command instead, so it works both ways.

# %%
catalogue = OUT / "10_catalogue"


def explain_all(out, *options, show=True):
    """Run ``minireason explain-all`` into ``out`` with these users, top-k and chunk size and
    the given ``options``; print its notes and summary (the progress bar left out)."""
    command = [sys.executable, "-m", "minireason.cli", "explain-all", "--out", str(out)]
    command += ["--prepared", str(prepared_dir), "--run", str(run_dir), "--users", str(users_file)]
    command += ["--top-k", str(TOP_K), "--chunk-size", str(CHUNK), *options]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    notes = [
        line
        for line in proc.stderr.splitlines()
        if line.startswith("explain-all: ") and "|" not in line  # not the progress bar
    ]
    if show:
        print("\n".join(notes + [proc.stdout.strip()]).strip())
    return proc


start = time.perf_counter()
first = explain_all(catalogue, "--workers", "2")
assert first.returncode == 0, first.stderr[-2000:]
print(f"({time.perf_counter() - start:.1f} s, the Python start-up of the command included)")

# %% [markdown]
# ## 3. Reading the output back
#
# The output is a folder of Parquet files. Any Parquet reader takes the whole folder
# (`pyarrow.parquet.read_table(OUT)`, `pandas.read_parquet(OUT)`, Spark, DuckDB): the
# manifest and the temporary files start with `_` and `.`, which readers skip.
# `read_catalogue(OUT)` reads only the chunks the manifest vouches for. One row per (user,
# rank): the item, the recommender's score, the reason, its focus, the evidence (attention
# share of each history item and of the item; the strongest single tags), the step-4 score
# and each signed, weighted term of it (`score_focus`, `score_consensus`, `score_unknown`,
# ...: they add up to `score_total`), and the seed.

# %%
table = pq.read_table(catalogue)
print(f"{table.num_rows} rows, {len(table.column_names)} columns: {', '.join(table.column_names)}")
rows = sorted(read_catalogue(catalogue).to_pylist(), key=lambda r: (r["user"], r["rank"]))
assert len(rows) == table.num_rows == len(users) * TOP_K
assert len({(r["user"], r["rank"]) for r in rows}) == len(rows)  # nothing twice
for r in rows[:TOP_K]:
    evidence = ", ".join(f"{e['item']} {100 * e['share']:.0f}%" for e in r["evidence_items"][:3])
    print(f"{r['user']} #{r['rank']} {r['item']} (recommender {r['recommender_score']:.2f})")
    print(f"   reason: {r['reason'][:90]!r}")
    print(f"   focus: {', '.join(r['focus'])}; attention on {evidence}")
    terms, total = {p: r[f"score_{p}"] for p in SCORE_PARTS}, r["score_total"]
    largest = sorted((t for t in terms.items() if t[1]), key=lambda t: -abs(t[1]))[:3]
    print(
        f"   step-4 score {total:.2f} = " + " ".join(f"{v:+.2f} {k}" for k, v in largest) + " ..."
    )
    assert abs(sum(terms.values()) - total) < 1e-9
assert rows[0]["seed"] == pair_seed(0, rows[0]["user"], rows[0]["item"])

# %%
manifest = json.loads((catalogue / "_manifest.json").read_text())
print("inputs:", {k: v["content"][:12] for k, v in manifest["inputs"].items()})
skip = ("decoding", "score_weights")
print("settings:", {k: v for k, v in manifest["settings"].items() if k not in skip})
print("unknown users:", manifest["unknown_users"], "| chunks finished:", len(manifest["chunks"]))

# %% [markdown]
# ## 4. Resuming, and refusing
#
# The same command again skips every finished chunk (its file is there with the size and
# SHA-256 the manifest recorded). We delete one chunk file first, as if the job had been
# killed before writing it: only that chunk is computed again, and the rows are the same.
# Another `--top-k` into the same folder is refused: the rows would mix two settings.

# %%
(catalogue / "part-000001.parquet").unlink()
again = explain_all(catalogue, "--workers", "2")
assert again.returncode == 0 and "1 now" in again.stdout
same = sorted(read_catalogue(catalogue).to_pylist(), key=lambda r: (r["user"], r["rank"]))
assert same == rows
print("the same rows after the resume:", same == rows)
refused = explain_all(catalogue, "--workers", "2", "--top-k", str(TOP_K + 1), show=False)
print(f"exit status {refused.returncode}: {refused.stderr.strip()}")

# %% [markdown]
# ## 5. Who did what
#
# The manifest records, for each chunk, the worker process that made it and when. Two
# workers share the chunks; the first chunk of each worker is longer, since that is when it
# loads the run and the data.

# %%
chunks = manifest["chunks"]
workers = sorted({c["worker"] for c in chunks.values()})
t0 = min(c["start"] for c in chunks.values())
fig, ax = plt.subplots(figsize=(7, 1.2 + 0.5 * len(workers)))
for i, c in sorted(chunks.items(), key=lambda kv: int(kv[0])):
    y = workers.index(c["worker"])
    ax.barh(y, c["stop"] - c["start"], left=c["start"] - t0, color="C0" if c["loaded"] else "C1")
    ax.text(c["start"] - t0, y, f" {i}", va="center", fontsize=8, color="white")
ax.set_yticks(range(len(workers)))
ax.set_yticklabels([f"worker {w.split(':')[-1]}" for w in workers])
ax.set_xlabel("seconds since the first chunk started (blue: load + chunk, orange: chunk)")
ax.set_title(f"{len(chunks)} chunks of {CHUNK} users on {len(workers)} worker processes")
fig.tight_layout()
fig.savefig(OUT / "10_chunk_timeline.png", dpi=120)
plt.show()
print("saved", OUT / "10_chunk_timeline.png")

# %% [markdown]
# ## 6. Pointing it at a real cluster
#
# On real machines one starts a scheduler on one of them (`dask scheduler`) and workers on
# the others (`dask worker tcp://SCHEDULER:8786 --nthreads 1`, one per core, or `--nworkers
# N --nthreads 1` on a machine of N cores), then gives the client the scheduler's address:
# `minireason explain-all ... --scheduler tcp://SCHEDULER:8786`. Every worker needs the same
# minireason installed, and the run, the prepared directory and `--out` at the same paths (a
# shared file system): workers read the inputs and write the chunks themselves; each checks
# that its copy of the inputs has the identity the client recorded. Here we start exactly
# those processes on this machine, and compare the rows with the local cluster's.

# %%
scheduler_file = OUT / "10_scheduler.json"
scheduler_file.unlink(missing_ok=True)
python_m = [sys.executable, "-m"]  # what the `dask scheduler` and `dask worker` commands run
quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
scheduler = subprocess.Popen(
    [*python_m, "distributed.cli.dask_scheduler", "--port", "0", "--no-dashboard"]
    + ["--scheduler-file", str(scheduler_file)],
    **quiet,
)
worker = None
elsewhere = OUT / "10_catalogue_on_a_cluster"
try:
    for _ in range(600):
        if scheduler_file.is_file() and scheduler_file.stat().st_size:
            break
        time.sleep(0.1)
    address = json.loads(scheduler_file.read_text())["address"]
    worker = subprocess.Popen(
        [*python_m, "distributed.cli.dask_worker", address, "--nworkers", "2"]
        + ["--nthreads", "1", "--no-dashboard"],
        **quiet,
    )
    print("scheduler at", address)
    proc = explain_all(elsewhere, "--scheduler", address)
    assert proc.returncode == 0, proc.stderr[-2000:]
finally:
    for p in (worker, scheduler):
        if p is not None:
            p.terminate()
            p.wait(timeout=60)
theirs = sorted(read_catalogue(elsewhere).to_pylist(), key=lambda r: (r["user"], r["rank"]))
print("the same rows as on the local cluster:", theirs == rows)
assert theirs == rows

# %% [markdown]
# ## 7. How long for a million users?
#
# Each chunk entry holds its explaining seconds (the one-time load left out). Rows over
# those seconds is what one worker process, one core, sustains: `r` reasons per second. For
# `U` users with `k` recommendations each on `N` machines of `c` cores, if the job scales
# linearly (it has no shared state but the file system), the time is `U k / (r c N)`.
# `minireason bench explain-all` measures `r` with 1 and 2 workers; docs/catalogue.md has the
# figures and the estimate. The number below is this run's, on this machine, for this model.

# %%
rate = sum(c["rows"] for c in chunks.values()) / sum(c["seconds"] for c in chunks.values())
core_hours = 1_000_000 * 10 / rate / 3600
print(f"per worker process: {rate:.1f} reasons/s on this machine and model")
print(f"1M users x 10 recommendations: {core_hours:,.0f} core-hours,")
print(f"that is {core_hours / 160:,.1f} hours on 10 machines of 16 cores (linear scaling)")

"""Seed step 4: recommend items, generate candidate reasons, pick one, show its evidence.

Reads: a run directory (:mod:`minireason.train.run`) and, for known users, the prepared
directory it was trained on. Writes nothing but what it is asked to (a heatmap PNG, the HTML
report, or a catalogue's Parquet files and manifest). Taught in tutorial 07, a catalogue in
tutorial 10; assignment A4 implements the scoring and the evidence.

Modules, in the order data flows:

- ``recommend``: popularity, item CF, content and hybrid recommenders, HR/NDCG;
- ``generate``: sampling with a per-layer KV cache (greedy, temperature, top-k, top-p);
- ``scoring``: score the sampled candidates and rank them;
- ``evidence``: attention over the prompt's segments, and its heatmap;
- ``explain``: one prompt -> an explained reason; a user -> explained recommendations;
- ``catalogue``: every user's explained recommendations as a Dask job, into Parquet
  (``minireason explain-all``; the ``[scale]`` extra, imported there only);
- ``explanations_page``: explained recommendations -> one self-contained HTML page
  (token-level attention, every step-4 candidate), drawn by ``templates/explanations.js`` on
  :mod:`minireason.html_page`.
"""

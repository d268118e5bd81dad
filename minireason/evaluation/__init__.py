"""Evaluation: explanation metrics against baselines, and recommendation metrics.

Reads: a prepared directory and a run directory. Writes: ``evaluation.json``,
``evaluation.md``, ``evaluation.png``, ``evaluation.html`` and ``generations.jsonl``
(``minireason evaluate``).
Taught in tutorial 08; assignment A4 implements BLEU and ROUGE-L.

Modules:

- ``metrics``: BLEU, ROUGE, USR, FMR, FCR, DIV and perplexity, as PETER / PEPLER define them,
  and their names in the reports;
- ``grounding``: item-specificity, groundedness and copy rate, a reason judged against
  the item's training reviews (the real reference sentences too);
- ``baselines``: the random, retrieval, evidence and template reasons, and their registry;
- ``evaluate``: the job behind ``minireason evaluate``, which computes the evaluation;
- ``render``: what is drawn and written from its result: ``evaluation.md``,
  ``evaluation.png``, ``evaluation.html`` (the metrics and every generation, sortable and
  filterable) and the files, put in place together.
"""

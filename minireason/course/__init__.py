"""The course: the autograder, assignments A1-A4, and the seed document's worked example.

Reads: a student's ``.py`` file (``minireason grade A1 FILE``). Writes: a score table and
Gradescope's ``results.json``. The student stubs and READMEs live in
``tutorials/assignments/``; tutorial 01 walks through the worked example.

Modules:

- ``grading``: run an assignment's weighted tests against a student's file, one process per
  test;
- ``assignments``: A1 (attention), A2 (layers backward), A3 (prompts and loss masking),
  A4 (step-4 scoring, evidence and metrics);
- ``worked_example``: section 4.3 of the seed document, computed correctly, with errata.
"""

"""The course: the autograder, assignments A1-A4, and the seed document's worked example.

Reads: a student's ``.py`` file, a folder of them, or a Gradescope submission
(``minireason grade A1 PATH``). Writes: a score table, Gradescope's ``results.json``, a CSV of
a folder's grades, the Gradescope kit. The student stubs and READMEs live in
``tutorials/assignments/`` (with ``INSTRUCTORS.md``); tutorial 01 walks through the worked
example.

Modules:

- ``grading``: run an assignment's weighted tests against a student's file and judge the
  outputs; its docstring is the trust model;
- ``sandbox``: one test's process (private directory, session, limits, sandbox user, kills);
- ``runner``: what runs in that process (the import guard, the student's calls, no verdict);
- ``wire``: the values between them, as data without pickle;
- ``static_check``: notes on a submission's source (imports the sandbox refuses);
- ``batch``: a folder of submissions, in parallel, with a CSV;
- ``gradescope``: the autograder kit and Gradescope's submission folder;
- ``assignments``: A1 (attention), A2 (layers backward), A3 (prompts and loss masking),
  A4 (step-4 scoring, evidence and metrics);
- ``worked_example``: section 4.3 of the seed document, computed correctly, with errata.
"""

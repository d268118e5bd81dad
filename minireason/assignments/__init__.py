"""Course assignments graded by :mod:`minireason.grading` (``minireason grade NAME FILE``).

Each module here defines ``NAME``, ``TITLE``, ``STUDENT_FILE`` (the stub students edit, under
``tutorials/assignments/``), ``STUDENT_API`` (the functions the file must define) and
``TESTS`` (weighted :class:`minireason.grading.GradedTest` items).
"""

ASSIGNMENTS = {
    "A1": "minireason.assignments.a1",
    "A2": "minireason.assignments.a2",
    "A3": "minireason.assignments.a3",
    "A4": "minireason.assignments.a4",
}

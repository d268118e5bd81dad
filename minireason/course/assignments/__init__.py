"""Course assignments graded by :mod:`minireason.course.grading` (``minireason grade NAME FILE``).

Each module here defines ``NAME``, ``TITLE``, ``STUDENT_FILE`` (the stub students edit, under
``tutorials/assignments/``), ``STUDENT_API`` (the functions the file must define) and
``TESTS`` (weighted :class:`minireason.course.grading.GradedTest` items).
"""

ASSIGNMENTS = {
    "A1": "minireason.course.assignments.a1",
    "A2": "minireason.course.assignments.a2",
    "A3": "minireason.course.assignments.a3",
    "A4": "minireason.course.assignments.a4",
}

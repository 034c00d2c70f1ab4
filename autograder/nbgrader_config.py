# nbgrader configuration of a course folder made by `python -m autograder instructor DIR`.
# nbgrader reads it from the folder it runs in (the command line, or `jupyter lab` started there for
# the formgrader); `python -m autograder grade` uses it too. It needs nothing else: no environment
# variable, no installed kernel, only the Python environment where kvlib and the autograder are
# installed (the repository's .venv).
import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "kv-cache-course"
# Solutions are cleared with the same stub everywhere, so released notebooks score 0.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# nbgrader's own pipelines, with three changes (taken from nbgrader's defaults, so a 0.9.x release that
# adds a step keeps it):
# - autograde grades exactly as `python -m autograder check` does (autograder/nbgrader_grading.py): the
#   same cells (deleted or edited test and setup cells restored), the same memory-capped kernel and
#   per-cell timeout, the same messages; nbgrader's Execute step is replaced;
# - generate_assignment tags exercise cells `raises-exception`, so Run All in a student's JupyterLab
#   goes past unsolved exercises (grading still scores them);
# - generate_feedback shows test cells without their hidden region.
from nbgrader.converters import Autograde, GenerateAssignment, GenerateFeedback  # noqa: E402

OURS = "autograder.nbgrader_grading."


def _default(converter: type, trait: str) -> list:
    return list(converter.class_traits()[trait].default())


c.Autograde.autograde_preprocessors = [
    OURS + "GradeLikeCheck" if step.__name__ == "Execute" else step
    for step in _default(Autograde, "autograde_preprocessors")
]
c.GradeLikeCheck.memory_mb = None  # MiB; None: the grader's default (6144)
c.GenerateAssignment.preprocessors = [*_default(GenerateAssignment, "preprocessors"), OURS + "TagRunAll"]
c.GenerateFeedback.preprocessors = [*_default(GenerateFeedback, "preprocessors"), OURS + "HideTestSource"]

# Quiet what is expected: every released test cell differs from its source (the hidden tests were cut),
# so nbgrader warns "checksum has changed" for each one of each submission; SQLAlchemy warns when
# nbgrader creates a student. `python -m autograder grade` prints what is real instead (a test or setup
# cell deleted or edited, points edited, sys.exit, a dead kernel), one line each.
import logging  # noqa: E402
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=r".*not in session.*")


class _ExpectedNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Attribute 'checksum' for cell" in message and "_test has changed" in message)


logging.getLogger("AutogradeApp").addFilter(_ExpectedNoise())

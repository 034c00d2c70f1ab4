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

# Autograde exactly as `python -m autograder check` does (autograder/nbgrader_grading.py): the same
# cells (deleted or edited test and setup cells restored), the same memory-capped kernel and per-cell
# timeout, the same messages. nbgrader's own Execute is left out of the pipeline.
c.Autograde.autograde_preprocessors = [
    "autograder.nbgrader_grading.GradeLikeCheck",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.GradeLikeCheck.memory_mb = None  # MiB; None: the grader's default (6144)
# Feedback (`nbgrader generate_feedback`) shows test cells without their hidden region.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "autograder.nbgrader_grading.HideTestSource",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

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

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

# nbgrader configuration for a course directory made by `python -m autograder instructor DIR`.
# nbgrader reads this file from the directory it runs in; `python -m autograder grade` uses it too.
import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "kv-cache-course"
# Solutions are cleared with the same stub everywhere, so released notebooks score 0.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
# Grade in the memory-capped kernel (kernelspec written next to this file, found via JUPYTER_PATH).
c.Execute.kernel_name = "kvcourse-grader"
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
c.Execute.allow_errors = True

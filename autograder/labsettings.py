"""JupyterLab settings for the course: environment-wide overrides, and the learner's own config folder.

`make setup` writes the overrides into the active environment: JupyterLab's news and update
notifications ask the internet and cover part of the page; learners and our browser test do not
need them. Notebooks are rendered whole (no windowing): our notebooks are short, and find-in-page
and the browser test then see every cell.

`make lab` writes a learner-only Jupyter config folder (`--learner DIR`) and puts it first on
JUPYTER_CONFIG_PATH for that one server: nbgrader's JupyterLab plugins and server extensions are off
there. They stay on in the environment, so an instructor who runs `jupyter lab` in the nbgrader
course folder (`python -m autograder instructor DIR`) keeps the formgrader and its menus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .release import require_folder

OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}

# Every JupyterLab plugin of nbgrader 0.9.6 (@jupyter/nbgrader; tests/test_learner_lab.py checks this
# list against the installed bundle), and why a self-study learner does without it.
NBGRADER_LAB_PLUGINS = {
    "@jupyter/nbgrader:formgrader": "instructor: grading UI over the course's gradebook",
    "@jupyter/nbgrader:create-assignment": "instructor: edits the nbgrader metadata of cells",
    "@jupyter/nbgrader:course-list": "instructor: the courses the formgrader manages",
    "@jupyter/nbgrader:menu": "the 'Nbgrader' menu: holds only the commands of the plugins above and below",
    "@jupyter/nbgrader:assignment-list": (
        "classroom students fetch and submit through an nbgrader exchange on their hub; "
        "`make lab` has none, so the list could only show an error"
    ),
    "@jupyter/nbgrader:validate-assignment": (
        "its Validate button runs `nbgrader validate`, which runs only the visible tests and so passes "
        "wrong answers; the self-check is `python -m autograder check NOTEBOOK`"
    ),
}
# The server side of the same plugins: /formgrader would otherwise still answer in the learner's lab.
NBGRADER_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.validate_assignment",
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
)


def write_overrides(prefix: Path = Path(sys.prefix)) -> Path:
    path = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(OVERRIDES)
    path.write_text(json.dumps(current, indent=2) + "\n")
    return path


def write_learner_config(config_dir: Path) -> Path:
    """Write the learner-only Jupyter config folder (page config and server config); return it.

    Put it first on JUPYTER_CONFIG_PATH for the learner's server only: JupyterLab merges
    `labconfig/page_config.json` from every config folder, and the first folder's server settings win.
    """
    config_dir = require_folder("the learner config folder (--learner)", config_dir)
    page = {"disabledExtensions": {plugin: True for plugin in NBGRADER_LAB_PLUGINS}}
    server = {"ServerApp": {"jpserver_extensions": {name: False for name in NBGRADER_SERVER_EXTENSIONS}}}
    (config_dir / "labconfig").mkdir(parents=True, exist_ok=True)
    (config_dir / "labconfig" / "page_config.json").write_text(json.dumps(page, indent=2) + "\n")
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(server, indent=2) + "\n")
    return config_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m autograder.labsettings", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--learner", type=Path, metavar="DIR", help="write the learner-only config folder DIR"
    )
    args = parser.parse_args(argv)
    if args.learner is not None:
        print(f"learner Jupyter config: {write_learner_config(args.learner)}")
    else:
        print(f"JupyterLab settings: {write_overrides()}")


if __name__ == "__main__":
    main()

"""Install path: pins agree between pyproject, environment.yml, Makefile and CI."""

from __future__ import annotations

import re

import tomllib
import yaml
from conftest import REPO


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0].lower()


def _pyproject_specs() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs.extend(extra)
    return {_name(s): s.replace(" ", "") for s in specs}


def _environment_specs() -> dict[str, str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_name(s): s.replace(" ", "") for s in pip}


def _makefile_torch_spec() -> str:
    match = re.search(r"^TORCH_SPEC \?= (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert match, "Makefile must define TORCH_SPEC ?= torch==X"
    return match.group(1)


def test_environment_yml_lists_the_same_packages_and_pins():
    py, env = _pyproject_specs(), _environment_specs()
    assert set(py) == set(env), (
        f"only in pyproject: {set(py) - set(env)}; only in environment.yml: {set(env) - set(py)}"
    )
    for name, spec in py.items():
        if name == "torch":
            continue  # pyproject accepts the installed build; the pin is TORCH_SPEC (checked below)
        assert env[name] == spec, f"{name}: pyproject says {spec}, environment.yml says {env[name]}"


def test_torch_is_pinned_in_the_install_path():
    assert _makefile_torch_spec() == "torch==2.13.0"
    assert _environment_specs()["torch"] == "torch==2.13.0"
    assert _pyproject_specs()["triton"] == "triton==3.7.1"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme


def test_ruff_passes():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-4000:]

"""Binder (repo2docker) builds an image that opens JupyterLab on the course, with its settings.

* The files in ``binder/`` are checked as files: the Python version, the pinned requirements that
  install the course itself (``-e .``), an executable ``postBuild`` that stops at the first error.
* ``jupyter-repo2docker --no-build`` renders the Dockerfile Binder would build (no Docker needed):
  the repository is copied before ``binder/requirements.txt`` is installed (``-e .`` needs it),
  then ``postBuild`` runs, and the command the image starts is configured to land on the course.
* ``postBuild`` is run for real into a scratch prefix, and a JupyterLab started the way the image
  starts it reads the installed files: the welcome notebook as its landing page, the course's
  JupyterLab settings. ``make lab`` points JupyterLab at the same settings (``lab_command``).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from importlib.metadata import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tlslab.cli import LAB_SETTINGS_DIR, WELCOME_NOTEBOOK, lab_command

from _tools import free_port, wait_until_listening

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
# The course's own requirements, as pyproject.toml declares them (read from the installed metadata,
# which `make test` refreshes whenever pyproject.toml changes; tomllib needs Python 3.11).
COURSE = metadata("tlslab")
WELCOME_URL = f"/lab/tree/{WELCOME_NOTEBOOK.as_posix()}"
OVERRIDES = ROOT / LAB_SETTINGS_DIR / "overrides.json"
SERVER_CONFIG = ROOT / "jupyter" / "jupyter_server_config.json"
# Where binder/postBuild installs them, relative to the image's environment ($NB_PYTHON_PREFIX).
INSTALLED_OVERRIDES = Path("share/jupyter/lab/settings/overrides.d/tlslab.json")
INSTALLED_SERVER_CONFIG = Path("etc/jupyter/jupyter_server_config.json")  # merged into, not copied
NOTIFICATION = "@jupyterlab/apputils-extension:notification"


def _requirements() -> list[str]:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    return [line.split(" #")[0].strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


# --- the files in binder/ ------------------------------------------------------------------


def test_runtime_is_a_python_the_course_supports() -> None:
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+\.\d+)", runtime)
    assert match, f"binder/runtime.txt should read like 'python-3.11', not {runtime!r}"
    assert Version(match[1]) in SpecifierSet(COURSE["Requires-Python"])


def test_requirements_install_the_course_and_pin_its_dependencies() -> None:
    lines = _requirements()
    # With a binder/ folder repo2docker ignores pyproject.toml: only this line installs tlslab.
    assert "-e ." in lines, "binder/requirements.txt must install the course itself with '-e .'"
    pins = {}
    for line in lines:
        if line == "-e .":
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"pin an exact version: {line!r}"
        pins[requirement.name.lower().replace("_", "-")] = Version(specifiers[0].version)
    for dependency in map(Requirement, COURSE.get_all("Requires-Dist") or []):
        if dependency.marker is not None:  # an extra's (test) requirement, not the course's
            continue
        name = dependency.name.lower().replace("_", "-")
        assert name in pins, f"binder/requirements.txt should pin {dependency.name} (a dependency in pyproject.toml)"
        assert pins[name] in dependency.specifier, (
            f"binder/requirements.txt pins {name}=={pins[name]}, outside pyproject.toml's {dependency}"
        )


def test_post_build_is_an_executable_script_that_stops_at_the_first_error() -> None:
    script = BINDER / "postBuild"
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n")
    commands = [line.strip() for line in text.splitlines()[1:] if line.strip() and not line.lstrip().startswith("#")]
    assert commands and commands[0].startswith("set -e"), "postBuild's first command should be 'set -e…'"
    assert script.stat().st_mode & stat.S_IXUSR, "binder/postBuild must be executable (chmod +x)"
    tracked = subprocess.run(
        ["git", "ls-files", "--stage", "binder/postBuild"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout
    if tracked:  # once committed, git must keep the executable bit (Binder clones the repository)
        assert tracked.startswith("100755 "), f"git records binder/postBuild as {tracked.split()[0]}, not 100755"
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


# --- the Dockerfile repo2docker renders ----------------------------------------------------


def _repo2docker() -> list[str]:
    script = Path(sys.executable).with_name("jupyter-repo2docker")
    if script.exists():
        return [str(script)]
    try:
        import repo2docker  # noqa: F401
    except ImportError:
        message = "jupyter-repo2docker is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it")
        pytest.skip(message)
    return [sys.executable, "-m", "repo2docker"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """repo2docker's run: the Dockerfile Binder would build (stdout), rendered, not built."""
    done = subprocess.run(
        # Binder's user (uid 1000); run from an empty folder, where no repo2docker_config is found.
        [*_repo2docker(), "--no-build", "--user-id", "1000", "--user-name", "jovyan", str(ROOT)],
        cwd=tmp_path_factory.mktemp("r2d"), capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "FROM " in done.stdout, f"repo2docker printed no Dockerfile:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dockerfile(rendered: subprocess.CompletedProcess[str]) -> list[str]:
    return rendered.stdout.splitlines()


def _index(lines: list[str], wanted: str) -> int:
    found = [i for i, line in enumerate(lines) if line.strip() == wanted]
    assert len(found) == 1, f"expected the Dockerfile line {wanted!r} once, found it {len(found)} times"
    return found[0]


def test_dockerfile_builds_the_chosen_python(rendered: subprocess.CompletedProcess[str]) -> None:
    version = (BINDER / "runtime.txt").read_text().strip().removeprefix("python-")
    assert f"Building conda environment for python={version}\n" in rendered.stderr, rendered.stderr


def test_dockerfile_installs_the_requirements_after_copying_the_repository(dockerfile: list[str]) -> None:
    copy_repository = _index(dockerfile, "COPY --chown=1000:1000 src/ ${REPO_DIR}/")
    install = _index(dockerfile, 'RUN ${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r "binder/requirements.txt"')
    post_build = _index(dockerfile, "RUN ./binder/postBuild")
    # '-e .' needs the whole repository in place; postBuild needs the installed environment.
    assert copy_repository < install < post_build
    # pyproject.toml is not installed on its own: binder/ decides (repo2docker ignores the root).
    assert not any(re.search(r"pip install --no-cache-dir \.$", line) for line in dockerfile)


def test_the_image_command_lands_on_the_welcome_notebook(dockerfile: list[str]) -> None:
    command = json.loads(next(line for line in dockerfile if line.startswith("CMD ")).removeprefix("CMD "))
    # The image runs `jupyter notebook|lab|server`; the server config the image gets from postBuild
    # must send that application's landing page to the welcome notebook in JupyterLab.
    application = {"notebook": "JupyterNotebookApp", "lab": "LabApp", "server": "ServerApp"}[command[1]]
    config = json.loads(SERVER_CONFIG.read_text())
    assert config[application]["default_url"] == WELCOME_URL
    assert config["ServerApp"]["default_url"] == WELCOME_URL  # jupyterhub-singleuser and `jupyter server`


# --- the settings, installed and read ------------------------------------------------------


def test_the_shipped_lab_settings_are_valid_jupyterlab_settings() -> None:
    import jsonschema
    from jupyterlab.commands import get_app_dir

    overrides = json.loads(OVERRIDES.read_text())
    assert overrides[NOTIFICATION] == {"fetchNews": "false", "checkForUpdates": False}
    for plugin, values in overrides.items():
        package, name = plugin.split(":")
        schema_file = Path(get_app_dir()) / "schemas" / package / f"{name}.json"
        assert schema_file.is_file(), f"no JupyterLab plugin {plugin} (no {schema_file})"
        schema = json.loads(schema_file.read_text())
        unknown = set(values) - set(schema["properties"])
        assert not unknown, f"{plugin} has no settings {sorted(unknown)}"
        jsonschema.validate(values, schema)


def test_make_lab_points_jupyterlab_at_the_shipped_settings(tmp_path: Path) -> None:
    assert f"--LabApp.app_settings_dir={ROOT / LAB_SETTINGS_DIR}" in lab_command(ROOT)
    assert f"--LabApp.default_url={WELCOME_URL}" in lab_command(ROOT)
    # A course folder without the settings keeps JupyterLab's own defaults.
    assert not any(word.startswith("--LabApp.app_settings_dir") for word in lab_command(tmp_path))


@pytest.fixture(scope="module")
def image_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """binder/postBuild run for real, from the repository root, into a scratch environment."""
    prefix = tmp_path_factory.mktemp("nb-python-prefix")
    done = subprocess.run(
        [str(BINDER / "postBuild")], cwd=ROOT, env={**os.environ, "NB_PYTHON_PREFIX": str(prefix)},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return prefix


def test_post_build_installs_the_shipped_files(image_prefix: Path) -> None:
    assert (image_prefix / INSTALLED_OVERRIDES).read_bytes() == OVERRIDES.read_bytes()
    assert json.loads((image_prefix / INSTALLED_SERVER_CONFIG).read_text()) == json.loads(SERVER_CONFIG.read_text())


def test_post_build_keeps_the_server_config_it_finds(tmp_path: Path) -> None:
    existing = {"ServerApp": {"shutdown_no_activity_timeout": 600}, "MappingKernelManager": {"cull_idle_timeout": 1200}}
    (tmp_path / INSTALLED_SERVER_CONFIG).parent.mkdir(parents=True)
    (tmp_path / INSTALLED_SERVER_CONFIG).write_text(json.dumps(existing))
    done = subprocess.run(
        [str(BINDER / "postBuild")], cwd=ROOT, env={**os.environ, "NB_PYTHON_PREFIX": str(tmp_path)},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    merged = json.loads((tmp_path / INSTALLED_SERVER_CONFIG).read_text())
    assert merged["ServerApp"] == {"shutdown_no_activity_timeout": 600, "default_url": WELCOME_URL}
    assert merged["MappingKernelManager"] == existing["MappingKernelManager"]
    assert merged["JupyterNotebookApp"]["default_url"] == WELCOME_URL


def test_post_build_fails_outside_repo2docker() -> None:
    env = {key: value for key, value in os.environ.items() if key != "NB_PYTHON_PREFIX"}
    done = subprocess.run([str(BINDER / "postBuild")], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "NB_PYTHON_PREFIX" in done.stderr


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` without following redirects and never through a proxy."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
    try:
        with opener.open(url, timeout=20) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_a_plain_launch_of_the_image_lands_on_the_course_with_its_settings(image_prefix: Path, tmp_path: Path) -> None:
    """JupyterLab, started with no course-specific flags, reads what postBuild installed."""
    port, token = free_port(), "binder-test-token"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_PATH": str(image_prefix / "etc" / "jupyter"),  # as if it were the image's prefix
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_TOKEN": token,
    }
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        # The image's JupyterLab reads its settings from its own environment; here that is the scratch one.
        f"--LabApp.app_settings_dir={image_prefix / INSTALLED_OVERRIDES.parent.parent}",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_listening(port, timeout=120, process=process)
        base = f"http://127.0.0.1:{port}"
        status, headers, _ = _get(f"{base}/?token={token}")
        assert status in (301, 302, 303, 307), (status, headers)
        assert urllib.parse.urlsplit(headers["Location"]).path == WELCOME_URL, headers["Location"]
        status, _, body = _get(f"{base}/lab/api/settings/{NOTIFICATION}?token={token}")
        assert status == 200, body
        # JupyterLab applies overrides as the schema's defaults.
        defaults = {key: value.get("default") for key, value in json.loads(body)["schema"]["properties"].items()}
        assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


# --- the README's launch links -------------------------------------------------------------

BINDER_LINK = re.compile(r"\(https://mybinder\.org/v2/gh/OWNER/tlslab/HEAD\?urlpath=lab/tree/([^)\s]+)\)")


def _notebooks_in_git() -> set[str]:
    """Every lesson and student lab the repository holds (committed or staged)."""
    done = subprocess.run(
        ["git", "ls-files", "--cached", "course/*.ipynb", "labs/*.ipynb"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:  # not a git checkout (an unpacked archive): what is on disk
        return {p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("course/*.ipynb"), *ROOT.glob("labs/*.ipynb")]}
    return {line for line in done.stdout.splitlines() if line.count("/") == 1}  # not labs/solutions/


def test_readme_has_a_launch_badge_for_the_course() -> None:
    readme = (ROOT / "README.md").read_text()
    badge = f"[![Launch the course on Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/OWNER/tlslab/HEAD?urlpath=lab/tree/{WELCOME_NOTEBOOK.as_posix()})"
    assert badge in readme


def test_readme_links_every_lesson_and_lab_on_binder() -> None:
    linked = set(BINDER_LINK.findall((ROOT / "README.md").read_text()))
    dead = sorted(path for path in linked if not (ROOT / path).is_file())
    assert not dead, f"README.md links notebooks that do not exist: {dead}"
    missing = sorted(_notebooks_in_git() - linked)
    assert not missing, (
        f"README.md has no Binder link for {missing}: add a row to the table in 'On Binder', with "
        "links like (https://mybinder.org/v2/gh/OWNER/tlslab/HEAD?urlpath=lab/tree/course/NN_name.ipynb)"
    )

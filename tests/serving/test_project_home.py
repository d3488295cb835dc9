"""`mlgate serve` (what `make serve` runs) serves this project's bento from the project's own
BentoML home, not the newest bento of the machine-wide store."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import VENV_BIN, free_port, stop_group, tool_env
from tests.serving.conftest import START_TIMEOUT, Server

pytestmark = pytest.mark.slow


def test_mlgate_serve_uses_the_projects_bentoml_home(
    bento: tuple[str, Path], trained_repo: Path, tmp_path: Path
) -> None:
    tag, built_home = bento
    # This project's store: the bento and its model (a copy: no second build), named in params.
    home = tmp_path / "project-bentoml"
    for part in ("bentos", "models"):
        shutil.copytree(built_home / part, home / part, symlinks=True)
    with (trained_repo / "params.yaml").open() as fh:
        params = yaml.safe_load(fh)
    params["serving"]["bentoml_home"] = str(home)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    # The machine-wide store (~/bentoml) is somewhere else and empty.
    env = tool_env(HOME=str(tmp_path / "user"), MLGATE_FEEDBACK_DIR=str(tmp_path / "feedback"))
    env.pop("BENTOML_HOME", None)

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "mlgate"), "serve", "--params", str(params_file), "--port", str(port)],
            cwd=trained_repo,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    srv = Server(f"http://127.0.0.1:{port}", tmp_path / "feedback", proc, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while srv.status("/readyz") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlgate serve did not become ready:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        assert f"serve: {tag} " in log.read_text() and str(home) in log.read_text()
        status, info = srv.call("/model_info", {})
        assert status == 200 and info["model_version"] == "1"
        # its metrics live in the project's home, not in a directory other servers wipe
        assert (home / "prometheus_multiproc_dir").is_dir()
        assert any((home / "prometheus_multiproc_dir").iterdir())
        assert not (tmp_path / "user" / "bentoml").exists()
    finally:
        stop_group(proc)

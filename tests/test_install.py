"""A non-editable install runs: the Hydra config ships inside the package (harness/conf), found without the source
tree or a symlink."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_the_built_wheel_carries_the_config_and_composes_from_it(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(REPO),
                            "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "wheel").glob("lora_harness-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for path in ("harness/conf/config.yaml", "harness/conf/model/arch/bert.yaml", "harness/conf/task/glue/sst2.yaml",
                 "harness/conf/sweep/glue_table2_cpu.yaml", "harness/report/paper_numbers.yaml",
                 "harness/conf/protocol/paper.yaml", "harness/protocols/paper.yaml"):
        assert path in names
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    shown = subprocess.run([sys.executable, "-m", "harness.run", "--cfg", "job", "model=tiny-bert", "task=glue/rte"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "glue_dir: RTE" in shown.stdout and "arch: bert" in shown.stdout
    where = subprocess.run([sys.executable, "-c", "from harness import catalog; print(catalog.CONF_DIR)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert where.stdout.strip() == str(tmp_path / "site" / "harness" / "conf")

"""Kafka's own storage tool formats a directory with a cluster id that starts with '-' when
deploy/local/services.sh passes it as `--cluster-id=ID`, as the script does."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local" / "services.sh"
KAFKA_LIBS = ROOT / ".mlplane" / "cache" / "kafka" / "libs"


def sourced(commands: str) -> str:
    """The output of `commands` in a bash that has sourced the script."""
    done = subprocess.run(
        ["bash", "-c", f'source "$1"\n{commands}', "bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def test_kafka_formats_a_scratch_directory_with_an_id_that_starts_with_a_dash(tmp_path: Path):
    """Against a directory of its own: the running broker (if any) is not touched."""
    assert KAFKA_LIBS.is_dir() and shutil.which("java"), "Kafka's jars: run `make services-up`"
    data = tmp_path / "data"
    props = tmp_path / "kafka.properties"
    template = (SCRIPT.parent / "kafka" / "server.properties").read_text()
    placeholders = {"@PORT@": "1", "@CONTROLLER_PORT@": "2", "@DATA_DIR@": str(data)}
    for name, value in placeholders.items():
        template = template.replace(name, value)
    props.write_text(template)
    out = sourced(
        f'"${{KAFKA_TOOL[@]}}" kafka.tools.StorageTool format -c "{props}" '
        "--cluster-id=-starts-with-a-dash000 2>&1"
    )
    assert "cluster.id=-starts-with-a-dash000" in (data / "meta.properties").read_text(), out

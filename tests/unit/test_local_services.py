"""deploy/local/services.sh formats Kafka's storage with a cluster id no tool can mistake for an
option: its ids never start with '-', and the id is passed as `--cluster-id=ID` all the same.

The script is sourced (it then only defines its functions), so nothing here starts or stops the
servers it manages."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local" / "services.sh"
CLUSTER_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}")


def sourced(commands: str) -> str:
    """The output of `commands` in a bash that has sourced the script."""
    done = subprocess.run(
        ["bash", "-c", f'source "$1"\n{commands}', "bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_a_cluster_id_is_drawn_again_while_it_starts_with_a_dash(tmp_path: Path):
    # The first three draws start with byte 0xf8, which base64 writes '+', which becomes '-';
    # the fourth with 0x00 ('A'), so the draw count does not depend on chance.
    count = tmp_path / "draws"
    out = sourced(
        f"""
        head() {{
          echo >>"{count}"
          if (($(wc -l <"{count}") <= 3)); then
            printf '\\xf8'; command head -c 15 /dev/urandom
          else
            printf '\\x00'; command head -c 15 /dev/urandom
          fi
        }}
        kafka_cluster_id
        """
    )
    assert CLUSTER_ID.fullmatch(out.strip()), out
    assert len(count.read_text().splitlines()) == 4


def test_cluster_ids_are_kafka_ids_that_never_start_with_a_dash():
    ids = sourced("for _ in $(seq 300); do kafka_cluster_id; done").split()
    assert len(ids) == 300 and len(set(ids)) == 300
    assert [i for i in ids if not CLUSTER_ID.fullmatch(i)] == []


def test_the_storage_format_passes_the_id_as_one_argument():
    text = SCRIPT.read_text()
    call = text[text.index("StorageTool format") :].split("fail_with_log", 1)[0]
    assert '--cluster-id="$(kafka_cluster_id)"' in call
    assert not re.search(r"\s-t\s", call)

"""Every command the README shows is one the project accepts: `tollgate` lines parse with the CLI's own parser,
`python -m` modules exist, and make targets are in the Makefile."""

from __future__ import annotations

import importlib.util
import re
import shlex

import pytest

from client.cli import parser
from tests.harness import ROOT

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.DOTALL)
COMMANDS = [shlex.split(line, comments=True) for block in BLOCKS for line in block.replace("\\\n", " ").splitlines()
            if line.strip()]


def test_the_readme_shows_commands() -> None:
    assert len(BLOCKS) >= 5 and any(c[:3] == ["uv", "run", "tollgate"] for c in COMMANDS)


@pytest.mark.parametrize("words", [c for c in COMMANDS if "tollgate" in c[:5]], ids=" ".join)
def test_every_tollgate_command_parses(words: list[str]) -> None:
    args = words[words.index("tollgate") + 1:]
    parser().parse_args(args)  # argparse exits (SystemExit) on anything it does not accept


@pytest.mark.parametrize("words", [c for c in COMMANDS if c[:4] == ["uv", "run", "python", "-m"]], ids=" ".join)
def test_every_module_exists(words: list[str]) -> None:
    assert importlib.util.find_spec(words[4]) is not None, words[4]


def test_every_make_target_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for words in (c for c in COMMANDS if c[0] == "make"):
        assert re.search(rf"^{re.escape(words[1])}:", makefile, re.MULTILINE), words

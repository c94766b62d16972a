"""Every `resil` and `resil-run` command shown in the docs parses with today's CLI.

Commands are taken from the fenced code blocks of README.md, docs/ and the examples'
READMEs. Synopsis forms are expanded first: `[--config PATH]` becomes `--config
resil.toml`, `switch|kill` becomes both commands, metavariables get sample values. A doc
that shows a subcommand or a flag that does not exist (or no longer does) fails here.
"""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest

from resil.cli.main import parser as resil_parser
from resil.cli.run import parser as run_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
        *sorted((ROOT / "examples").glob("*/README.md"))]
SAMPLES = {"PATH": "resil.toml", "S": "1", "N": "1", "FILE": "rules.json",
           "RESOURCE": "orders-db", "UNIT": "beijing", "UNIT=WEIGHT": "beijing=1",
           "SECONDS": "1", "COMMAND": "python", "ARGS": "app.py", "NAME": "beijing",
           "DURATION": "1s", "RATE": "0.5", "CODE": "503", "ID": "3fa9c1", "RPS": "50",
           "DAYS": "1", "CURVE": "daily"}
FENCE = re.compile(r"^```(\w*)\s*$")


def commands() -> list[tuple[str, str]]:
    """(where, command line) of every resil/resil-run line in a fenced code block."""
    found = []
    for doc in DOCS:
        inside = False
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            fence = FENCE.match(line.strip())
            if fence:
                inside = not inside
                continue
            text = line.strip().removeprefix("$ ")
            if inside and re.match(r"resil(-run)? ", text):
                text = re.split(r"\s+#", text)[0].strip()
                found.append((f"{doc.relative_to(ROOT)}:{number}", text))
    return found


def variants(line: str) -> list[list[str]]:
    """The argument vectors a synopsis line stands for."""
    line = line.replace("...", "").replace("[", " ").replace("]", " ")
    words = shlex.split(line)
    choices = [w.split("|") if "|" in w and not w.startswith("-") else [w] for w in words]
    out = []
    for combo in itertools.product(*choices):
        out.append([SAMPLES.get(w, w) for w in combo])
    return out


CASES = commands()


def test_the_docs_show_commands():
    assert len(CASES) > 30, "the collector found too few commands: is the fence syntax right?"
    assert ["resil", "drill", "switch", "orders-db", "--to", "beijing", "--config",
            "resil.toml"] in variants("resil drill switch|kill RESOURCE --to UNIT [--config PATH]")


def test_a_wrong_command_would_be_caught():
    with pytest.raises(SystemExit):
        resil_parser().parse_args(["db", "switch", "orders-db", "--too", "b"])


@pytest.mark.parametrize(("where", "line"), CASES, ids=[c[0] for c in CASES])
def test_a_documented_command_parses(where, line):
    for argv in variants(line):
        program, *args = argv
        chosen = run_parser() if program == "resil-run" else resil_parser()
        try:
            chosen.parse_args(args)
        except SystemExit as exc:
            pytest.fail(f"{where}: `{' '.join(argv)}` does not parse (exit {exc.code})")


def test_relative_links_in_the_docs_point_at_files():
    broken = []
    for doc in [*DOCS, ROOT / "benchmarks" / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not target.startswith(("http://", "https://", "mailto:")) \
                    and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken


@pytest.mark.parametrize("example", ["django_app", "flask_app"])
def test_the_examples_configurations_pass_resil_config_check(example):
    import subprocess
    import sys
    resil = Path(sys.executable).parent / "resil"
    out = subprocess.run([str(resil), "config", "check",
                          str(ROOT / "examples" / example / "resil.toml")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "configuration OK" in out.stdout

"""resil's log lines: once the application has configured logging they go through it,
once (they appeared twice: resil's handler and the root's); before that resil's own
handler writes them, as text or, when asked, as JSON lines."""

from __future__ import annotations

import io
import json
import logging

import resil

CONFIG = """
unit = "a"
log_level = "INFO"
{extra}
[control]
url = "{url}"
[admin]
listen = "off"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = {{ a = "10.0.0.1:3306", b = "10.0.0.2:3306" }}
"""


class NoRootHandlers:
    """The root logger without handlers (pytest adds its own during each test)."""

    def __enter__(self) -> logging.Logger:
        self.root = logging.getLogger()
        self.saved = self.root.handlers[:]
        self.root.handlers = []
        return self.root

    def __exit__(self, *exc: object) -> None:
        self.root.handlers = self.saved


def test_a_line_goes_once_through_the_applications_logging(write_config, tmp_path, capfd):
    resil.start(write_config(CONFIG.format(extra="", url=(tmp_path / "s.json").as_uri())))
    with NoRootHandlers() as root_without_handlers:
        logging.getLogger("resil").info("before the application set up logging")
        assert "before the application set up logging" in capfd.readouterr().err
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("APP %(name)s %(message)s"))
        root_without_handlers.addHandler(handler)       # as logging.basicConfig does
        logging.getLogger("resil.control").warning("after it")
        assert stream.getvalue() == "APP resil.control after it\n"
        assert "after it" not in capfd.readouterr().err     # not a second time
    resil.stop()


def test_json_lines_when_asked(write_config, tmp_path, capfd):
    resil.start(write_config(CONFIG.format(extra='log_format = "json"',
                                           url=(tmp_path / "s.json").as_uri())))
    with NoRootHandlers():
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("resil").exception("a line with \"quotes\"")
        line = capfd.readouterr().err.strip().splitlines()[-1]
        entry = json.loads(line)
        assert entry["level"] == "ERROR" and entry["logger"] == "resil"
        assert entry["message"] == 'a line with "quotes"'
        assert "ValueError: boom" in entry["exception"] and entry["time"].endswith("Z")
    resil.stop()

"""resil's log lines: once the application has configured logging they go through it,
once (they appeared twice: resil's handler and the root's); before that resil's own
handler writes them, as text or, when asked, as JSON lines. resil's loggers import
:mod:`logging` only to write a line (those cases run in a fresh interpreter: this one
has :mod:`logging` loaded, by pytest)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap

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


def run(tmp_path, code: str, log_level: str = "WARNING") -> subprocess.CompletedProcess[str]:
    (tmp_path / "resil.toml").write_text(textwrap.dedent(f"""
        unit = "a"
        log_level = "{log_level}"
        [control]
        url = "{(tmp_path / 'state.json').as_uri()}"
        [admin]
        listen = "off"
        [resources.db]
        kind = "redis"
        primary = "a"
        endpoints = {{ a = "127.0.0.1:1", b = "127.0.0.1:2" }}
    """))
    prelude = f"import sys, resil\nresil.start({str(tmp_path / 'resil.toml')!r})\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_nothing_to_write_loads_no_logging(tmp_path):
    out = run(tmp_path, """
        from resil import _log
        _log.get("resil").info("not written at WARNING")
        print("logging" in sys.modules)
    """)
    assert (out.returncode, out.stdout, out.stderr) == (0, "False\n", "")


def test_a_line_at_resils_level_is_written_as_before(tmp_path):
    """INFO configured: the start line itself loads logging, through resil's handler."""
    out = run(tmp_path, 'print("logging" in sys.modules)', log_level="INFO")
    assert out.returncode == 0 and out.stdout == "True\n", out
    assert " resil INFO resil: agent started in unit a" in out.stderr, out.stderr


def test_a_warning_loads_logging_and_is_written_with_the_callers_line(tmp_path):
    out = run(tmp_path, """
        from resil import _log
        import logging      # the format as configured, with the caller's line number
        logging.getLogger("resil").handlers[0].setFormatter(
            logging.Formatter("%(name)s %(levelname)s %(module)s:%(lineno)d %(message)s"))
        _log.get("resil.x").warning("careful %d", 7)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "resil.x WARNING <string>:8 careful 7\n", out.stderr


def test_resils_level_is_set_when_the_application_imports_logging(tmp_path):
    """The application imports logging after the agent started: resil's logger has its
    configured level and handler at once, and the application's own setting after that
    wins, as when resil imported logging at start."""
    out = run(tmp_path, """
        assert "logging" not in sys.modules
        import logging
        resil_logger = logging.getLogger("resil")
        print(logging.getLevelName(resil_logger.level), len(resil_logger.handlers))
        resil_logger.setLevel(logging.DEBUG)
        from resil import _log
        _log.get("resil.integrations").debug("now written")
    """, log_level="ERROR")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ERROR 1\n"
    assert out.stderr.endswith("resil.integrations DEBUG now written\n"), out.stderr


def test_an_exception_is_logged_with_its_traceback(tmp_path):
    out = run(tmp_path, """
        from resil import _log
        try:
            1 / 0
        except ZeroDivisionError:
            _log.get("resil").exception("it failed")
    """)
    assert out.returncode == 0, out.stderr
    assert "ERROR it failed" in out.stderr and "ZeroDivisionError" in out.stderr


def test_a_fault_in_resils_logging_setup_does_not_fail_the_applications_import(tmp_path):
    out = run(tmp_path, """
        from resil import _log
        def broken():
            raise RuntimeError("boom")
        _log._apply = broken
        import logging
        print(logging.getLogger("x").name)
    """)
    assert out.returncode == 0 and out.stdout == "x\n", out
    assert "resil: logging setup failed (RuntimeError('boom'))" in out.stderr

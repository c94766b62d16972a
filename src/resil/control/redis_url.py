"""Control-plane Redis URLs: ``redis://``, ``rediss://`` and ``redis+sentinel://``.

Parsed once into a :class:`RedisURL`; every error names the URL with its password
redacted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode

from ..errors import ControlPlaneError

SCHEMES = ("redis", "rediss", "redis+sentinel")
DEFAULT_PREFIX = "resil"


@dataclass(frozen=True)
class RedisURL:
    """A parsed control-plane URL (see :func:`parse_url`)."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    """One ``(host, port)`` for redis/rediss; the Sentinels for redis+sentinel."""
    db: int
    prefix: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    service: str = ""
    """The Sentinel master name (redis+sentinel only)."""
    sentinel_password: str | None = field(default=None, repr=False)
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: str | None = None

    @property
    def safe(self) -> str:
        """The URL with every password replaced by ``***``: safe to log and show."""
        user = quote(self.username or "", safe="")
        if self.password is not None:
            userinfo = f"{user}:***@" if user or self.scheme != "redis+sentinel" else "***@"
        else:
            userinfo = f"{user}@" if user else ""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts)
        path = f"/{quote(self.service, safe='')}/{self.db}" if self.service else f"/{self.db}"
        query: dict[str, str] = {}
        if self.prefix != DEFAULT_PREFIX:
            query["prefix"] = self.prefix
        if self.sentinel_password is not None:
            query["sentinel_password"] = "***"
        if self.ssl_cert_reqs is not None:
            query["ssl_cert_reqs"] = self.ssl_cert_reqs
        if self.ssl_ca_certs is not None:
            query["ssl_ca_certs"] = self.ssl_ca_certs
        shown_query = f"?{urlencode(query, safe='*/')}" if query else ""
        return f"{self.scheme}://{userinfo}{hosts}{path}{shown_query}"


def parse_url(url: str) -> RedisURL:
    """Parse a ``redis://``, ``rediss://`` or ``redis+sentinel://`` control-plane URL.

    Forms::

        redis://[[user]:password@]host[:port][/db][?prefix=resil]
        rediss://[[user]:password@]host[:port][/db][?prefix=...&ssl_ca_certs=...&ssl_cert_reqs=...]
        redis+sentinel://[[user:]password@]host1[:port1],host2[:port2]/master-name[/db]
                         [?prefix=...&sentinel_password=...]

    Ports default to 6379 (26379 for Sentinels), the database to 0. Raises
    :class:`ControlPlaneError` naming the URL without its password.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ControlPlaneError(f"control plane {_redact(url)}: not a redis URL "
                                f"(expected {', '.join(s + '://' for s in SCHEMES)})")
    if "#" in rest:
        rest = rest.split("#", 1)[0]
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    shown = _redact(url)

    def bad(problem: str) -> ControlPlaneError:
        return ControlPlaneError(f"control plane {shown}: {problem}")

    username: str | None = None
    password: str | None = None
    if at:
        if ":" in userinfo:
            user, _, secret = userinfo.partition(":")
            username, password = unquote(user) or None, unquote(secret)
        elif scheme == "redis+sentinel":
            password = unquote(userinfo)        # redis+sentinel://password@host,...
        else:
            username = unquote(userinfo) or None
    default_port = 26379 if scheme == "redis+sentinel" else 6379
    hosts = tuple(_host_port(item, default_port, bad) for item in hostlist.split(","))
    if scheme != "redis+sentinel" and len(hosts) != 1:
        raise bad("only redis+sentinel:// takes several hosts")
    segments = [unquote(s) for s in path.split("/")] if path else []
    service = ""
    if scheme == "redis+sentinel":
        if not segments or not segments[0]:
            raise bad("no master name: expected redis+sentinel://host:port,.../master-name/db")
        service, segments = segments[0], segments[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]                # a trailing slash
    if len(segments) > 1:
        raise bad(f"unexpected path {path!r}")
    db_text = segments[0] if segments else "0"
    if not db_text.isdigit():
        raise bad(f"database {db_text!r} is not a number")
    options = dict(parse_qsl(query_text, keep_blank_values=True))
    allowed = {"prefix"}
    if scheme == "rediss":
        allowed |= {"ssl_ca_certs", "ssl_cert_reqs"}
    if scheme == "redis+sentinel":
        allowed.add("sentinel_password")
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise bad(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    prefix = options.get("prefix", DEFAULT_PREFIX)
    if not prefix or any(c.isspace() for c in prefix):
        raise bad(f"prefix {prefix!r} must be non-empty, without spaces")
    cert_reqs = options.get("ssl_cert_reqs")
    if cert_reqs is not None and cert_reqs not in ("none", "optional", "required"):
        raise bad(f"ssl_cert_reqs {cert_reqs!r}: expected none, optional or required")
    return RedisURL(scheme=scheme, hosts=hosts, db=int(db_text), prefix=prefix,
                    username=username, password=password, service=service,
                    sentinel_password=options.get("sentinel_password"),
                    ssl_ca_certs=options.get("ssl_ca_certs"), ssl_cert_reqs=cert_reqs)


def _host_port(text: str, default_port: int,
               bad: Callable[[str], ControlPlaneError]) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if text.startswith("["):
        host, _, after = text[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else after
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise bad("no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"port {port_text!r} of {host} is not a TCP port")
    return host, int(port_text)


def _redact(url: str) -> str:
    """``url`` with the password of its userinfo and any ``sentinel_password`` masked."""
    scheme, sep, rest = url.partition("://")
    if sep:
        netloc, slash, tail = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        if at:
            if ":" in userinfo:
                userinfo = userinfo.partition(":")[0] + ":***"
            elif scheme.lower() == "redis+sentinel":
                userinfo = "***"
            netloc = f"{userinfo}@{hosts}"
        url = f"{scheme}://{netloc}{slash}{tail}"
    if "sentinel_password=" in url:
        head, _, query = url.partition("?")
        parts = [("sentinel_password=***" if p.startswith("sentinel_password=") else p)
                 for p in query.split("&")]
        url = f"{head}?{'&'.join(parts)}"
    return url


def glob_escape(text: str) -> str:
    """``text`` with Redis glob metacharacters escaped, for ``SCAN MATCH``."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# --------------------------------------------------------------------------- plane

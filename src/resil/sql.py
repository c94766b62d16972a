"""Classify MySQL/MariaDB statement text by what running it may do to the server.

During a primary switch the agent holds new write transactions while provably
read-only autocommit statements proceed. :func:`classify` tells the two apart from the
statement text alone, without a server round trip and without any driver (this module
is part of the driver-agnostic core and imports the standard library only).

How the text is read
    A real lexer, not a keyword search: whitespace, ``-- `` comments (two dashes followed
    by whitespace, a control character or the end; ``1--1`` is arithmetic), ``#``
    comments and ``/* ... */`` comments are skipped; string literals (``'...'`` and
    ``"..."``, with backslash escapes and doubled quotes) and backtick identifiers never
    count as keywords. Executable comments ``/*! ... */``, ``/*!50100 ... */`` and
    MariaDB's ``/*M! ... */`` hold live SQL and are read as SQL. Keywords are
    case-insensitive.

Combining statements
    A text may hold several statements separated by ``;`` (outside strings and
    comments). The result is the strongest of their classes, in the order
    WRITE > BEGIN > BEGIN_READ > END > SESSION > READ; empty statements (``;;``, a
    trailing ``;``) are ignored and a text with no statement at all (empty, blank or
    only comments) is READ. So ``"BEGIN; INSERT INTO t VALUES (1); COMMIT"`` is WRITE,
    ``"BEGIN; COMMIT"`` is BEGIN and ``"SET NAMES utf8mb4; SELECT 1"`` is SESSION.

When a server could read the text more than one way
    * ``/*!NNNNN ... */`` and ``/*M! ... */`` run only on some servers and versions: the
      text is classified both with and without their content and the stronger class wins.
    * With ``ANSI_QUOTES`` a ``"..."`` token is an identifier in which a backslash is not
      an escape: a double-quoted token containing a backslash is classified both ways.
    * ``NO_BACKSLASH_ESCAPES`` cannot be guessed from the text (pymysql escapes quotes
      with backslashes unless the server reports that mode): pass
      ``no_backslash_escapes=True`` when the server status flag says it is on.
    * Text that does not lex (an unterminated string, comment or executable comment, a
      comment nested in an executable comment) is WRITE, the safe default.

Limits
    * A stored function called from a SELECT may write, and the text cannot show it:
      ``SELECT my_func()`` is READ even when ``my_func`` inserts rows. Only the
      state-changing built-ins are recognised (``GET_LOCK``, ``RELEASE_LOCK``,
      ``RELEASE_ALL_LOCKS``, ``NEXTVAL``, ``SETVAL``, ``NEXT VALUE FOR``, and the
      ``KEYRING_*``, ``AUDIT_LOG_*``, ``VERSION_TOKENS_*``, ``SERVICE_*``,
      ``GROUP_REPLICATION_*``, ``ASYNCHRONOUS_CONNECTION_FAILOVER_*`` and firewall
      function families). That is why READ lets a statement run against a fenced primary
      (where the server refuses writes anyway), and why the agent replays a READ
      statement only in autocommit mode and only when the connection was lost before
      any reply.
    * The text is decoded as UTF-8. Character sets in which a byte below 0x80 can be part
      of a multi-byte character (GBK, Big5, SJIS, CP932) may be lexed differently by
      the server: do not rely on READ for such connections.
    * Transaction state comes from the server status flags (``SERVER_STATUS_IN_TRANS``,
      ``SERVER_STATUS_AUTOCOMMIT``), not from here: ``SET autocommit=0`` is SESSION, yet
      every later statement runs in a transaction, and ``SET autocommit=1`` or any DDL
      commits an open one.

Why one module of more than 400 lines: the lexer and the keyword tables are read
together (a token's meaning depends on the tables, a table's entries on how the lexer
splits), and the module stands alone, importing only the standard library.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable

__all__ = ["Access", "classify"]


class Access(enum.Enum):
    """What a statement (or a text of several statements) may do to the server.

    ``READ``
        Provably reads only: it may run on a primary that is locked or fenced, and it
        may be replayed in autocommit mode after the connection was lost before any
        reply.
    ``WRITE``
        Changes data, schema, grants or global state, or takes write locks; also
        anything unknown or unparsable (the safe default).
    ``BEGIN``
        Opens a transaction: ``BEGIN [WORK]``, ``START TRANSACTION [READ WRITE | WITH
        CONSISTENT SNAPSHOT]``, ``XA START|BEGIN``.
    ``BEGIN_READ``
        Opens a read-only transaction: ``START TRANSACTION READ ONLY``.
    ``END``
        Ends a transaction: ``COMMIT``, ``ROLLBACK`` (with ``WORK``, ``AND [NO] CHAIN``,
        ``[NO] RELEASE``), ``XA END|PREPARE|COMMIT|ROLLBACK``; not ``ROLLBACK TO
        SAVEPOINT x``, which leaves the transaction open (SESSION).
    ``SESSION``
        Changes only this session and no data: ``SET [SESSION|LOCAL] var``, ``SET @x``,
        ``SET NAMES``, ``SET CHARACTER SET``, ``SET TRANSACTION``, ``SET ROLE``, ``USE``,
        ``SAVEPOINT``, ``RELEASE SAVEPOINT``, ``ROLLBACK TO [SAVEPOINT]``, ``UNLOCK
        TABLES``, ``DEALLOCATE PREPARE``. ``SET GLOBAL``, ``SET PERSIST`` and
        ``SET @@global.x`` are WRITE.
    """

    READ = "read"
    WRITE = "write"
    BEGIN = "begin"
    BEGIN_READ = "begin_read"
    END = "end"
    SESSION = "session"


_READ = Access.READ
_WRITE = Access.WRITE
_BEGIN = Access.BEGIN
_BEGIN_READ = Access.BEGIN_READ
_END = Access.END
_SESSION = Access.SESSION

# Strength used to combine statements: the highest wins.
_RANK = {_READ: 0, _SESSION: 1, _END: 2, _BEGIN_READ: 3, _BEGIN: 4, _WRITE: 5}

_CACHE_LIMIT = 4096  # texts up to this many characters are memoised


class _Unparsable(Exception):
    """The text does not lex the way a server would read it: it is WRITE."""


# --------------------------------------------------------------------------- lexer
#
# Two kinds of pattern. ``_special()`` patterns find what needs care (literals, quoted identifiers,
# comments, executable comments); the plain stretches between them are cut into words
# and punctuation by ``_plain()`` in one C-level ``findall``. Each alternative is linear:
# possessive quantifiers (Python 3.11) and disjoint alternatives leave nothing to
# backtrack into, so an unterminated literal fails in one pass and falls through to
# ``bad``. No special token can start inside a plain one (plain tokens are words,
# ``@@`` and single characters), so looking for the leftmost special reads the text
# exactly as a left-to-right lexer would (tests/unit/test_sql.py checks this against
# a character-by-character lexer).

@functools.cache
def _plain() -> re.Pattern[str]:
    return re.compile(r"[0-9A-Za-z_$\x80-\U0010ffff]++|@@|[^ \t\n\r\f\v]")


@functools.cache
def _special(single_backslash: bool, double_backslash: bool) -> re.Pattern[str]:
    # Compiled on first use, not at import: the agent imports this module at start-up.
    single = r"'(?:[^'\\]++|\\.|'')*+'" if single_backslash else r"'(?:[^']++|'')*+'"
    double = r'"(?:[^"\\]++|\\.|"")*+"' if double_backslash else r'"(?:[^"]++|"")*+"'
    return re.compile(
        # Skip plain text first: far faster than letting search() try every alternative
        # at every position. '-', '/' and '*' are plain unless they start a comment.
        r"(?:[^-'\"`#/*]++|-(?!-(?:[\x00-\x20\x7f]|\Z))|/(?!\*)|\*(?!/))*+"
        rf"(?:(?P<sq>{single})"
        rf"|(?P<dq>{double})"
        r"|(?P<bt>`(?:[^`]++|``)*+`)"
        r"|(?P<lc>(?:\#|--(?=[\x00-\x20\x7f]|\Z))[^\n]*+)"
        r"|(?P<bc>/\*(?![Mm]?!)(?:[^*]++|\*(?!/))*+\*/)"
        r"|(?P<xo>/\*[Mm]?![0-9]{0,6})"  # executable comment opens
        r"|(?P<xc>\*/)"  # executable comment closes (else: '*' then '/')
        r"|(?P<bad>['\"`]|/\*))",  # unterminated literal or comment
        re.DOTALL,
    )



# MySQL keywords are ASCII and compared case-insensitively in ASCII only: str.upper()
# would turn U+017F (long s) into "S" and make a keyword of an identifier.
_ASCII_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}


def _upper(text: str) -> str:
    return text.upper() if text.isascii() else text.translate(_ASCII_UPPER)


# Flags recorded while lexing: the text has another reading (see module docstring).
_COND = "conditional executable comment"
_DQ = "double-quoted token with a backslash"


def _tokens(
    text: str, special: re.Pattern[str], expand_conditional: bool, seen: set[str]
) -> list[str]:
    """The tokens of ``text``: words upper-cased, ``'`` for a string literal,
    ``"NAME`` and ```NAME`` for quoted tokens, ``@@`` and other punctuation as is.

    Raises :class:`_Unparsable` where a server would see a syntax error or where this
    lexer cannot follow it.
    """
    out: list[str] = []
    extend = out.extend
    plain = _plain().findall
    find = special.match  # skips plain text, then matches a special token
    pos = 0  # start of the plain stretch not yet tokenised
    at = 0  # where to look for the next special token
    in_exec = False
    while True:
        m = find(text, at)
        if m is None:  # only plain text is left
            if in_exec:
                raise _Unparsable
            extend(plain(_upper(text[pos:])))
            return out
        kind = m.lastgroup
        if kind is None:  # pragma: no cover - a match always ends in a named group
            raise _Unparsable
        start = m.start(kind)
        if kind == "xc" and not in_exec:  # a '*' operator: keep it plain, lex the '/' next
            at = start + 1
            continue
        if start > pos:
            extend(plain(_upper(text[pos:start])))
        pos = at = m.end()
        if kind == "sq":
            out.append("'")
        elif kind == "dq":
            body = m.group(kind)[1:-1]
            if "\\" in body:
                seen.add(_DQ)
            out.append('"' + _upper(body))
        elif kind == "bt":
            out.append("`" + _upper(m.group(kind)[1:-1].replace("``", "`")))
        elif kind == "lc":
            pass
        elif kind == "bc":
            if in_exec:  # a comment nested in an executable one: servers disagree
                raise _Unparsable
        elif kind == "xo":
            if in_exec:
                raise _Unparsable
            if m.end() - start > 3:  # versioned or MariaDB-only: runs on some servers only
                seen.add(_COND)
                if not expand_conditional:
                    close = text.find("*/", pos)
                    if close < 0 or "/*" in text[pos:close]:
                        raise _Unparsable
                    pos = at = close + 2
                    continue
            in_exec = True
        elif kind == "xc":
            in_exec = False
        else:  # "bad"
            raise _Unparsable


# ---------------------------------------------------------------- statement rules

_Tokens = list[str]


def _is_name(token: str) -> bool:
    """An identifier or keyword token (not a literal or punctuation)."""
    first = token[0]
    return first.isalnum() or first in "_$`\"" or first >= "\x80"


def _bare(token: str) -> str:
    """A word or quoted identifier without its quote mark."""
    return token[1:] if token[0] in "`\"" else token


def _close(tokens: _Tokens, i: int) -> int:
    """Index just after the ``)`` matching the ``(`` at ``tokens[i]``, or -1."""
    depth = 0
    for j in range(i, len(tokens)):
        token = tokens[j]
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


_WRITE_FUNCTIONS = frozenset(
    {"GET_LOCK", "RELEASE_LOCK", "RELEASE_ALL_LOCKS", "NEXTVAL", "SETVAL"}
)
_WRITE_FUNCTION_PREFIXES = (
    "KEYRING_",
    "AUDIT_LOG_",
    "VERSION_TOKENS_",
    "SERVICE_",
    "GROUP_REPLICATION_",
    "ASYNCHRONOUS_CONNECTION_FAILOVER_",
    "MYSQL_FIREWALL_",
    "SET_FIREWALL_",
)
_EFFECT_WORDS = frozenset({"FOR", "LOCK", "INTO", "NEXT"})


def _has_effects(tokens: _Tokens) -> bool:
    """Locking clauses, file output or state-changing functions, at any depth."""
    n = len(tokens)
    if not _EFFECT_WORDS.isdisjoint(tokens):
        for i, token in enumerate(tokens):
            if token not in _EFFECT_WORDS:
                continue
            following = tokens[i + 1] if i + 1 < n else ""
            if token == "FOR":  # FOR UPDATE, FOR SHARE
                if following in ("UPDATE", "SHARE"):
                    return True
            elif token == "LOCK":  # LOCK IN SHARE MODE
                if following == "IN":
                    return True
            elif token == "INTO":  # INTO OUTFILE, INTO DUMPFILE (INTO @var is fine)
                if following in ("OUTFILE", "DUMPFILE"):
                    return True
            elif following == "VALUE" and i + 2 < n and tokens[i + 2] == "FOR":
                return True  # MariaDB NEXT VALUE FOR sequence
    i = -1
    for _ in range(tokens.count("(")):  # function calls: name (
        i = tokens.index("(", i + 1)
        if i:
            name = _bare(tokens[i - 1])
            if name in _WRITE_FUNCTIONS or name.startswith(_WRITE_FUNCTION_PREFIXES):
                return True
    return False


_QUERY_HEADS = frozenset({"SELECT", "VALUES", "TABLE"})


def _is_query(tokens: _Tokens) -> bool:
    """Shaped like a query expression: ``[(...] SELECT|VALUES|TABLE|WITH ... query``."""
    n = len(tokens)
    i = 0
    while i < n and tokens[i] == "(":
        i += 1
    if i >= n:
        return False
    if tokens[i] in _QUERY_HEADS:
        return True
    if tokens[i] != "WITH":
        return False
    i += 1
    if i < n and tokens[i] == "RECURSIVE":
        i += 1
    while True:  # name [(columns)] AS (query) [, ...]
        if i >= n or not _is_name(tokens[i]):
            return False
        i += 1
        if i < n and tokens[i] == "(":
            i = _close(tokens, i)
            if i < 0:
                return False
        if i + 1 >= n or tokens[i] != "AS" or tokens[i + 1] != "(":
            return False
        end = _close(tokens, i + 1)
        if end < 0 or not _is_query(tokens[i + 2 : end - 1]):
            return False
        i = end
        if i < n and tokens[i] == ",":
            i += 1
            continue
        return _is_query(tokens[i:])  # the main statement


def _query(tokens: _Tokens) -> Access:
    return _READ if _is_query(tokens) and not _has_effects(tokens) else _WRITE


def _read_unless_effects(tokens: _Tokens) -> Access:  # SHOW, HELP
    return _WRITE if _has_effects(tokens) else _READ


def _explain(tokens: _Tokens) -> Access:  # EXPLAIN, DESCRIBE, DESC
    n = len(tokens)
    i = 1
    analyze = False
    while i < n:
        token = tokens[i]
        if token in ("EXTENDED", "PARTITIONS"):
            i += 1
        elif token == "ANALYZE":
            analyze = True
            i += 1
        elif token == "FORMAT" and i + 2 < n and tokens[i + 1] == "=":
            i += 3
        else:
            break
    if analyze:  # EXPLAIN ANALYZE runs the statement
        return _query(tokens[i:])
    # Plain EXPLAIN runs nothing, but the optimiser may evaluate constant subqueries.
    return _read_unless_effects(tokens)


def _analyze(tokens: _Tokens) -> Access:  # MariaDB ANALYZE stmt, ANALYZE TABLE
    i = 1
    if len(tokens) > 3 and tokens[1] == "FORMAT" and tokens[2] == "=":
        i = 4
    rest = tokens[i:]
    if not rest or rest[0] == "TABLE":
        return _WRITE
    return _query(rest)


def _checksum(tokens: _Tokens) -> Access:
    return _READ if len(tokens) > 2 and tokens[1] in ("TABLE", "TABLES") else _WRITE


def _begin(tokens: _Tokens) -> Access:  # not BEGIN NOT ATOMIC ... (MariaDB blocks)
    return _BEGIN if len(tokens) == 1 or tokens[1:] == ["WORK"] else _WRITE


def _start(tokens: _Tokens) -> Access:
    n = len(tokens)
    if n < 2 or tokens[1] != "TRANSACTION":
        return _WRITE  # START SLAVE, START REPLICA, START GROUP_REPLICATION, ...
    read_only = read_write = False
    i = 2
    while i < n:
        if tokens[i : i + 2] == ["READ", "ONLY"]:
            read_only = True
            i += 2
        elif tokens[i : i + 2] == ["READ", "WRITE"]:
            read_write = True
            i += 2
        elif tokens[i : i + 3] == ["WITH", "CONSISTENT", "SNAPSHOT"]:
            i += 3
        else:
            return _WRITE
        if i < n:
            if tokens[i] != "," or i + 1 == n:
                return _WRITE
            i += 1
    return _BEGIN_READ if read_only and not read_write else _BEGIN


_END_WORDS = frozenset({"WORK", "AND", "NO", "CHAIN", "RELEASE"})


def _commit(tokens: _Tokens) -> Access:
    return _END if _END_WORDS.issuperset(tokens[1:]) else _WRITE


def _rollback(tokens: _Tokens) -> Access:
    rest = tokens[1:]
    if rest[:1] == ["WORK"]:
        rest = rest[1:]
    if rest[:1] == ["TO"]:  # ROLLBACK [WORK] TO [SAVEPOINT] x: the transaction stays open
        rest = rest[1:]
        if rest[:1] == ["SAVEPOINT"]:
            rest = rest[1:]
        return _SESSION if len(rest) == 1 and _is_name(rest[0]) else _WRITE
    return _commit(tokens)


def _xa(tokens: _Tokens) -> Access:
    verb = tokens[1] if len(tokens) > 1 else ""
    if verb in ("START", "BEGIN"):
        return _BEGIN
    if verb in ("END", "PREPARE", "COMMIT", "ROLLBACK"):
        return _END
    return _READ if verb == "RECOVER" else _WRITE


def _savepoint(tokens: _Tokens) -> Access:
    return _SESSION if len(tokens) == 2 and _is_name(tokens[1]) else _WRITE


def _release(tokens: _Tokens) -> Access:
    ok = len(tokens) == 3 and tokens[1] == "SAVEPOINT" and _is_name(tokens[2])
    return _SESSION if ok else _WRITE


def _use(tokens: _Tokens) -> Access:
    return _SESSION if len(tokens) == 2 and _is_name(tokens[1]) else _WRITE


def _unlock(tokens: _Tokens) -> Access:  # not UNLOCK INSTANCE, UNLOCK BINLOG
    return _SESSION if tokens[1:] in (["TABLES"], ["TABLE"]) else _WRITE


def _deallocate(tokens: _Tokens) -> Access:  # DEALLOCATE|DROP PREPARE s; other DROPs
    ok = len(tokens) == 3 and tokens[1] == "PREPARE" and _is_name(tokens[2])
    return _SESSION if ok else _WRITE


_GLOBAL_SCOPES = frozenset({"GLOBAL", "PERSIST", "PERSIST_ONLY"})


def _session_assignment(tokens: _Tokens, start: int, end: int) -> bool:
    """One comma-separated item of SET changes this session only."""
    if start >= end:
        return False
    head = tokens[start]
    if head in _GLOBAL_SCOPES or head in ("PASSWORD", "RESOURCE"):
        return False
    if head == "@@":
        return start + 1 < end and _bare(tokens[start + 1]) not in _GLOBAL_SCOPES
    if head == "DEFAULT" and start + 1 < end and tokens[start + 1] == "ROLE":
        return False
    # @user_var, [SESSION|LOCAL] var, NAMES, CHARACTER SET, TRANSACTION, ROLE
    return head == "@" or _is_name(head)


def _set(tokens: _Tokens) -> Access:
    n = len(tokens)
    if n < 2:
        return _WRITE
    if tokens[1] == "STATEMENT":  # MariaDB SET STATEMENT var=value [, ...] FOR statement
        depth = 0
        for i in range(2, n):
            token = tokens[i]
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
            elif token == "FOR" and depth == 0:
                if _has_effects(tokens[:i]) or i + 1 == n:
                    return _WRITE
                return _statement(tokens[i + 1 :])
        return _WRITE
    if _has_effects(tokens):  # SET @x = GET_LOCK(...), SET @x = (SELECT ... FOR UPDATE)
        return _WRITE
    depth = 0
    start = 1
    for i in range(1, n + 1):
        token = tokens[i] if i < n else ","
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif token == "," and depth <= 0:
            if not _session_assignment(tokens, start, i):
                return _WRITE
            start = i + 1
    return _SESSION


_HANDLERS: dict[str, Callable[[_Tokens], Access]] = {
    "SELECT": _query,
    "(": _query,
    "WITH": _query,
    "VALUES": _query,
    "TABLE": _query,
    "SHOW": _read_unless_effects,
    "HELP": _read_unless_effects,
    "EXPLAIN": _explain,
    "DESCRIBE": _explain,
    "DESC": _explain,
    "ANALYZE": _analyze,
    "CHECKSUM": _checksum,
    "BEGIN": _begin,
    "START": _start,
    "COMMIT": _commit,
    "ROLLBACK": _rollback,
    "XA": _xa,
    "SAVEPOINT": _savepoint,
    "RELEASE": _release,
    "SET": _set,
    "USE": _use,
    "UNLOCK": _unlock,
    "DEALLOCATE": _deallocate,
    "DROP": _deallocate,
}
# Every other first word (INSERT, UPDATE, DELETE, REPLACE, LOAD, CALL, CREATE, ALTER,
# TRUNCATE, RENAME, GRANT, REVOKE, LOCK, FLUSH, OPTIMIZE, REPAIR, INSTALL, UNINSTALL,
# HANDLER, PURGE, RESET, CHANGE, STOP, KILL, DO, PREPARE, EXECUTE, ...) is WRITE.


def _statement(tokens: _Tokens) -> Access:
    """Classify one non-empty statement."""
    handler = _HANDLERS.get(tokens[0])
    return _WRITE if handler is None else handler(tokens)


# ------------------------------------------------------------------------ driver


def _classify_reading(
    text: str, special: re.Pattern[str], expand_conditional: bool, seen: set[str]
) -> Access:
    """Classify ``text`` under one reading of its quotes and executable comments."""
    tokens = _tokens(text, special, expand_conditional, seen)
    if ";" not in tokens:
        return _statement(tokens) if tokens else _READ
    best = _READ
    start = 0
    n = len(tokens)
    while start < n:
        try:
            end = tokens.index(";", start)
        except ValueError:
            end = n
        if end > start:  # empty statements are ignored
            access = _statement(tokens[start:end])
            if access is _WRITE:
                return _WRITE
            if _RANK[access] > _RANK[best]:
                best = access
        start = end + 1
    return best


@functools.cache
def _first_word() -> re.Pattern[str]:
    """The first word of the text, when the text starts with one (ASCII letters only: the
    first words of all non-WRITE statements are such words). Compiled on first use."""
    return re.compile(r"[ \t\n\r\f\v]*+([A-Za-z]++)")


def _classify(text: str, no_backslash_escapes: bool) -> Access:
    """Classify ``text`` under every reading a server could give it; the strongest wins."""
    first = _first_word().match(text)
    if first is not None and _upper(first.group(1)) not in _HANDLERS:
        return _WRITE  # INSERT, UPDATE, ...: nothing later can make it weaker
    backslash = not no_backslash_escapes
    seen: set[str] = set()
    try:
        best = _classify_reading(text, _special(backslash, backslash), True, seen)
    except (_Unparsable, RecursionError):
        return _WRITE
    if not seen or best is _WRITE:
        return best
    # Other readings, until no new one turns up: a reading may reveal more flags.
    done = {(backslash, True)}  # (backslash escapes in "...", expand /*!NNNNN ... */)
    while True:
        doubles = (backslash, False) if _DQ in seen else (backslash,)
        expands = (True, False) if _COND in seen else (True,)
        pending = [(d, e) for d in doubles for e in expands if (d, e) not in done]
        if not pending:
            return best
        for double_backslash, expand in pending:
            done.add((double_backslash, expand))
            try:
                access = _classify_reading(
                    text, _special(backslash, double_backslash), expand, seen
                )
            except (_Unparsable, RecursionError):
                return _WRITE
            if access is _WRITE:
                return _WRITE
            if _RANK[access] > _RANK[best]:
                best = access


@functools.lru_cache(maxsize=1024)
def _classify_cached(text: str, no_backslash_escapes: bool) -> Access:
    return _classify(text, no_backslash_escapes)


def classify(sql: str | bytes, *, no_backslash_escapes: bool = False) -> Access:
    """Classify MySQL/MariaDB statement text (one or several ``;``-separated statements).

    ``sql`` is a ``str`` or UTF-8 ``bytes`` (undecodable bytes are replaced, never an
    error). Pass ``no_backslash_escapes=True`` when the server runs with the
    ``NO_BACKSLASH_ESCAPES`` SQL mode (its status flag says so), where ``\\`` inside a
    string is an ordinary character. Several statements combine to the strongest class
    (WRITE > BEGIN > BEGIN_READ > END > SESSION > READ; empty statements are ignored and
    a text with none is READ): ``"BEGIN; INSERT INTO t VALUES (1); COMMIT"`` is WRITE.
    Anything unknown or unparsable is WRITE. Texts of up to 4096 characters are
    memoised (LRU, 1024 entries). Never raises for ``str`` or ``bytes`` input.
    """
    text = sql if isinstance(sql, str) else bytes(sql).decode("utf-8", "replace")
    if len(text) <= _CACHE_LIMIT:
        return _classify_cached(text, no_backslash_escapes)
    return _classify(text, no_backslash_escapes)

"""Classify MySQL/MariaDB statement text by what running it may do to the server.

During a primary switch the agent holds new write transactions while provably
read-only autocommit statements proceed. :func:`classify` tells the two apart from the
statement text alone, without a server round trip and without any driver (this module
is part of the driver-agnostic core and imports the standard library only).
:func:`locality` reads the same tokens for a second question: may the text run on a
read-only replica over another connection (see "Where a statement may run" below)?

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

Where a statement may run
    :func:`locality` says whether a text may go to a same-unit replica over a second
    connection (opened with the same user, database, character set and SQL mode):
    REPLICA, PRIMARY (the application's own connection) or PIN (it leaves session state,
    so every later statement of the connection stays on the primary too). REPLICA needs
    exactly one statement (a trailing ``;`` is ignored), a query (``SELECT``, ``VALUES``,
    ``TABLE``, ``WITH ... SELECT``) that :func:`classify` calls READ, whose result depends
    neither on this session (``@x``, ``LAST_INSERT_ID()``, ``FOUND_ROWS()``) nor on the
    server that answers (``@@hostname``, ``information_schema.``, ``IS_USED_LOCK()``,
    ``SLEEP()``). PIN: ``SET`` (not ``SET [SESSION] TRANSACTION``), ``USE``, prepared
    statements, ``LOCK``/``UNLOCK TABLES``, ``HANDLER``, ``CALL``, temporary tables,
    compound statements, user-variable assignments (``@x :=``, ``INTO @x``,
    ``LAST_INSERT_ID(expr)``), named locks (``GET_LOCK()``), ``SQL_CALC_FOUND_ROWS`` and
    sequences. Every reading above counts and the strongest answer wins (PIN > PRIMARY >
    REPLICA); text that does not lex is PIN.

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
      any reply. For the same reason :func:`locality` may call ``SELECT my_func()``
      REPLICA although ``my_func`` reads this session's variables.
    * :func:`locality` sees qualified names only: with ``mysql`` or
      ``information_schema`` as the connection's database, ``SELECT * FROM user`` reads
      server-specific rows and is still REPLICA.
    * The text is decoded as UTF-8. Character sets in which a byte below 0x80 can be part
      of a multi-byte character (GBK, Big5, SJIS, CP932) may be lexed differently by
      the server: do not rely on READ for such connections.
    * Transaction state comes from the server status flags (``SERVER_STATUS_IN_TRANS``,
      ``SERVER_STATUS_AUTOCOMMIT``), not from here: ``SET autocommit=0`` is SESSION, yet
      every later statement runs in a transaction, and ``SET autocommit=1`` or any DDL
      commits an open one.

Why one module of more than 400 lines: the lexer and the keyword tables of both
questions are read together (a token's meaning depends on the tables, a table's entries
on how the lexer splits), and the module stands alone, importing only the standard
library.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterator

__all__ = ["Access", "Locality", "classify", "locality"]


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


class Locality(enum.Enum):
    """Where a statement (or a text of several) may run when the application also holds a
    connection to a read-only replica of its own unit, opened with the same user,
    database, character set and SQL mode.

    ``REPLICA``
        One read-only query whose result depends neither on the application's session
        nor on which server answers: it may run on the replica connection.
    ``PRIMARY``
        Must run on the application's own connection (the primary), and leaves no
        session state a replica connection would need. Also any text of several
        statements: the replica connection's second result could not be handed back.
    ``PIN``
        Creates session state (variables, temporary tables, prepared statements, locks,
        ...): this statement and every later one of the connection must stay on the
        primary until the connection is reset. Also text that does not lex (the safe
        default).
    """

    REPLICA = "replica"
    PRIMARY = "primary"
    PIN = "pin"


_READ = Access.READ
_WRITE = Access.WRITE
_BEGIN = Access.BEGIN
_BEGIN_READ = Access.BEGIN_READ
_END = Access.END
_SESSION = Access.SESSION

# Strength used to combine statements: the highest wins.
_RANK = {_READ: 0, _SESSION: 1, _END: 2, _BEGIN_READ: 3, _BEGIN: 4, _WRITE: 5}

_REPLICA = Locality.REPLICA
_PRIMARY = Locality.PRIMARY
_PIN = Locality.PIN

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


def _statements(tokens: _Tokens) -> list[_Tokens]:
    """The non-empty ``;``-separated statements of one reading."""
    if ";" not in tokens:
        return [tokens] if tokens else []
    statements = []
    start = 0
    n = len(tokens)
    while start < n:
        try:
            end = tokens.index(";", start)
        except ValueError:
            end = n
        if end > start:  # empty statements are ignored
            statements.append(tokens[start:end])
        start = end + 1
    return statements


def _other_readings(text: str, backslash: bool, seen: set[str]) -> Iterator[_Tokens]:
    """The tokens of ``text`` under the readings other than the usual one (backslash
    escapes in strings as ``backslash`` says, executable comments expanded) that the
    flags in ``seen`` call for, until no new one turns up: a reading may reveal more
    flags (see module docstring).

    Raises :class:`_Unparsable` when a reading does not lex.
    """
    done = {(backslash, True)}  # (backslash escapes in "...", expand /*!NNNNN ... */)
    while True:
        doubles = (backslash, False) if _DQ in seen else (backslash,)
        expands = (True, False) if _COND in seen else (True,)
        pending = [(d, e) for d in doubles for e in expands if (d, e) not in done]
        if not pending:
            return
        for double_backslash, expand in pending:
            done.add((double_backslash, expand))
            yield _tokens(text, _special(backslash, double_backslash), expand, seen)


def _classify_tokens(tokens: _Tokens) -> Access:
    """Classify the statements of one reading: the strongest wins, none is READ."""
    if ";" not in tokens:  # the usual case: one statement
        return _statement(tokens) if tokens else _READ
    best = _READ
    for statement in _statements(tokens):
        access = _statement(statement)
        if access is _WRITE:
            return _WRITE
        if _RANK[access] > _RANK[best]:
            best = access
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
        best = _classify_tokens(_tokens(text, _special(backslash, backslash), True, seen))
        if not seen or best is _WRITE:  # the usual case: one reading
            return best
        for tokens in _other_readings(text, backslash, seen):
            access = _classify_tokens(tokens)
            if access is _WRITE:
                return _WRITE
            if _RANK[access] > _RANK[best]:
                best = access
    except (_Unparsable, RecursionError):
        return _WRITE
    return best


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


# ---------------------------------------------------------------------- locality
#
# Read from the same tokens as the statement rules above. A word counts only as a bare
# token: inside a string, a comment or a backtick identifier it is something else.

_PIN_HEADS = frozenset(
    {
        "SET",  # any SET (but SET [SESSION] TRANSACTION), even SET STATEMENT ... FOR
        "USE",
        "PREPARE",
        "EXECUTE",
        "DEALLOCATE",
        "LOCK",  # LOCK TABLES, LOCK INSTANCE FOR BACKUP
        "UNLOCK",
        "HANDLER",
        "CALL",  # a procedure may set variables or create temporary tables
        "DECLARE",
        "BACKUP",  # MariaDB BACKUP STAGE, BACKUP LOCK
        # Compound statements outside a stored program (MariaDB) may do any of the above;
        # the lexer cuts them at each ';', so the inner SET is not a statement's head.
        "IF",
        "CASE",
        "LOOP",
        "WHILE",
        "REPEAT",
        "FOR",
    }
)
_PIN_FUNCTIONS = frozenset(
    {
        # Locks held by the session until released or the connection ends.
        "GET_LOCK",
        "RELEASE_LOCK",
        "RELEASE_ALL_LOCKS",
        "SERVICE_GET_READ_LOCKS",
        "SERVICE_GET_WRITE_LOCKS",
        "SERVICE_RELEASE_LOCKS",
        "VERSION_TOKENS_LOCK_SHARED",
        "VERSION_TOKENS_LOCK_EXCLUSIVE",
        "VERSION_TOKENS_UNLOCK",
        # Sequences: LASTVAL reads what this session's NEXTVAL set.
        "NEXTVAL",
        "LASTVAL",
        "SETVAL",
    }
)
_SEQUENCE_FIELDS = frozenset({"NEXTVAL", "CURRVAL", "LASTVAL"})  # s.nextval (sql_mode=ORACLE)
_PRIMARY_FUNCTIONS = frozenset(
    {
        # This session's state.
        "LAST_INSERT_ID",
        "FOUND_ROWS",
        "ROW_COUNT",
        "CONNECTION_ID",
        "PS_CURRENT_THREAD_ID",
        "PS_THREAD_ID",
        "WSREP_LAST_WRITTEN_GTID",
        # This server's state: named locks, server id, its files, its replication position.
        "IS_USED_LOCK",
        "IS_FREE_LOCK",
        "UUID_SHORT",
        "LOAD_FILE",
        "MASTER_POS_WAIT",
        "SOURCE_POS_WAIT",
        "MASTER_GTID_WAIT",
        "BINLOG_GTID_POS",
        "WAIT_FOR_EXECUTED_GTID_SET",
        "WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS",
        "WSREP_LAST_SEEN_GTID",
        "WSREP_SYNC_WAIT_UPTO_GTID",
        # Time spent on purpose: the caller waits on the server it chose.
        "SLEEP",
        "BENCHMARK",
    }
)
_SERVER_SCHEMAS = frozenset({"INFORMATION_SCHEMA", "PERFORMANCE_SCHEMA", "SYS", "MYSQL"})
_QUERY_STARTS = _QUERY_HEADS | {"(", "WITH"}  # the first tokens _HANDLERS sends to _query


def _around(tokens: _Tokens, mark: str) -> Iterator[tuple[str, str]]:
    """The tokens just before and just after each ``mark`` (``;`` past either end, a
    token no statement holds)."""
    last = len(tokens) - 1
    i = -1
    for _ in range(tokens.count(mark)):
        i = tokens.index(mark, i + 1)
        yield (tokens[i - 1] if i else ";"), (tokens[i + 1] if i < last else ";")


def _pins_by_form(tokens: _Tokens) -> bool:
    """The statement's kind creates session state: ``SET``, ``CREATE TEMPORARY``, ..."""
    head = tokens[0]
    if head == "SET" and _sets_transaction(tokens):
        return False
    if head in _PIN_HEADS:
        return True
    second = tokens[1] if len(tokens) > 1 else ";"
    if second == ":" or (head == "BEGIN" and second == "NOT"):  # label: ..., BEGIN NOT ATOMIC
        return True
    if head in ("CREATE", "DROP"):  # temporary tables and sequences; DROP PREPARE s
        return "TEMPORARY" in tokens or second == "PREPARE"
    # FLUSH TABLES ... WITH READ LOCK, FLUSH TABLES t FOR EXPORT: locks held by the session
    return head == "FLUSH" and ("LOCK" in tokens or "EXPORT" in tokens)


def _sets_transaction(tokens: _Tokens) -> bool:
    """``SET [SESSION | LOCAL] TRANSACTION ...``: the isolation level or access mode of
    later transactions, which never go to a replica; what Django sends on every new
    connection. Not a pin (its statement stays on the primary)."""
    i = 2 if len(tokens) > 2 and tokens[1] in ("SESSION", "LOCAL") else 1
    return len(tokens) > i and tokens[i] == "TRANSACTION"


def _call(before: str, after: str) -> Locality:
    """A function call ``name (``."""
    name = _bare(before)
    if name in _PIN_FUNCTIONS:
        return _PIN
    if name == "LAST_INSERT_ID":  # LAST_INSERT_ID(expr) sets what LAST_INSERT_ID() reads
        return _PRIMARY if after == ")" else _PIN
    return _PRIMARY if name in _PRIMARY_FUNCTIONS else _REPLICA


def _qualified(before: str, after: str) -> Locality:
    """A qualified name ``before . after``."""
    if _bare(after) in _SEQUENCE_FIELDS:  # s.nextval (sql_mode=ORACLE)
        return _PIN
    return _PRIMARY if _bare(before) in _SERVER_SCHEMAS else _REPLICA  # information_schema.x


# What the tokens just before and after a mark say about the statement holding them: the
# weakest locality they allow. Marks missing here say nothing.
_MARK_RULES: dict[str, Callable[[str, str], Locality]] = {
    "(": _call,
    ".": _qualified,
    ":": lambda _, after: _PIN if after == "=" else _REPLICA,  # @x := 1 (lexed ':' '=')
    "INTO": lambda _, after: _PIN if after == "@" else _REPLICA,  # SELECT ... INTO @x, @y
    "VALUE": lambda before, after: (  # NEXT VALUE FOR s, PREVIOUS VALUE FOR s
        _PIN if before in ("NEXT", "PREVIOUS") and after == "FOR" else _REPLICA
    ),
    "SQL_CALC_FOUND_ROWS": lambda _, __: _PIN,  # sets what a later FOUND_ROWS() reads
    "@": lambda _, __: _PRIMARY,  # a user variable
    "@@": lambda _, __: _PRIMARY,  # a system variable: @@hostname, @@server_id differ
}
_MARKS = frozenset(_MARK_RULES)


def _statement_locality(tokens: _Tokens) -> Locality:
    """Where one non-empty statement may run, were it alone in the text."""
    if _pins_by_form(tokens):
        return _PIN
    where = _REPLICA
    for mark in _MARKS.intersection(tokens):  # most queries hold few marks, or none
        rule = _MARK_RULES[mark]
        for before, after in _around(tokens, mark):
            found = rule(before, after)
            if found is _PIN:
                return _PIN
            if found is _PRIMARY:
                where = _PRIMARY
    if where is _REPLICA and (tokens[0] not in _QUERY_STARTS or _query(tokens) is _WRITE):
        return _PRIMARY  # not a query, or not one classify calls READ
    return where


def _tokens_locality(tokens: _Tokens) -> Locality:
    """Where the statements of one reading may run."""
    statements = _statements(tokens)
    if len(statements) == 1:
        return _statement_locality(statements[0])
    # No statement, or several: a replica connection's second result could not be
    # handed back.
    pins = any(_statement_locality(statement) is _PIN for statement in statements)
    return _PIN if pins else _PRIMARY


def _locality(text: str, no_backslash_escapes: bool) -> Locality:
    """Where ``text`` may run under every reading a server could give it; the strongest
    answer wins."""
    backslash = not no_backslash_escapes
    seen: set[str] = set()
    try:
        best = _tokens_locality(_tokens(text, _special(backslash, backslash), True, seen))
        if not seen or best is _PIN:  # the usual case: one reading
            return best
        for tokens in _other_readings(text, backslash, seen):
            where = _tokens_locality(tokens)
            if where is _PIN:
                return _PIN
            if where is _PRIMARY:
                best = _PRIMARY
    except (_Unparsable, RecursionError):
        return _PIN
    return best


@functools.lru_cache(maxsize=1024)
def _locality_cached(text: str, no_backslash_escapes: bool) -> Locality:
    return _locality(text, no_backslash_escapes)


def locality(sql: str | bytes, *, no_backslash_escapes: bool = False) -> Locality:
    """Where MySQL/MariaDB statement text may run: REPLICA, PRIMARY or PIN (see
    :class:`Locality`).

    ``sql`` and ``no_backslash_escapes`` are read as by :func:`classify`, under the same
    readings; the strongest answer wins (PIN > PRIMARY > REPLICA). REPLICA needs exactly
    one statement (a trailing ``;`` is ignored): a query that :func:`classify` calls READ
    and that reads no user or system variable, no function of this session or this
    server (``LAST_INSERT_ID()``, ``CONNECTION_ID()``, ``SLEEP()``, ...) and no system
    schema (``information_schema.``, ``mysql.``, ...). Any statement of the text that
    creates session state makes it PIN: ``SET`` (but ``SET [SESSION] TRANSACTION``),
    ``USE``, prepared statements, ``LOCK``, ``HANDLER``, ``CALL``, temporary tables,
    compound statements, ``@x :=``, ``INTO @x``, ``GET_LOCK()``,
    ``LAST_INSERT_ID(expr)``, ``SQL_CALC_FOUND_ROWS``, sequences; so does text that does
    not lex. Everything else is PRIMARY. Texts of up to 4096 characters are memoised (LRU,
    1024 entries). Never raises for ``str`` or ``bytes`` input.
    """
    text = sql if isinstance(sql, str) else bytes(sql).decode("utf-8", "replace")
    if len(text) <= _CACHE_LIMIT:
        return _locality_cached(text, no_backslash_escapes)
    return _locality(text, no_backslash_escapes)

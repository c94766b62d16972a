"""Statement classification: every rule, and the lexing traps around it."""

from __future__ import annotations

import random

import pytest

from resil.sql import Access, classify

R = Access.READ
W = Access.WRITE
B = Access.BEGIN
BR = Access.BEGIN_READ
E = Access.END
S = Access.SESSION

CASES: list[tuple[str, Access]] = [
    # --- reads
    ("SELECT 1", R),
    ("select * from t where id = 1", R),
    ("SELECT a, b FROM t JOIN u ON t.id = u.id WHERE x IN (SELECT y FROM v)", R),
    ("(SELECT 1) UNION (SELECT 2)", R),
    ("((SELECT a FROM t)) UNION ALL SELECT b FROM u ORDER BY 1", R),
    ("SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-01'", R),
    ("SELECT a INTO @v FROM t LIMIT 1", R),
    ("SELECT @x := 5", R),
    ("SELECT LAST_INSERT_ID(42)", R),
    ("SELECT SLEEP(1)", R),
    ("SELECT IS_FREE_LOCK('a'), LASTVAL(s)", R),
    ("SELECT my_stored_function(1)", R),  # documented limitation: cannot be known
    ("WITH a AS (SELECT 1 AS x) SELECT x FROM a", R),
    ("WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "
     "SELECT * FROM n", R),
    ("WITH a AS (SELECT 1), b AS (SELECT 2) (SELECT * FROM a) UNION (SELECT * FROM b)", R),
    ("SHOW TABLES", R),
    ("SHOW GRANTS FOR CURRENT_USER()", R),
    ("show create table `t`", R),
    ("DESCRIBE t", R),
    ("DESC t", R),
    ("EXPLAIN SELECT * FROM t", R),
    ("EXPLAIN FORMAT=JSON DELETE FROM t WHERE id = 1", R),
    ("EXPLAIN ANALYZE SELECT * FROM t", R),
    ("ANALYZE SELECT * FROM t", R),
    ("ANALYZE FORMAT=JSON SELECT 1", R),
    ("HELP 'contents'", R),
    ("VALUES (1, 2), (3, 4)", R),
    ("TABLE t", R),
    ("CHECKSUM TABLE t1, t2", R),
    ("XA RECOVER", R),
    # --- writes
    ("INSERT INTO t (a, b) VALUES (1, 'x')", W),
    ("insert into t values (1) on duplicate key update a = a + 1", W),
    ("INSERT INTO t SELECT * FROM u", W),
    ("UPDATE t SET a = 1 WHERE id = 2", W),
    ("DELETE FROM t WHERE id = 3", W),
    ("REPLACE INTO t VALUES (1)", W),
    ("LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE t", W),
    ("LOAD XML INFILE 'x.xml' INTO TABLE t", W),
    ("CALL p()", W),
    ("CREATE TABLE t (id INT)", W),
    ("ALTER TABLE t ADD COLUMN c INT", W),
    ("DROP TABLE t", W),
    ("TRUNCATE TABLE t", W),
    ("RENAME TABLE a TO b", W),
    ("GRANT SELECT ON db.* TO 'u'@'%'", W),
    ("REVOKE ALL ON *.* FROM 'u'@'%'", W),
    ("LOCK TABLES t WRITE", W),
    ("LOCK TABLES t READ", W),
    ("FLUSH TABLES", W),
    ("OPTIMIZE TABLE t", W),
    ("REPAIR TABLE t", W),
    ("ANALYZE TABLE t", W),
    ("ANALYZE NO_WRITE_TO_BINLOG TABLE t", W),
    ("ANALYZE UPDATE t SET a = 1", W),
    ("EXPLAIN ANALYZE UPDATE t SET a = 1", W),
    ("EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE", W),
    ("INSTALL PLUGIN x SONAME 'x.so'", W),
    ("UNINSTALL PLUGIN x", W),
    ("HANDLER t OPEN", W),
    ("PURGE BINARY LOGS TO 'mysql-bin.000010'", W),
    ("RESET MASTER", W),
    ("CHANGE MASTER TO MASTER_HOST = 'h'", W),
    ("START SLAVE", W),
    ("STOP REPLICA", W),
    ("KILL 42", W),
    ("DO 1", W),
    ("DO GET_LOCK('a', 0)", W),
    ("PREPARE s FROM 'SELECT 1'", W),
    ("EXECUTE s", W),
    ("EXECUTE IMMEDIATE 'SELECT 1'", W),
    ("BEGIN NOT ATOMIC INSERT INTO t VALUES (1); END", W),
    ("UNLOCK INSTANCE", W),
    ("FROBNICATE everything", W),
    ("`select` 1", W),
    # --- SELECTs that lock, write files or change server state
    ("SELECT * FROM t WHERE id = 1 FOR UPDATE", W),
    ("SELECT * FROM t FOR UPDATE SKIP LOCKED", W),
    ("SELECT * FROM t FOR SHARE", W),
    ("SELECT * FROM t LOCK IN SHARE MODE", W),
    ("SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)", W),
    ("(SELECT 1) UNION (SELECT a FROM t FOR UPDATE)", W),
    ("WITH a AS (SELECT * FROM t FOR UPDATE) SELECT * FROM a", W),
    ("WITH a AS (SELECT 1) UPDATE t JOIN a SET t.x = 1", W),
    ("WITH a AS (DELETE FROM t) SELECT 1", W),
    ("SELECT * INTO OUTFILE '/tmp/x' FROM t", W),
    ("SELECT a INTO DUMPFILE '/tmp/x' FROM t", W),
    ("TABLE t INTO OUTFILE '/tmp/x'", W),
    ("SELECT GET_LOCK('a', 10)", W),
    ("SELECT get_lock ('a', 10)", W),
    ("SELECT `GET_LOCK`('a', 10)", W),
    ("SELECT RELEASE_LOCK('a')", W),
    ("SELECT RELEASE_ALL_LOCKS()", W),
    ("SELECT NEXTVAL(s)", W),
    ("SELECT SETVAL(s, 100)", W),
    ("SELECT NEXT VALUE FOR s", W),
    ("SELECT keyring_key_remove('k', 'u')", W),
    ("SELECT 1 FROM t WHERE GET_LOCK('x', 1) = 1", W),
    ("VALUES (GET_LOCK('a', 1))", W),
    ("SHOW TABLES WHERE GET_LOCK('a', 1)", W),
    ("EXPLAIN SELECT * FROM t WHERE a = (SELECT GET_LOCK('a', 1))", W),
    # --- transactions
    ("BEGIN", B),
    ("BEGIN WORK", B),
    ("begin", B),
    ("START TRANSACTION", B),
    ("START TRANSACTION READ WRITE", B),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT", B),
    ("START TRANSACTION READ ONLY", BR),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", BR),
    ("START TRANSACTION READ ONLY, READ WRITE", B),
    ("START TRANSACTION READ SOMETIMES", W),
    ("XA START 'x'", B),
    ("XA BEGIN 'x', 'b', 1", B),
    ("COMMIT", E),
    ("COMMIT WORK", E),
    ("commit work and no chain no release", E),
    ("ROLLBACK", E),
    ("ROLLBACK WORK", E),
    ("ROLLBACK AND CHAIN", E),
    ("XA END 'x'", E),
    ("XA PREPARE 'x'", E),
    ("XA COMMIT 'x' ONE PHASE", E),
    ("XA ROLLBACK 'x'", E),
    ("ROLLBACK TO SAVEPOINT a", S),
    ("ROLLBACK TO a", S),
    ("ROLLBACK WORK TO SAVEPOINT `a b`", S),
    # --- session
    ("SET NAMES utf8mb4", S),
    ("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'", S),
    ("SET CHARACTER SET utf8mb4", S),
    ("SET autocommit=0", S),
    ("SET autocommit = 1", S),
    ("SET SESSION sql_mode=''", S),
    ("SET LOCAL sql_mode = 'ANSI'", S),
    ("SET @@session.time_zone = '+00:00'", S),
    ("SET @@sql_mode = ''", S),
    ("SET @x = 1, @y := 'two'", S),
    ("SET @x = IF(1, 2, 3), sql_mode = ''", S),
    ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", S),
    ("SET TRANSACTION READ ONLY", S),
    ("SET ROLE ALL", S),
    ("SET STATEMENT max_statement_time = 1 FOR SELECT * FROM t", R),
    ("SET STATEMENT max_statement_time = 1 FOR DELETE FROM t", W),
    ("USE db", S),
    ("USE `my db`", S),
    ("SAVEPOINT a", S),
    ("RELEASE SAVEPOINT a", S),
    ("UNLOCK TABLES", S),
    ("DEALLOCATE PREPARE s", S),
    ("DROP PREPARE s", S),
    # --- global SET
    ("SET GLOBAL read_only = 1", W),
    ("SET @@global.read_only=1", W),
    ("SET @@GLOBAL.max_connections = 10", W),
    ("SET PERSIST max_connections = 10", W),
    ("SET PERSIST_ONLY max_connections = 10", W),
    ("SET @@persist.max_connections = 10", W),
    ("SET GLOBAL TRANSACTION ISOLATION LEVEL SERIALIZABLE", W),
    ("SET @x = 1, GLOBAL read_only = 1", W),
    ("SET @x = 1, @@global.read_only = 1", W),
    ("SET PASSWORD = 'secret'", W),
    ("SET PASSWORD FOR 'u'@'%' = 'secret'", W),
    ("SET DEFAULT ROLE ALL TO 'u'@'%'", W),
    ("SET @x = GET_LOCK('a', 1)", W),
    ("SET @x = (SELECT a FROM t WHERE id = 1 FOR UPDATE)", W),
    # --- keywords inside literals and identifiers
    ("SELECT 'DELETE FROM t'", R),
    ('SELECT "x; DROP TABLE t"', R),
    ("SELECT 'a;b'; SELECT 'c'", R),
    ("SELECT `update` FROM t", R),
    ("SELECT `for`, `update` FROM t", R),
    ("SELECT `a``; DELETE FROM t; ``` FROM t", R),
    ("SELECT 'it\\'s; DELETE'", R),
    ("SELECT 'it''s; DELETE FROM t'", R),
    ('SELECT "say ""hi""; DROP TABLE t"', R),
    ("SELECT 'for update'", R),
    ("SELECT 'a\\\\'", R),
    ("SELECT _utf8mb4'x', N'y', X'41', B'1'", R),
    ("SELECT 'FOR' 'UPDATE'", R),
    # --- comments
    ("/* DELETE */ SELECT 1", R),
    ("-- DELETE\nSELECT 1", R),
    ("# DELETE FROM t\nSELECT 1", R),
    ("SELECT 1 # FOR UPDATE", R),
    ("SELECT 1 -- FOR UPDATE", R),
    ("SELECT 1 -- x\n FOR UPDATE", W),
    ("SELECT 1 /* x */ FOR /* y */ UPDATE", W),
    ("SELECT 1 /* ; DELETE FROM t; */", R),
    ("SELECT 1--1", R),
    ("SELECT 1 --1\nFOR UPDATE", W),
    ("SELECT 1 --", R),
    ("SELECT 1 --\nFOR UPDATE", W),
    ("SELECT 1; --\nDELETE FROM t", W),
    ("SELECT 1; #\nDELETE FROM t", W),
    ("SELECT 1 --\tDELETE", R),
    ("SELECT 2*/*c*/3", R),
    ("/*+ hint */ SELECT 1", R),
    ("SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t", R),
    # --- executable comments hold live SQL
    ("/*!40101 SET GLOBAL x=1 */", W),
    ("SELECT 1 /*! FOR UPDATE */", W),
    ("SELECT 1 /*!50000 FOR UPDATE */", W),
    ("SELECT 1 /*M! FOR UPDATE */", W),
    ("SELECT 1 /*M!100500 FOR UPDATE */", W),
    ("/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;", S),
    ("/*!40000 ALTER TABLE t DISABLE KEYS */;", W),
    ("SELECT /*!40001 SQL_NO_CACHE */ * FROM t", R),
    ("/*!99999 SELECT */ DELETE FROM t", W),  # a server that skips it runs the DELETE
    ("/*!50000 SELECT '*/' */", W),  # skipped, the comment ends inside the string
    ("/*! SELECT '*/' */", R),  # always run: the string is a string
    ("/*!50000 SELECT /* nested */ 1 */", W),
    ("/*! SELECT 1", W),
    # --- multi-statements
    ("BEGIN; INSERT INTO t VALUES (1); COMMIT", W),
    ("BEGIN; SELECT 1; COMMIT", B),
    ("START TRANSACTION READ ONLY; SELECT 1; COMMIT", BR),
    ("SELECT 1; COMMIT", E),
    ("SET NAMES utf8mb4; SELECT 1", S),
    ("SELECT 1; SELECT 2;", R),
    ("SELECT 1;;", R),
    (";", R),
    ("SELECT 1; DELETE FROM t", W),
    ("SELECT 1 ; update t set a=1", W),
    ("SHOW TABLES; DROP TABLE x", W),
    ("SELECT 'x;'; SELECT \"y;\"", R),
    # --- whitespace, case, leading noise
    ("   \n\t SELECT\n1\t", R),
    ("\r\nSELECT\r\n*\r\nFROM\tt\r\nFOR\r\nUPDATE", W),
    ("SeLeCt 1 fOr UpDaTe", W),
    ("  (  select 1 )", R),
    ("((INSERT INTO t VALUES (1)))", W),
    ("", R),
    ("   \n\t ", R),
    ("/* only a comment */", R),
    ("-- only a comment", R),
    ("# only a comment", R),
    # --- unparsable: the safe default
    ("SELECT 'unterminated", W),
    ('SELECT "unterminated', W),
    ("SELECT `unterminated", W),
    ("SELECT 1 /* unterminated", W),
    ("SELECT 'it\\'", W),
    ("SELECT '''", W),
    ("SELECT 'x' FROM t WHERE a = 'unterminated; DELETE FROM t", W),
]


@pytest.mark.parametrize(("sql", "expected"), CASES, ids=[repr(c[0])[:60] for c in CASES])
def test_classify(sql: str, expected: Access) -> None:
    assert classify(sql) is expected


def test_enough_cases() -> None:
    assert len(CASES) >= 80
    assert {expected for _, expected in CASES} == set(Access)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (b"SELECT 1", R),
        (b"INSERT INTO t VALUES (1)", W),
        ("SELECT 'caf\u00e9'".encode(), R),
        (b"SELECT '\xff\xfe' FROM t", R),  # undecodable bytes are replaced
        (b"SELECT 1 \xe4' FOR UPDATE", W),  # a broken sequence never hides a quote
        (b"BEGIN", B),
        (b"", R),
    ],
)
def test_bytes(sql: bytes, expected: Access) -> None:
    assert classify(sql) is expected


def test_non_ascii_identifiers() -> None:
    assert classify("SELECT caf\u00e9 FROM \u8868") is R
    assert classify("SELECT 1 FROM t WHERE x = '\u00e9' FOR UPDATE") is W


def test_no_backslash_escapes_mode() -> None:
    sql = "SELECT 'a\\' ; DELETE FROM t; -- '"
    assert classify(sql) is R  # default: \' is an escaped quote, one string
    assert classify(sql, no_backslash_escapes=True) is W  # the string ends at \'
    assert classify("SELECT 'a\\'", no_backslash_escapes=True) is R
    assert classify("SELECT 'it''s'", no_backslash_escapes=True) is R


def test_double_quotes_read_both_ways() -> None:
    # Under ANSI_QUOTES "a\" is an identifier and the DELETE runs: the stronger reading wins.
    assert classify('SELECT "a\\" ; DELETE FROM t; -- "') is W
    assert classify('SELECT "no backslash; DELETE FROM t"') is R


def test_long_text_is_classified_without_the_cache() -> None:
    select = "SELECT " + ", ".join(f"c{i}" for i in range(2000)) + " FROM t"
    assert len(select) > 4096
    assert classify(select) is R
    assert classify(select + " FOR UPDATE") is W
    assert classify(select + "; COMMIT") is E


def test_results_are_memoised_consistently() -> None:
    for _ in range(3):
        assert classify("SELECT 1 FOR UPDATE") is W
        assert classify(b"SELECT 1 FOR UPDATE") is W
        assert classify("SELECT 1") is R


def test_deep_nesting_is_safe() -> None:
    assert classify("(" * 5000 + "SELECT 1" + ")" * 5000) is R
    nested = "SELECT 1"
    for i in range(600):
        nested = f"WITH a{i} AS ({nested}) SELECT 1"
    assert classify(nested) in (R, W)  # never raises, whatever the recursion limit


def test_pathological_input_is_linear() -> None:
    # These would take forever with a backtracking pattern; here they just finish.
    assert classify("SELECT '" + "\\'" * 200_000) is W
    assert classify("SELECT '" + "''" * 200_000 + "x") is W
    assert classify("SELECT 1 /*" + "*" * 200_000) is W
    assert classify("SELECT " + "-" * 200_000) is R


def test_never_raises_on_garbage() -> None:
    rng = random.Random(1234)
    alphabet = "SELECT FOR UPDATE INSERT ;'\"`\\/*!-#@()\n\t M50000é"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert isinstance(classify(text), Access)
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        assert isinstance(classify(raw), Access)


# --- the fast lexer against a plain character-by-character one


class _RefUnparsable(Exception):
    pass


def _ascii_upper(text: str) -> str:
    return "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in text)


def _is_word(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c in "_$") or c >= "\x80"


def reference_tokens(text: str, single_bs: bool, double_bs: bool, expand: bool) -> list[str]:
    out: list[str] = []
    i, n, in_exec = 0, len(text), False
    while i < n:
        c = text[i]
        if c in " \t\n\r\f\v":
            i += 1
        elif _is_word(c):
            j = i
            while j < n and _is_word(text[j]):
                j += 1
            out.append(_ascii_upper(text[i:j]))
            i = j
        elif c in "'\"`":
            escapes = (c == "'" and single_bs) or (c == '"' and double_bs)
            j = i + 1
            while True:
                if j >= n:
                    raise _RefUnparsable
                if escapes and text[j] == "\\":
                    if j + 1 >= n:
                        raise _RefUnparsable
                    j += 2
                elif text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                    else:
                        break
                else:
                    j += 1
            body = text[i + 1 : j]
            if c == "'":
                out.append("'")
            elif c == '"':
                out.append('"' + _ascii_upper(body))
            else:
                out.append("`" + _ascii_upper(body.replace("``", "`")))
            i = j + 1
        elif c == "#" or (text.startswith("--", i) and (i + 2 == n or text[i + 2] <= " "
                                                        or text[i + 2] == "\x7f")):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            if text.startswith("/*!", i) or text[i + 2 : i + 4] in ("M!", "m!"):
                if in_exec:
                    raise _RefUnparsable
                j = i + (3 if text[i + 2] == "!" else 4)
                k = j
                while k < n and k - j < 6 and "0" <= text[k] <= "9":
                    k += 1
                if (k > j or text[i + 2] != "!") and not expand:
                    close = text.find("*/", k)
                    if close < 0 or "/*" in text[k:close]:
                        raise _RefUnparsable
                    i = close + 2
                else:
                    in_exec, i = True, k
            else:
                close = text.find("*/", i + 2)
                if close < 0 or in_exec:
                    raise _RefUnparsable
                i = close + 2
        elif in_exec and text.startswith("*/", i):
            in_exec, i = False, i + 2
        elif text.startswith("@@", i):
            out.append("@@")
            i += 2
        else:
            out.append(c)
            i += 1
    if in_exec:
        raise _RefUnparsable
    return out


def _lex_both(text: str, single_bs: bool, double_bs: bool, expand: bool) -> tuple[object, object]:
    from resil.sql import _special, _tokens, _Unparsable

    try:
        fast: object = _tokens(text, _special(single_bs, double_bs), expand, set())
    except _Unparsable:
        fast = "unparsable"
    try:
        ref: object = reference_tokens(text, single_bs, double_bs, expand)
    except _RefUnparsable:
        ref = "unparsable"
    return fast, ref


@pytest.mark.parametrize("mode", [(True, True, True), (True, False, True), (False, False, True),
                                  (True, True, False)])
def test_fast_lexer_matches_reference(mode: tuple[bool, bool, bool]) -> None:
    rng = random.Random(hash(mode) & 0xFFFF)
    pieces = ["SELECT", "for", "Update", " ", "  ", "\n", "\t", "'", '"', "`", "\\", "/", "*",
              "-", "--", "-- ", "#", "!", "M", "m", "50000", "1", ";", "(", ")", "@", "@@", "=",
              ",", ".", "\x00", "\x7f", "\xa0", "\u017f", "é", "\r"]
    for _ in range(4000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        fast, ref = _lex_both(text, *mode)
        assert fast == ref, text

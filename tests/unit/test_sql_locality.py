"""Where a statement may run: every locality rule, and the lexing traps around it."""

from __future__ import annotations

import random

import pytest

from resil.sql import Access, Locality, classify, locality

R = Locality.REPLICA
P = Locality.PRIMARY
PIN = Locality.PIN

REPLICA_CASES: list[tuple[str, Locality]] = [
    ("SELECT 1", R),
    ("SELECT a FROM t WHERE id = %s", R),
    ("select a, b from t join u on t.id = u.id where x in (select y from v)", R),
    ("SELECT COUNT(*), MAX(a) FROM t GROUP BY b HAVING COUNT(*) > 1", R),
    ("SELECT NOW(), VERSION(), DATABASE(), UUID(), CONCAT('a', 'b')", R),
    ("SELECT t.a FROM db.t AS t", R),
    ("(SELECT 1) UNION (SELECT 2)", R),
    ("  ((SELECT a FROM t))", R),
    ("VALUES (1, 2), (3, 4)", R),
    ("TABLE t", R),
    ("WITH a AS (SELECT 1 AS x) SELECT x FROM a", R),
    ("WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "
     "SELECT * FROM n", R),
    ("SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t", R),
    ("SELECT /*!40001 SQL_NO_CACHE */ * FROM t", R),
    ("SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-01'", R),
    ("SELECT my_stored_function(1)", R),  # documented limitation: cannot be known
    ("SELECT nextval FROM t", R),  # a column, not a call
    ("SELECT `user`.`host` FROM `user`", R),  # unqualified: the connection's own database
]

PRIMARY_CASES: list[tuple[str, Locality]] = [
    # --- the isolation level of later transactions (Django sets it on every connection):
    # transactions never go to a replica, so it pins nothing
    ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", P),
    ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", P),
    ("set local transaction read only", P),
    # --- not READ in classify
    ("INSERT INTO t (a) VALUES (1)", P),
    ("UPDATE t SET a = 1 WHERE id = 2", P),
    ("DELETE FROM t WHERE id = 3", P),
    ("CREATE TABLE t (id INT)", P),
    ("DROP TABLE t", P),
    ("BEGIN", P),
    ("START TRANSACTION READ ONLY", P),
    ("COMMIT", P),
    ("ROLLBACK", P),
    ("SAVEPOINT a", P),
    ("DO 1", P),
    ("FLUSH TABLES", P),
    ("KILL 42", P),
    ("FROBNICATE everything", P),
    # --- READ but not query-shaped: server- or session-specific
    ("SHOW TABLES", P),
    ("SHOW WARNINGS", P),
    ("SHOW SLAVE STATUS", P),
    ("EXPLAIN SELECT * FROM t", P),
    ("EXPLAIN ANALYZE SELECT * FROM t", P),
    ("ANALYZE SELECT * FROM t", P),
    ("DESCRIBE t", P),
    ("DESC t", P),
    ("HELP 'contents'", P),
    ("CHECKSUM TABLE t", P),
    ("XA RECOVER", P),
    # --- locking clauses and file output (WRITE in classify)
    ("SELECT * FROM t WHERE id = 1 FOR UPDATE", P),
    ("SELECT * FROM t FOR SHARE", P),
    ("SELECT * FROM t LOCK IN SHARE MODE", P),
    ("SELECT * INTO OUTFILE '/tmp/x' FROM t", P),
    ("SELECT a INTO DUMPFILE '/tmp/x' FROM t", P),
    ("WITH a AS (SELECT 1) UPDATE t JOIN a SET t.x = 1", P),
    # --- user and system variables
    ("SELECT @x", P),
    ("SELECT a FROM t WHERE b = @x", P),
    ("SELECT @x = 1", P),  # a comparison, not an assignment
    ("SELECT @`x`, @'y', @\"z\"", P),
    ("SELECT @@hostname", P),
    ("SELECT @@read_only", P),
    ("SELECT @@server_id", P),
    ("SELECT @@global.gtid_current_pos", P),
    ("SELECT @@SESSION.sql_mode", P),
    ("select @@Gtid_Slave_Pos", P),
    # --- functions reading this session or this server
    ("SELECT LAST_INSERT_ID()", P),
    ("SELECT FOUND_ROWS()", P),
    ("SELECT ROW_COUNT()", P),
    ("SELECT CONNECTION_ID()", P),
    ("SELECT IS_USED_LOCK('a')", P),
    ("SELECT IS_FREE_LOCK('a')", P),
    ("SELECT MASTER_POS_WAIT('log.000001', 4)", P),
    ("SELECT SOURCE_POS_WAIT('log.000001', 4)", P),
    ("SELECT MASTER_GTID_WAIT('0-1-100', 1)", P),
    ("SELECT BINLOG_GTID_POS('log.000001', 4)", P),
    ("SELECT WAIT_FOR_EXECUTED_GTID_SET('x:1-5')", P),
    ("SELECT SLEEP(1)", P),
    ("SELECT BENCHMARK(1000, MD5('a'))", P),
    ("SELECT UUID_SHORT()", P),
    ("SELECT LOAD_FILE('/etc/hostname')", P),
    ("SELECT PS_CURRENT_THREAD_ID()", P),
    ("SELECT a FROM t WHERE b = (SELECT LAST_INSERT_ID())", P),
    ("select found_rows ()", P),
    ("SELECT `CONNECTION_ID`()", P),
    ("VALUES (CONNECTION_ID())", P),
    ("WITH a AS (SELECT SLEEP(1)) SELECT * FROM a", P),
    # --- server-specific schemas as qualifiers
    ("SELECT * FROM information_schema.processlist", P),
    ("SELECT * FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'db'", P),
    ("SELECT * FROM performance_schema.threads", P),
    ("SELECT * FROM sys.session", P),
    ("SELECT sys.format_bytes(1024)", P),
    ("SELECT user, host FROM mysql.user", P),
    ("SELECT * FROM `mysql`.`user`", P),
    ("SELECT * FROM mysql . user", P),
    ("TABLE mysql.user", P),
    ("SELECT a FROM t WHERE b IN (SELECT id FROM information_schema.processlist)", P),
    # --- several statements: a second result could not be handed back
    ("SELECT 1; SELECT 2", P),
    ("SELECT 1; SELECT 2;", P),
    ("SELECT 1;; SELECT 2", P),
    ("BEGIN; SELECT 1; COMMIT", P),
    ("SELECT 'a;b'; SELECT 'c'", P),
    ("SELECT 1; DELETE FROM t", P),
    # --- no statement at all
    ("", P),
    ("   \n\t ", P),
    (";", P),
    ("/* only a comment */", P),
    ("-- only a comment", P),
    ("# only a comment", P),
]

PIN_CASES: list[tuple[str, Locality]] = [
    # --- statements that create session state
    ("SET NAMES utf8mb4", PIN),
    ("SET CHARACTER SET utf8mb4", PIN),
    ("SET @x = 1", PIN),
    ("SET @x := 1, @y = 2", PIN),
    ("SET SESSION sql_mode = ''", PIN),
    ("SET @@session.time_zone = '+00:00'", PIN),
    ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET @x = 1", PIN),
    ("SET autocommit = 0", PIN),
    ("SET autocommit=1", PIN),
    ("SET GLOBAL read_only = 1", PIN),
    ("SET ROLE ALL", PIN),
    ("SET STATEMENT max_statement_time = 1 FOR SELECT * FROM t", PIN),
    ("USE db", PIN),
    ("use `my db`", PIN),
    ("PREPARE s FROM 'SELECT 1'", PIN),
    ("EXECUTE s", PIN),
    ("EXECUTE s USING @a", PIN),
    ("EXECUTE IMMEDIATE 'SELECT 1'", PIN),
    ("DEALLOCATE PREPARE s", PIN),
    ("DROP PREPARE s", PIN),
    ("LOCK TABLES t READ", PIN),
    ("LOCK TABLE t WRITE", PIN),
    ("UNLOCK TABLES", PIN),
    ("UNLOCK TABLE", PIN),
    ("FLUSH TABLES WITH READ LOCK", PIN),
    ("FLUSH TABLES t FOR EXPORT", PIN),
    ("BACKUP STAGE START", PIN),
    ("HANDLER t OPEN", PIN),
    ("HANDLER t READ FIRST", PIN),
    ("CALL p()", PIN),
    ("call p", PIN),
    ("CREATE TEMPORARY TABLE tmp (id INT)", PIN),
    ("CREATE OR REPLACE TEMPORARY TABLE tmp SELECT * FROM t", PIN),
    ("create temporary table if not exists tmp like t", PIN),
    ("DROP TEMPORARY TABLE tmp", PIN),
    ("DROP TEMPORARY TABLE IF EXISTS tmp", PIN),
    ("DECLARE x INT", PIN),
    # --- compound statements outside a stored program (MariaDB)
    ("BEGIN NOT ATOMIC SET @x = 1; END", PIN),
    ("BEGIN NOT ATOMIC SELECT 1; END", PIN),
    ("IF 1 THEN SET @x = 1; END IF", PIN),
    ("lbl: LOOP LEAVE lbl; END LOOP", PIN),
    ("WHILE 0 DO SELECT 1; END WHILE", PIN),
    ("FOR i IN 1..3 DO SELECT i; END FOR", PIN),
    # --- user-variable assignment
    ("SELECT @x := 1", PIN),
    ("SELECT @x:=1", PIN),
    ("SELECT @`x` := 1", PIN),
    ("SELECT @'x' := 1", PIN),
    ('SELECT @"x" := 1', PIN),
    ("SELECT @a.b := 1", PIN),
    ("SELECT a, @n := @n + 1 FROM t", PIN),
    ("SELECT * FROM t WHERE (@x := a) > 0", PIN),
    ("UPDATE t SET a = (@old := a) + 1", PIN),
    ("DO @x := 1", PIN),
    ("SELECT a INTO @v FROM t LIMIT 1", PIN),
    ("SELECT a, b INTO @a, @b FROM t LIMIT 1", PIN),
    ("SELECT a FROM t LIMIT 1 INTO @v", PIN),
    ("select 1 into @`v`", PIN),
    # --- named locks and other session-held locks
    ("SELECT GET_LOCK('a', 10)", PIN),
    ("select get_lock ('a', 10)", PIN),
    ("SELECT `GET_LOCK`('a', 10)", PIN),
    ("SELECT RELEASE_LOCK('a')", PIN),
    ("SELECT RELEASE_ALL_LOCKS()", PIN),
    ("DO GET_LOCK('a', 0)", PIN),
    ("DO RELEASE_LOCK('a')", PIN),
    ("SELECT 1 FROM t WHERE GET_LOCK('x', 1) = 1", PIN),
    ("SELECT IS_FREE_LOCK('a'), GET_LOCK('a', 1)", PIN),  # PIN outranks PRIMARY
    ("SELECT SERVICE_GET_WRITE_LOCKS('ns', 'lock1', 60)", PIN),
    ("SELECT VERSION_TOKENS_LOCK_SHARED('t', 10)", PIN),
    ("SHOW TABLES WHERE GET_LOCK('a', 1)", PIN),
    ("EXPLAIN SELECT * FROM t WHERE a = (SELECT GET_LOCK('a', 1))", PIN),
    # --- what a later statement of this session reads
    ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10", PIN),
    ("select sql_calc_found_rows a from t", PIN),
    ("SELECT LAST_INSERT_ID(42)", PIN),
    ("UPDATE seq SET id = LAST_INSERT_ID(id + 1)", PIN),
    # --- sequences
    ("SELECT NEXTVAL(s)", PIN),
    ("SELECT LASTVAL(s)", PIN),
    ("SELECT SETVAL(s, 100)", PIN),
    ("SELECT NEXT VALUE FOR s", PIN),
    ("SELECT PREVIOUS VALUE FOR s", PIN),
    ("select next value for db.s", PIN),
    ("INSERT INTO t VALUES (NEXT VALUE FOR s)", PIN),
    ("SELECT s.nextval", PIN),
    ("SELECT s.currval FROM dual", PIN),
    # --- a pinning statement anywhere in the text
    ("SELECT 1; SET @x = 1", PIN),
    ("SET NAMES utf8mb4; SELECT 1", PIN),
    ("SELECT 1; SELECT GET_LOCK('a', 1)", PIN),
    ("INSERT INTO t VALUES (1); CREATE TEMPORARY TABLE tmp (id INT)", PIN),
    ("SELECT @@hostname; USE db", PIN),
]

TRAP_CASES: list[tuple[str, Locality]] = [
    # --- trigger words in literals, identifiers and comments
    ("SELECT 'SET @x := 1'", R),
    ("SELECT 'GET_LOCK(' FROM t", R),
    ('SELECT "@@hostname"', R),
    ("SELECT 'information_schema.processlist'", R),
    ("SELECT 'a; SELECT 2'", R),
    ("SELECT 'it\\'s @x := 1'", R),
    ("SELECT 'it''s; SET @x = 1'", R),
    ("SELECT `set`, `use`, `call`, `lock` FROM t", R),
    ("SELECT `get_lock` FROM t", R),
    ("SELECT `@x` FROM t", R),
    ("SELECT a AS `information_schema` FROM t", R),
    ("SELECT 1 -- GET_LOCK(", R),
    ("SELECT 1 # SET @x := 1", R),
    ("SELECT 1 /* SELECT @@hostname; SET NAMES x */", R),
    ("/* SET NAMES utf8 */ SELECT 1", R),
    ("-- USE db\nSELECT 1", R),
    ("SELECT 1 -- x\n, GET_LOCK('a', 1)", PIN),
    ("SELECT 1 /* x */ , @@hostname", P),
    ("SELECT 1--1", R),
    # --- executable comments hold live SQL
    ("SELECT 1 /*!50000 , GET_LOCK('a',1) */", PIN),
    ("SELECT 1 /*! , GET_LOCK('a',1) */", PIN),
    ("SELECT 1 /*M! , @@hostname */", P),
    ("SELECT 1 /*M!100500 , @x := 1 */", PIN),
    ("/*!40101 SET NAMES utf8 */", PIN),
    ("/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;", PIN),
    ("SELECT 1 /*!50000 ; SELECT 2 */", P),  # two statements where it runs
    ("/*!50000 SELECT 1 */", P),  # no statement where it is skipped
    ("/*! SELECT 1 */", R),  # always run
    ("/*!99999 SELECT */ SET @x = 1", PIN),
    # --- case
    ("SeLeCt A fRoM t", R),
    ("sElEcT gEt_LoCk('a', 1)", PIN),
    ("SeT nAmEs utf8", PIN),
    ("SELECT * FROM Information_Schema.Tables", P),
    ("SELECT @@HOSTNAME", P),
    # --- the trailing ';'
    ("SELECT 1;", R),
    ("SELECT 1 ;  ", R),
    ("SELECT 1;;", R),
    (";SELECT 1", R),
    ("SELECT 1; -- done", R),
    ("SELECT 1; /* done */", R),
    ("SET NAMES utf8;", PIN),
    ("SELECT @@hostname;", P),
    # --- unparsable: never REPLICA
    ("SELECT 'unterminated", PIN),
    ('SELECT "unterminated', PIN),
    ("SELECT `unterminated", PIN),
    ("SELECT 1 /* unterminated", PIN),
    ("SELECT 'it\\'", PIN),
    ("SELECT '''", PIN),
    ("/*! SELECT 1", PIN),
    ("/*!50000 SELECT /* nested */ 1 */", PIN),
]

CASES = REPLICA_CASES + PRIMARY_CASES + PIN_CASES + TRAP_CASES


@pytest.mark.parametrize(("sql", "expected"), CASES, ids=[repr(c[0])[:60] for c in CASES])
def test_locality(sql: str, expected: Locality) -> None:
    assert locality(sql) is expected


def test_enough_cases() -> None:
    assert len(CASES) >= 200
    assert {expected for _, expected in CASES} == set(Locality)


def test_replica_only_for_a_read() -> None:
    replica = [sql for sql, expected in CASES if expected is R]
    assert [sql for sql in replica if classify(sql) is not Access.READ] == []


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (b"SELECT a FROM t WHERE id = 1", R),
        (b"SELECT a FROM t WHERE id = 1;", R),
        (b"SET NAMES utf8mb4", PIN),
        (b"SELECT @@hostname", P),
        ("SELECT 'caf\u00e9'".encode(), R),
        (b"SELECT '\xff\xfe' FROM t", R),  # undecodable bytes are replaced
        (b"SELECT 1 \xe4' , GET_LOCK('a', 1)", PIN),  # unterminated after the broken byte
        (bytearray(b"SELECT 1"), R),
        (b"", P),
    ],
)
def test_bytes(sql: bytes, expected: Locality) -> None:
    assert locality(sql) is expected


def test_double_quotes_read_both_ways() -> None:
    # Under ANSI_QUOTES "a\" is an identifier and the SET runs: the stronger reading wins.
    assert locality('SELECT "a\\" ; SET @x = 1; -- "') is PIN
    assert locality('SELECT "a\\" , @@hostname -- "') is P
    assert locality('SELECT "a\\b" FROM t') is R  # a string, or an identifier
    assert locality('SELECT "information_schema".tables') is P  # an identifier there


def test_no_backslash_escapes_mode() -> None:
    sql = "SELECT 'a\\' ; SET @x = 1; -- '"
    assert locality(sql) is R  # default: \' is an escaped quote, one string
    assert locality(sql, no_backslash_escapes=True) is PIN  # the string ends at \'
    assert locality("SELECT 'a\\'", no_backslash_escapes=True) is R
    assert locality("SELECT 'a\\'") is PIN  # unterminated


def test_non_ascii_identifiers() -> None:
    assert locality("SELECT caf\u00e9 FROM \u8868") is R
    assert locality("SELECT \u017fet FROM t") is R  # long s is not an ASCII 's'


def test_long_text_is_judged_without_the_cache() -> None:
    select = "SELECT " + ", ".join(f"c{i}" for i in range(2000)) + " FROM t"
    assert len(select) > 4096
    assert locality(select) is R
    assert locality(select + " WHERE a = @@server_id") is P
    assert locality(select + "; SET NAMES utf8") is PIN


def test_results_are_memoised_consistently() -> None:
    for _ in range(3):
        assert locality("SELECT GET_LOCK('a', 1)") is PIN
        assert locality(b"SELECT GET_LOCK('a', 1)") is PIN
        assert locality("SELECT 1") is R
        assert locality("SELECT 'a\\'", no_backslash_escapes=True) is R
        assert locality("SELECT 'a\\'") is PIN


def test_classify_is_unchanged_by_locality() -> None:
    assert locality("SELECT @x := 1") is PIN
    assert classify("SELECT @x := 1") is Access.READ
    assert locality("SET NAMES utf8") is PIN
    assert classify("SET NAMES utf8") is Access.SESSION


def test_deep_nesting_is_safe() -> None:
    assert locality("(" * 5000 + "SELECT 1" + ")" * 5000) is R
    nested = "SELECT 1"
    for i in range(600):
        nested = f"WITH a{i} AS ({nested}) SELECT 1"
    assert locality(nested) in (R, PIN)  # never raises, whatever the recursion limit


def test_pathological_input_is_linear() -> None:
    assert locality("SELECT '" + "\\'" * 200_000) is PIN
    assert locality("SELECT " + "@" * 200_000) is P
    assert locality("SELECT " + "(" * 100_000 + ")" * 100_000) is R
    assert locality("SELECT " + ":" * 200_000 + "=") is PIN


def test_never_raises_and_never_replica_for_less_than_a_read() -> None:
    rng = random.Random(4321)
    alphabet = "SELECT SET GET_LOCK INTO FOR UPDATE ;'\"`\\/*!-#@:=()\n\t M50000é."
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        where = locality(text)
        assert isinstance(where, Locality)
        if where is R:
            assert classify(text) is Access.READ, text
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        assert isinstance(locality(raw), Locality)

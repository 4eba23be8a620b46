"""psycopg 3 as applications use it against Sluice: parameters of every
type (sent in text with their OIDs, as psycopg does by default), and
transactions with psycopg's default of autocommit off. Prints one JSON
document the Rust test compares with the answers Postgres gives."""
import datetime
import decimal
import json
import sys

import psycopg

port = int(sys.argv[1])
dsn = f"host=127.0.0.1 port={port} user=sluice dbname=sluice"
out = {}

with psycopg.connect(dsn, autocommit=True) as conn:
    out["tls"] = conn.pgconn.ssl_in_use
    conn.execute("CREATE TABLE t (id INT PRIMARY KEY, calls BIGINT, name TEXT)")
    conn.execute("INSERT INTO t VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 60, 'c')")
    # A float and a Decimal keep their fractions.
    out["float_lt"] = conn.execute("SELECT count(*) FROM t WHERE calls < %s", (1.5,)).fetchone()[0]
    out["decimal_times_two"] = str(conn.execute("SELECT %s * 2", (decimal.Decimal("1.25"),)).fetchone()[0])
    out["float_times_two"] = conn.execute("SELECT %s * 2", (1.25,)).fetchone()[0]
    out["int_param"] = conn.execute("SELECT %s + 1", (41,)).fetchone()[0]
    out["none"] = conn.execute("SELECT %s::int", (None,)).fetchone()[0]
    out["text"] = conn.execute("SELECT name FROM t WHERE name = %s", ("b",)).fetchone()[0]
    out["list"] = conn.execute("SELECT count(*) FROM t WHERE id = ANY(%s)", ([1, 3],)).fetchone()[0]
    out["interval"] = str(conn.execute(
        "SELECT CAST('2024-01-01 00:00:00' AS TIMESTAMP) + %s", (datetime.timedelta(days=1, hours=2),)
    ).fetchone()[0])
    out["date"] = str(conn.execute("SELECT %s", (datetime.date(2024, 2, 29),)).fetchone()[0])
    # A text that is no number, where a number is wanted: 22P02.
    try:
        conn.execute("SELECT count(*) FROM t WHERE calls < %s", ("1.5x",))
    except psycopg.Error as e:
        out["bad_number"] = [e.sqlstate, e.diag.message_primary]
    # Binary parameters too.
    with conn.cursor(binary=True) as cur:
        cur.execute("SELECT count(*) FROM t WHERE calls < %s", (1.5,))
        out["binary_float_lt"] = cur.fetchone()[0]
        cur.execute("SELECT %s * 2", (decimal.Decimal("1.25"),))
        out["binary_decimal"] = str(cur.fetchone()[0])
    # executemany: every driver's way of inserting rows.
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO t VALUES (%s, %s, %s)", [(10, 10, "x"), (11, 11, "y")])
    out["after_executemany"] = conn.execute("SELECT count(*) FROM t").fetchone()[0]

# COPY both ways, in text, CSV and binary.
with psycopg.connect(dsn, autocommit=True) as conn:
    cur = conn.cursor()
    conn.execute("CREATE TABLE c (id INT PRIMARY KEY, note TEXT)")
    with cur.copy("COPY c FROM STDIN") as copy:
        copy.write_row((1, "tab\there"))
        copy.write_row((2, None))
    with cur.copy("COPY c (id, note) FROM STDIN (FORMAT binary)") as copy:
        copy.set_types(["int4", "text"])
        copy.write_row((3, "back\\slash"))
    with cur.copy("COPY c FROM STDIN (FORMAT csv)") as copy:
        copy.write(b'4,"a,b"\n5,\n')
    out["copy_in_rowcount"] = cur.rowcount
    with cur.copy("COPY (SELECT * FROM c ORDER BY id) TO STDOUT (FORMAT csv, HEADER)") as copy:
        out["copy_csv"] = b"".join(copy).decode()
    with cur.copy("COPY c TO STDOUT") as copy:
        out["copy_text_lines"] = sorted(b"".join(copy).decode().splitlines())
    with cur.copy("COPY (SELECT id, note FROM c ORDER BY id) TO STDOUT (FORMAT binary)") as copy:
        copy.set_types(["int4", "text"])
        out["copy_binary"] = [list(r) for r in copy.rows()]

# Server-side cursors: DECLARE, FETCH in rounds, WITH HOLD, MOVE (scroll).
with psycopg.connect(dsn) as conn:
    with conn.cursor(name="cells_cursor") as cur:
        cur.itersize = 2
        cur.execute("SELECT id, note FROM c WHERE id > %s ORDER BY id", (1,))
        out["server_cursor"] = [list(r) for r in cur]
    conn.commit()
    with conn.cursor(name="held", withhold=True, scrollable=True) as cur:
        cur.execute("SELECT id FROM c ORDER BY id")
        conn.commit()
        first = cur.fetchone()[0]
        cur.scroll(2)
        after_scroll = cur.fetchone()[0]
        cur.scroll(1, mode="absolute")
        out["held_cursor"] = [first, after_scroll, cur.fetchone()[0], cur.fetchall()]
    conn.commit()
    conn.execute("DEALLOCATE ALL")

# Autocommit off (psycopg's default): a transaction each, ROLLBACK undoes.
with psycopg.connect(dsn) as conn:
    conn.execute("INSERT INTO t VALUES (%s, %s, %s)", (20, 20, "gone"))
    conn.rollback()
    conn.execute("INSERT INTO t VALUES (%s, %s, %s)", (21, 21, "kept"))
    conn.commit()
    try:
        conn.execute("INSERT INTO t VALUES (%s, %s, %s)", (21, 21, "again"))
    except psycopg.Error as e:
        out["duplicate"] = e.sqlstate
    try:
        conn.execute("SELECT 1")
    except psycopg.Error as e:
        out["in_failed_block"] = e.sqlstate
    conn.rollback()
    with conn.transaction():
        conn.execute("INSERT INTO t VALUES (22, 22, 'block')")
        try:
            with conn.transaction():
                conn.execute("INSERT INTO t VALUES (23, 23, 'nested')")
                raise RuntimeError("undo the savepoint")
        except RuntimeError:
            pass
    conn.commit()
    out["names"] = [r[0] for r in conn.execute("SELECT name FROM t WHERE id >= 20 ORDER BY id").fetchall()]

print(json.dumps(out))

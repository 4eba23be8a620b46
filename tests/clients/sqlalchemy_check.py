"""SQLAlchemy 2 and pandas against Sluice, as analysts use them, with both
Postgres drivers (psycopg 3 and psycopg2): connect, reflect the catalog
(inspect, autoload), read a view into a DataFrame, write a DataFrame into
an ordinary table. Prints one JSON document per driver, which the Rust
test compares with what Postgres answers."""
import json
import sys

import pandas as pd
import sqlalchemy as sa

port = int(sys.argv[1])
out = {}
for driver in ["psycopg", "psycopg2"]:
    got = {}
    engine = sa.create_engine(f"postgresql+{driver}://sluice@127.0.0.1:{port}/sluice")
    with engine.connect() as conn:
        got["version"] = conn.execute(sa.text("select version()")).scalar().startswith("PostgreSQL 15")
        raw = conn.connection.dbapi_connection
        got["tls"] = raw.pgconn.ssl_in_use if driver == "psycopg" else bool(raw.info.ssl_in_use)
        got["one"] = conn.execute(sa.text("select 1")).scalar()
    insp = sa.inspect(engine)
    got["schemas"] = sorted(s for s in insp.get_schema_names() if s in ("public", "sluice"))
    got["tables"] = sorted(insp.get_table_names())
    got["views"] = sorted(insp.get_view_names())
    got["materialized_views"] = sorted(insp.get_materialized_view_names())
    got["columns"] = [
        [c["name"], str(c["type"]), c["nullable"]] for c in insp.get_columns("kpi")
    ]
    got["cells_pk"] = insp.get_pk_constraint("cells")["constrained_columns"]
    got["cells_indexes"] = insp.get_indexes("cells")
    got["view_definition"] = "COUNT(*)" in (insp.get_view_definition("kpi") or "")
    table = sa.Table("kpi", sa.MetaData(), autoload_with=engine)
    got["autoload"] = [c.name for c in table.columns]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.cell_id, table.c.calls).order_by(table.c.cell_id, table.c.calls)).fetchall()
        got["select"] = [[r[0], r[1]] for r in rows][:3]
    df = pd.read_sql("SELECT cell_id, calls FROM kpi ORDER BY cell_id, calls", engine)
    got["read_sql"] = [list(df.columns), len(df), str(df["calls"].dtype)]
    df = pd.read_sql_table("kpi", engine)
    got["read_sql_table"] = sorted(df.columns.tolist())
    # A DataFrame into an ordinary table (made first, with its key).
    name = f"scores_{driver}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (cell_id TEXT PRIMARY KEY, score DOUBLE PRECISION)"))
    frame = pd.DataFrame({"cell_id": ["a", "b", "c"], "score": [1.5, 2.5, 3.5]})
    written = frame.to_sql(name, engine, if_exists="append", index=False)
    back = pd.read_sql(f"SELECT * FROM {name} ORDER BY cell_id", engine)
    got["to_sql"] = [written, back.to_dict(orient="list")]
    out[driver] = got
print(json.dumps(out))

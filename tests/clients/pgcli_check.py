"""pgcli against Sluice, as it runs: the catalog queries it sends at start
to learn names for completion (search path, schemas, tables, views,
columns, functions, types), the completions it then offers, and its
backslash commands (pgspecial's \\dt, \\dm, \\dv, \\df, \\d+). Connects with
the password and TLS from libpq's environment. Prints one JSON document."""
import json
import os
import sys

from pgcli.pgcompleter import PGCompleter
from pgcli.pgexecute import PGExecute
from pgspecial.main import PGSpecial
from prompt_toolkit.document import Document

port = sys.argv[1]
ex = PGExecute(
    database="sluice",
    user="sluice",
    password=os.environ.get("PGPASSWORD"),
    host="127.0.0.1",
    port=port,
    dsn=None,
    sslmode=os.environ.get("PGSSLMODE"),
    sslrootcert=os.environ.get("PGSSLROOTCERT"),
)
out = {"search_path": ex.search_path()}
# What pgcli's completion refresher reads.
completer = PGCompleter(smart_completion=True, pgspecial=PGSpecial())
completer.set_search_path(ex.search_path())
completer.extend_schemata(ex.schemata())
completer.extend_relations(ex.tables(), kind="tables")
completer.extend_columns(ex.table_columns(), kind="tables")
completer.extend_relations(ex.views(), kind="views")
completer.extend_columns(ex.view_columns(), kind="views")
completer.extend_functions(ex.functions())
completer.extend_datatypes(ex.datatypes())
out["tables"] = sorted(t for s, t in ex.tables() if s == "public")
out["views"] = sorted(v for s, v in ex.views() if s == "public")


def complete(text):
    return sorted(c.text for c in completer.get_completions(Document(text), None))


out["complete_relation"] = [c for c in complete("SELECT * FROM c") if c in ("calls", "cells")]
out["complete_view"] = [c for c in complete("SELECT * FROM kp") if c == "kpi"]
out["complete_column"] = [c for c in complete("SELECT * FROM cells WHERE capa") if c == "capacity"]

special = PGSpecial()
for command in ["\\dt", "\\dm", "\\dv", "\\df", "\\d+ cells", "\\d kpi"]:
    rows = []
    for result in ex.run(command, pgspecial=special):
        cur = result[1]
        rows.extend([list(map(str, r))[:3] for r in (cur or [])])
    out[command] = rows
print(json.dumps(out))

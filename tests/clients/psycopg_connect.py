"""Connects with psycopg 3 using the libpq connection string given, and
prints the user the server says the session runs as."""
import sys

import psycopg

with psycopg.connect(sys.argv[1], connect_timeout=10) as conn:
    print(conn.execute("SELECT current_user").fetchone()[0])

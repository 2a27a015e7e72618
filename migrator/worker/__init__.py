"""Code that runs INSIDE a version environment.

Imports only the standard library, psycopg and langgraph (and what langgraph
itself brings, such as langchain-core and pydantic), and must run on every
supported langgraph from 0.2 to the newest. The host talks to it with
``python -m migrator.worker OP``: one JSON request on stdin, one JSON response
on stdout. Op ``X`` lives in module ``migrator.worker.op_X`` as ``run(request)``.
"""

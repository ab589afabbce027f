"""`detector bench`: measure the pipeline against its limits on this machine.

Generates its own videos, uses the configured model (seeded random weights by
default, so it runs offline), and runs the real service: the API under gunicorn,
a processor worker and one detector worker, on embedded defaults in a scratch
directory. Every figure in the report is measured in the same run. A benchmark
reports; it never fails because a number is low.

- `options`: the options, declared once (the command line is made from them).
- `figures`: one function per measured figure.
- `service`: the service's processes and a client of its API.
- `load`: the API load, with wrk or a Python client.
- `report`: the report, the targets, the table and the plot.
- `run`: `run_bench`, every figure in turn.

This package's own module imports nothing, so that the command line can read
the options without loading the model's libraries.
"""

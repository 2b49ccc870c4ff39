"""Static analysis of a notebook: what each cell reads and writes, and what the package
will be, without running any code.

The flow inside: ``parsing`` (cells to Python, magics stripped) → ``scopes`` (what a
cell binds, reads and mutates) → ``facts`` (per cell) → ``resolution`` (which cell
provides each name) → ``prediction`` (the inference entry point and the artifacts) →
``analyzer`` (the one ``analyze()`` every command calls, with its problems and
advice); ``naming`` picks the package name. A layer of its own, below every stage,
because ``check``, ``run``, ``extract`` and the front ends all read the same analysis.
"""

"""Publishing a run's package: the flow (``flow``: extract, build, test in a clean venv,
upload), the target registry (``targets``, with the ``nbprod.publish_targets`` entry
point group) and the built-in package-index target (``index``). The steps and errors
every target shares live in ``steps``, so that the registry and the targets it lists
do not import each other.

A workflow: it drives the extract stage and is driven by the front ends and jobs.
"""

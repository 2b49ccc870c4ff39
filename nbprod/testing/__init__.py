"""Testing notebooks as code: finding them (``discover``), taking each through check,
run and parity (``nbtest``, shared by ``nbprod test`` and the pytest plugin), and
writing a project's CI and pre-commit configuration (``ci`` with ``ci_templates/``).

A workflow over the stages. The pytest plugin itself is a front end and stays at
``nbprod.pytest_plugin``, the module path its entry point has always had.
"""

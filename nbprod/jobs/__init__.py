"""Background jobs for the server and the widgets: a sweep or a publish running in its
own process, followed by file (``model``: the job and its JSON; ``manager``: start,
follow, cancel; ``progress``: reading what the job's process wrote; ``processes``:
whether a job's process tree is still alive).

A workflow over the stages: jobs start ``nbprod`` commands and read the run store.
"""

"""The pilot agent: pulls points from the service and evaluates them on this machine (docs/pilot.md).

Modules, one concept each:

* ``command``: ``hposteer pilot`` options (``add_arguments``) and entry point (``run``);
* ``agent``: registration, one loop per slot (acquire, evaluate, complete), signals, idle exit;
* ``evaluation``: one attempt: working directory, payload environment, supervision, report;
* ``lease``: heartbeats in a thread of their own (kill / lease lost);
* ``workdir``: the sandbox cache and fresh working directories;
* ``extract`` (+ ``archive_check``, ``archive_errors``): the safe sandbox extractor;
* ``runtimes``: the runtime protocol (``runtimes.base``), one module per runtime (``local``: no isolation;
  ``docker``, ``podman``, ``apptainer``) and the table by name (``runtimes.registry``);
* ``output``: output.json rules and failure classes;
* ``slots``: ``--workers`` / ``--slots`` specs; ``placeholders``: unfilled %RNDM / %SEGMENT_NAME;
* ``logs``: timestamped log lines.
"""

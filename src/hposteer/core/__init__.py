"""Pure code that both the service and the client need: search spaces and their validation
(searchspace, space_json, dimensions, continuous), the checks of a submission that need no
database (submission_checks), --architecture requirements, evaluationExec placeholders, and
the line format of a payload's intermediate reports (intermediate_reports), which the pilot
reads and the service checks.

Standard library only (an import-linter contract in pyproject.toml): no hposteer.service,
no hposteer.client, no third-party package, so `phpo` checks what the server checks with
the same code.
"""

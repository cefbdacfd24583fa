"""The service side of a task's own steering container (docs/containers.md, docs/steering.md).

``runner`` runs one steering run (one-shot ``docker run``, or ``docker exec`` in a warm
container for images labelled ``io.hposteer.steering-server``); ``warm_pool`` keeps those warm
containers, one per segment; ``engine`` holds what both share: the hardening, the Docker client
and the output tails. The docker package is imported only inside functions.
"""

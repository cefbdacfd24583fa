"""The web UI's read models (read-only use cases), each cached under its task's signature.

* ``cache``: the cache, the task a read is for (``open_task``, 404 for another user's) and ``cached_read``;
* ``tasks``: the task list and a task's overview; ``pilots``: the pilots seen lately and their sites;
* ``charts``: history, parallel coordinates, importance and steering runs, downsampled in the service;
* ``points``: the points table (paged, sorted, filtered) and a point's page;
* ``views``: task views from the segments' point counters (the task list and overview use them).
"""

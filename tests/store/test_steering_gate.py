"""The steering gate on both backends: one holder per segment across processes and within one,
and the lock goes with a killed holder at once (docs/operator.md, "Replicas")."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from hposteer.service.operations.context import Services
from hposteer.service.store.database import Database
from hposteer.service.store.steering_gate import gate_for

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from hposteer.service.store.database import Database
    from hposteer.service.store.steering_gate import gate_for
    db = Database(sys.argv[1])
    with gate_for(db.engine, Path(sys.argv[2])).hold(int(sys.argv[3])) as held:
        print("held" if held else "refused", flush=True)
        time.sleep(60)
    """
)


def holder(services: Services, segment_id: int) -> subprocess.Popen[str]:
    """Another process holding the segment (as another replica's steering run)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, services.settings.resolved_database_url, str(services.settings.data_dir),
         str(segment_id)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_one_holder_per_segment_across_processes_and_killed_holders_release(backend_services: Services) -> None:
    gate = backend_services.steering_gate
    other = holder(backend_services, 5)
    try:
        with gate.hold(5) as held_5, gate.hold(6) as held_6:
            assert not held_5, "another process steers segment 5"
            assert held_6, "segment 6 is free"
        other.kill()  # SIGKILL mid-run: the server (advisory lock) or the kernel (record lock) drops it
        other.wait(10)
        with gate.hold(5) as held:
            assert held, "the killed holder's lock went with it"
    finally:
        other.kill()
        other.wait(10)


def test_one_holder_per_segment_within_a_process(backend_services: Services, tmp_path: Path) -> None:
    gate = backend_services.steering_gate
    second = Database(backend_services.settings.resolved_database_url)
    try:
        twin = gate_for(second.engine, backend_services.settings.data_dir)  # a second service in this process
        with gate.hold(7) as first:
            with gate.hold(7) as again, twin.hold(7) as twin_held:
                assert first and not again and not twin_held
        with twin.hold(7) as released:
            assert released
    finally:
        second.dispose()

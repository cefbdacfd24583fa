"""TPE really optimises; processes that used nevergrad exit once the optimisers are closed."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import textwrap

import pytest

from hposteer.core.searchspace import Params
from hposteer.core.space_json import parse_search_space
from hposteer.service.core.optimizer_spec import parse_optimizer_name
from hposteer.service.core.steering import Observation
from hposteer.service.steering.optimizers.warm import WarmRunner
from tests.steering.helpers import drive

BOWL_SPACE = parse_search_space(
    {
        "x": {"method": "uniform", "dimension": {"low": -10, "high": 10}},
        "y": {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1}},
        "k": {"method": "categorical", "dimension": {"categories": ["a", "b", "c"]}},
    }
)


def bowl(params: Params) -> float:
    """Minimum 0 at x = 3, y = 0.01, k = "b"."""
    x, y = float(params["x"]), float(params["y"])
    return (x - 3) ** 2 + (math.log10(y) + 2) ** 2 + (0.0 if params["k"] == "b" else 4.0)


def best_losses(optimizer: str) -> list[float]:
    out = []
    for seed in range(1, 6):
        runner = WarmRunner()
        try:
            history = drive(
                runner, parse_optimizer_name(optimizer), BOWL_SPACE, rounds=20, batch=2, seed=seed, loss=bowl
            )
        finally:
            runner.close()
        out.append(min(o.loss for o in history if o.loss is not None))
    return out


def test_tpe_beats_random_search_on_a_quadratic() -> None:
    """40 points, 5 seeds: seeded, so the outcome is fixed; the margin (about 10x here) is wide."""
    tpe, rand = statistics.median(best_losses("tpe")), statistics.median(best_losses("random"))
    assert tpe < 0.3 * rand, (tpe, rand)


def _python(script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=timeout, check=False
    )


SEQUENTIAL_IN_ADAPTER = """
    import threading
    import time
    import nevergrad as ng
    from hposteer.core.space_json import parse_search_space
    from hposteer.service.steering.optimizers.base import SpaceCodec
    from hposteer.service.steering.optimizers.nevergrad_adapter import NevergradOptimizer

    space = parse_search_space({"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}},
                                "y": {"method": "uniform", "dimension": {"low": 0, "high": 1}}})
    codec = SpaceCodec(space)
    adapter = NevergradOptimizer(codec, method="NGOpt", seed=1, budget=20, parallelism=1)
    # Cobyla runs scipy in a non-daemon thread from its first ask; it is refused for tasks
    # (it would block on a batch), so it is put in the adapter by hand to test close().
    adapter._opt = ng.optimizers.registry["Cobyla"](parametrization=adapter._opt.parametrization.spawn_child(),
                                                   budget=20, num_workers=1)
    (s,) = adapter.ask(1)
    adapter.tell(s.handle, s.params["x"])
    assert threading.active_count() > 1, "Cobyla's thread runs"
    CLOSE
    print("done", threading.active_count())
"""

CLOSE_AND_WAIT = """adapter.close()
    for _ in range(500):  # the thread ends soon after the optimiser is dropped, not at once
        if threading.active_count() == 1:
            break
        time.sleep(0.01)"""


def test_closing_a_thread_holding_nevergrad_optimizer_lets_the_process_exit() -> None:
    closed = _python(SEQUENTIAL_IN_ADAPTER.replace("CLOSE", CLOSE_AND_WAIT), timeout=60)
    assert closed.returncode == 0, closed.stderr
    assert closed.stdout.split() == ["done", "1"], "no thread left after close()"


def test_without_close_the_same_process_hangs_at_exit() -> None:
    """The control: proves the test above would catch a close() that does not release the thread.

    It waits for the script to finish its work (imports take seconds on a loaded machine), then
    checks that the process is still there 3 s later, stuck at exit."""
    script = textwrap.dedent(SEQUENTIAL_IN_ADAPTER.replace("CLOSE", "pass"))
    process = subprocess.Popen([sys.executable, "-u", "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the script printed (or died)
        assert line.startswith("done"), f"the script itself did not finish: {line!r}, exit {process.poll()}"
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(3)
    finally:
        process.kill()
        process.wait()


def test_a_process_steering_with_nevergrad_exits() -> None:
    script = """
        import threading
        from hposteer.service.core.optimizer_spec import parse_optimizer_name
        from hposteer.core.space_json import parse_search_space
        from hposteer.service.core.steering import Observation
        from hposteer.service.steering.optimizers.warm import WarmRunner

        space = parse_search_space({"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}},
                                    "n": {"method": "normal", "dimension": {"mu": 0, "sigma": 1}}})
        runner = WarmRunner()
        for key, name in enumerate(["nevergrad", "nevergrad:CMA", "nevergrad:PSO"]):
            spec, history = parse_optimizer_name(name), []
            for _ in range(5):
                for p in runner.run(key=key, spec=spec, space=space, history=history, n=2, seed=1, budget=10,
                                    parallelism=1):
                    history.append(Observation(len(history) + 1, p, p["x"] + abs(p["n"])))
        runner.close()
        print("done", threading.active_count())
    """
    result = _python(script, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["done", "1"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("budget", [10, 30, 100])
def test_ngopt_serves_batches_and_failures_with_one_worker(budget: int) -> None:
    """With num_workers=1 NGOpt picks a sequential wrapper for small budgets (Cobyla...), whose
    second ask before a tell blocks forever: a batch of 3, or a failed point never told, hung
    the steering run. The adapter asks nevergrad for at least 2 workers."""
    space = parse_search_space({f"x{i}": {"method": "uniform", "dimension": {"low": 0, "high": 1}} for i in range(3)})
    spec = parse_optimizer_name("nevergrad")
    runner = WarmRunner()
    history: list[Observation] = []
    try:
        for _ in range(4):
            params = runner.run(
                key=1, spec=spec, space=space, history=history, n=3, seed=2, budget=budget, parallelism=1
            )
            for p in params:
                failed = p["x0"] > 0.7
                history.append(Observation(len(history) + 1, p, 1e5 if failed else p["x1"], failed))
    finally:
        runner.close()
    assert len(history) == 12

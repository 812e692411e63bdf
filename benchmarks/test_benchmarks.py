"""mlu's C++ core vs the NumPy reference vs PyTorch, on the same data, float64, 2 threads.

Run (not part of the test suite):  python -m pytest benchmarks --benchmark-only
Table with speedups and GFLOP/s:   python benchmarks/report.py

Before a case is timed, ``suite.verified`` runs all its implementations once and asserts
that they agree (relative difference <= 1e-8); ``agreement`` does the same for every
operation on a tiny problem before the first benchmark of the session.
"""

import pytest
import suite


@pytest.fixture(scope="session", autouse=True)
def agreement():
    """All implementations agree on every operation (tiny problem) before anything is timed."""
    return suite.verify_tiny()


CASES = list(suite.all_cases())


@pytest.mark.parametrize("op,size,impl", CASES, ids=["-".join(case) for case in CASES])
def test_benchmark(benchmark, op, size, impl):
    reason = suite.skip_reason(suite.OPS[op], size, impl)
    if reason:
        pytest.skip(reason)
    checked = suite.verified(op, size)  # asserts agreement at this size first
    if impl in checked.skipped:
        pytest.skip(checked.skipped[impl])
    fn = checked.runners[impl]
    benchmark.group = f"{op} {suite.SIZES[size].label}"
    benchmark.extra_info.update(impl=impl, op=op, size=size, **checked.info)

    def run():
        fn()  # result dropped at once: no two n x p outputs alive together

    first = checked.first_time[impl]
    if first < 0.2:
        benchmark(run)  # calibrates (and so warms up) first
    else:
        # One untimed call below 1 s: the previous library's idle threads (the check ran all
        # three just before) spin for a while and would steal the cores from the first round.
        benchmark.pedantic(
            run,
            rounds=max(1, min(5, int(6.0 / first))),
            iterations=1,
            warmup_rounds=1 if first < 1.0 else 0,
        )

"""pytest-benchmark configuration: threads pinned before anything runs (see suite.py)."""

import suite

suite.configure_threads()

"""Test-session settings shared by every test.

``echokdm.cli.main`` lowers torch's thread count and says so in one line on stderr when the machine
is busy (echokdm/runtime.py). Whether CI's machine is busy is chance, so a test that reads stderr
would see that line on a loaded machine only. The test session therefore fixes the thread count the
way a user does (``OMP_NUM_THREADS``), unless the caller already chose one; tests of the busy-machine
rule itself (tests/reliability/test_threads.py) pass their own environment.
"""

import os

from echokdm.runtime import available_cores

os.environ.setdefault("OMP_NUM_THREADS", str(available_cores()))

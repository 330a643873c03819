"""The KDM core holds no echo-specific name: it reaches the domain only through an adapter.

The LV segmentation network and OF-net (``models/segmentation.py``, ``training/segmentation.py``,
``models/ofnet.py``, ``training/flow.py``) are echo tools beside the KDM core and are not checked
here (see docs/adapters.md).
"""

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "echokdm"
CORE = ["models/kdm.py", "pipelines/__init__.py", "pipelines/kdm.py", "training/kdm.py", "training/loop.py",
        "training/run.py", "training/losses.py", "training/distributed.py"]
# "echo" not followed by "kdm" (the package's own name), LV as a word, ventricle, phantom
ECHO_NAMES = re.compile(r"echo(?!kdm)|(?<![a-z])lv(?![a-z])|ventric|phantom", re.IGNORECASE)


@pytest.mark.parametrize("name", CORE)
def test_core_file_has_no_echo_specific_names(name):
    lines = (PACKAGE / name).read_text().splitlines()
    found = [f"{name}:{i}: {line.strip()}" for i, line in enumerate(lines, 1) if ECHO_NAMES.search(line)]
    assert not found, "echo-specific names in the KDM core:\n" + "\n".join(found)


def test_the_pattern_catches_echo_names_and_spares_the_package_name():
    assert ECHO_NAMES.search("adapter: str = 'echo'") and ECHO_NAMES.search("the LV wall")
    assert ECHO_NAMES.search("phantom_truth") and not ECHO_NAMES.search("from echokdm.models import x; solve")

"""The KDM core holds no echo-specific name: it reaches the domain only through an adapter.

Every ``.py`` file under ``echokdm/models``, ``echokdm/pipelines`` and ``echokdm/training`` is
checked (issue #9). Echo-specific tools live beside the core: the LV segmentation network in
``echokdm/echo/``, the ground-truth files of synthetic cohorts in ``echokdm/data/ground_truth.py``,
the echo transforms in ``echokdm/transforms`` (see docs/adapters.md).
"""

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "echokdm"
CORE_DIRS = ("models", "pipelines", "training")
CORE = sorted(str(path.relative_to(PACKAGE)) for folder in CORE_DIRS for path in (PACKAGE / folder).rglob("*.py"))
# "echo" not followed by "kdm" (the package's own name), LV as a word, ventricle, phantom
ECHO_NAMES = re.compile(r"echo(?!kdm)|(?<![a-z])lv(?![a-z])|ventric|phantom", re.IGNORECASE)


def test_the_core_file_list_is_complete():
    assert {"models/kdm.py", "models/ofnet.py", "pipelines/kdm.py", "training/flow.py", "training/kdm.py"} <= set(CORE)
    assert all(name.endswith(".py") for name in CORE)


@pytest.mark.parametrize("name", CORE)
def test_core_file_has_no_echo_specific_names(name):
    lines = (PACKAGE / name).read_text().splitlines()
    found = [f"{name}:{i}: {line.strip()}" for i, line in enumerate(lines, 1) if ECHO_NAMES.search(line)]
    assert not found, "echo-specific names in the KDM core:\n" + "\n".join(found)


def test_the_pattern_catches_echo_names_and_spares_the_package_name():
    assert ECHO_NAMES.search("adapter: str = 'echo'") and ECHO_NAMES.search("the LV wall")
    assert ECHO_NAMES.search("phantom_truth") and not ECHO_NAMES.search("from echokdm.models import x; solve")
    assert ECHO_NAMES.search("from echokdm.echo.segmentation import LVSegmentationNet")

import dataclasses

import pytest

from echokdm.config import ConfigError, config_to_dict, load_config, save_config


@dataclasses.dataclass
class Inner:
    channels: tuple[int, ...] = (4, 8)
    kind: str = "unet"
    dropout: float = 0.0


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    steps: int = 10
    resume: bool = False
    limit: int | None = None


def test_defaults_file_and_overrides(tmp_path):
    assert load_config(None, Outer) == Outer()
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  channels: [8, 16, 32]\nsteps: 5\nlimit: null\n")
    cfg = load_config(path, Outer, overrides={"inner": {"dropout": 0.1}})
    assert cfg.inner.channels == (8, 16, 32) and cfg.steps == 5 and cfg.inner.dropout == 0.1
    assert cfg.inner.kind == "unet" and cfg.limit is None
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml", Outer) == cfg
    assert config_to_dict(cfg)["inner"]["channels"] == [8, 16, 32]


@pytest.mark.parametrize(
    "text, message",
    [
        ("stpes: 5\n", "unknown key 'stpes' (did you mean 'steps'?)"),
        ("inner:\n  chanels: [1]\n", "unknown key 'inner.chanels' (did you mean 'channels'?)"),
        ("steps: 2.5\n", "steps must be a whole number"),
        ("steps: ten\n", "steps must be a number"),
        ("resume: 1\n", "resume must be true or false"),
        ("inner: 3\n", "inner must be a mapping"),
        ("- a\n- b\n", "must be a mapping of keys"),
        ("steps: [\n", "not valid YAML"),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, Outer)
    assert message in str(err.value) and "bad.yaml" in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml", Outer)


def test_shipped_configs_are_valid():
    from pathlib import Path

    from echokdm.echo.segmentation_training import SegConfig

    root = Path(__file__).resolve().parents[1] / "configs" / "echo"
    assert load_config(root / "seg.yaml", SegConfig) == SegConfig()  # the file documents the defaults


def test_shipped_kdm_configs_are_valid():
    from pathlib import Path

    from echokdm.training.kdm import load_kdm_config

    root = Path(__file__).resolve().parents[1] / "configs" / "echo"
    small, paper = load_kdm_config(root / "kdm_112.yaml"), load_kdm_config(root / "kdm_224_paper.yaml")
    assert small.data.size == 112 and paper.data.size == 224
    assert small.sampling.num_inference_steps == 200 and small.sampling.k == 100
    assert paper.k2f.train.mixed_precision == "bf16" and paper.data.flows == "cache"


def test_partial_sections_override_the_enclosing_defaults():
    @dataclasses.dataclass
    class Train:
        steps: int = 1
        lr: float = 0.1

    @dataclasses.dataclass
    class Stage:
        train: Train = dataclasses.field(default_factory=lambda: Train(steps=500, lr=0.01))

    @dataclasses.dataclass
    class Top:
        stage: Stage = dataclasses.field(default_factory=Stage)

    cfg = load_config({"stage": {"train": {"steps": 7}}}, Top)
    assert cfg.stage.train == Train(steps=7, lr=0.01)  # lr from Stage's default, not Train's
    assert load_config(None, Top).stage.train == Train(steps=500, lr=0.01)

# SPDX-License-Identifier: GPL-3.0-or-later
"""TOML configs -> dataclasses: values, overrides, and errors that name the file and the dotted key."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from kmm_core.common.errors import ConfigError
from kmm_core.model.configs import AlignerConfig, GeneratorConfig, TokenizerConfig
from kmm_core.training.config import (
    STAGES,
    ProjectConfig,
    TrainStageConfig,
    config_from_dict,
    config_to_dict,
    load_config,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

SMALL_TOML = """
[data]
root = "prepared/humanml3d"
max_frames = 120

[tokenizer]
width = 64

[tokenizer.quantizer]
num_quantizers = 2
codebook_size = 128

[generator]
d_model = 64
backbone = "transformer"

[train.tokenizer]
steps = 200
lr = 1          # an integer where a float is expected is fine
betas = [0.9, 0.95]
amp = "bf16"

[train.generator]
batch_size = 16
"""


def write(tmp_path: Path, text: str, name: str = "small.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_project_file_becomes_nested_dataclasses(tmp_path):
    config = load_config(write(tmp_path, SMALL_TOML), ProjectConfig)
    assert config.data.root == "prepared/humanml3d" and config.data.max_frames == 120
    assert isinstance(config.tokenizer, TokenizerConfig) and config.tokenizer.width == 64
    assert config.tokenizer.quantizer.num_quantizers == 2 and config.tokenizer.quantizer.codebook_size == 128
    assert isinstance(config.generator, GeneratorConfig) and config.generator.backbone == "transformer"
    stage = config.train.tokenizer
    assert (stage.steps, stage.lr, stage.betas, stage.amp) == (200, 1.0, (0.9, 0.95), "bf16")
    assert isinstance(stage.lr, float)
    assert config.train.generator.batch_size == 16
    assert config.train.aligner == TrainStageConfig()  # absent tables take the defaults
    assert {f.name for f in dataclasses.fields(config.train)} == set(STAGES)


def test_round_trip_through_json(tmp_path):
    config = load_config(write(tmp_path, SMALL_TOML), ProjectConfig)
    again = config_from_dict(ProjectConfig, json.loads(json.dumps(config_to_dict(config))))
    assert again == config


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[train.tokenizer]\nstpes = 10\n",
            "small.toml: [train.tokenizer] unknown key 'stpes' (did you mean 'steps'?)",
        ),
        ("[train.tokenzier]\nsteps = 10\n", "small.toml: [train] unknown key 'tokenzier' (did you mean 'tokenizer'?)"),
        ("[trian]\n", "small.toml: unknown key 'trian' (did you mean 'train'?)"),
        (
            '[train.tokenizer]\nlr = "fast"\n',
            "small.toml: [train.tokenizer] key 'lr' must be a number, got string 'fast'",
        ),
        (
            "[train.tokenizer]\nsteps = 1.5\n",
            "small.toml: [train.tokenizer] key 'steps' must be an integer, got number 1.5",
        ),
        (
            "[train.tokenizer]\nsteps = true\n",
            "small.toml: [train.tokenizer] key 'steps' must be an integer, got boolean True",
        ),
        ("[train.tokenizer]\nsteps = 0\n", "small.toml: [train.tokenizer] key 'steps' must be >= 1, got 0"),
        (
            '[train.generator]\namp = "fp8"\n',
            "small.toml: [train.generator] key 'amp' must be one of 'none', 'bf16', 'fp16', got string 'fp8'",
        ),
        ("[train.aligner]\nbetas = [0.9]\n", "small.toml: [train.aligner] key 'betas' must have 2 items, got 1"),
        (
            '[train.aligner]\nbetas = [0.9, "x"]\n',
            "small.toml: [train.aligner] key 'betas[1]' must be a number, got string 'x'",
        ),
        ("[train.tokenizer]\nlr = inf\n", "small.toml: [train.tokenizer] key 'lr' must be a finite number, got inf"),
        ("[decoder]\nbob_weight = nan\n", "small.toml: [decoder] key 'bob_weight' must be a finite number, got nan"),
        ("[train.aligner]\nbetas = [0.9, -inf]\n",
         "small.toml: [train.aligner] key 'betas[1]' must be a finite number, got -inf"),
        ("train = 3\n", "small.toml: key 'train' must be a table, got integer 3"),
        ("[tokenizer.quantizer]\nema_decay = 2.0\n", "small.toml: [tokenizer.quantizer] ema_decay: must be in [0, 1)"),
        (
            "[data]\nmin_frames = 50\nmax_frames = 40\n",
            "small.toml: [data] key 'max_frames' must be >= min_frames (50), got 40",
        ),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path, toml, message):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, toml), ProjectConfig)
    assert str(caught.value) == str(tmp_path / "small.toml").removesuffix("small.toml") + message


def test_error_carries_the_dotted_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, '[train.evaluator]\nweight_decay = "lots"\n'), ProjectConfig)
    assert caught.value.key == "train.evaluator.weight_decay"


def test_overrides_are_parsed_and_checked_like_the_file(tmp_path):
    path = write(tmp_path, SMALL_TOML)
    config = load_config(
        path,
        ProjectConfig,
        overrides=[
            "train.tokenizer.steps=10",
            "train.aligner.lr=1e-3",
            "train.tokenizer.betas=[0.5, 0.6]",
            "data.root=/data/my motions",  # a bare word is a string
            "tokenizer.quantizer.num_quantizers=3",
            "generator.dropout=0",
            "evaluator.embed_dim=128",
        ],
    )
    assert config.evaluator == AlignerConfig(embed_dim=128)
    assert config.train.tokenizer.steps == 10 and config.train.tokenizer.lr == 1.0
    assert config.train.aligner.lr == 1e-3 and config.train.tokenizer.betas == (0.5, 0.6)
    assert config.data.root == "/data/my motions"
    assert config.tokenizer.quantizer.num_quantizers == 3 and config.tokenizer.width == 64
    assert config.generator.dropout == 0.0

    with pytest.raises(
        ConfigError,
        match=r"^--set train\.tokenizer\.stpes=3: \[train\.tokenizer\] unknown key 'stpes' \(did you mean 'steps'\?\)$",
    ):
        load_config(path, ProjectConfig, overrides=["train.tokenizer.stpes=3"])
    with pytest.raises(
        ConfigError, match=r"^--set train\.tokenizer\.steps=many: \[train\.tokenizer\] key 'steps' must be an integer"
    ):
        load_config(path, ProjectConfig, overrides=["train.tokenizer.steps=many"])
    with pytest.raises(ConfigError, match=r"expected key=value"):
        load_config(path, ProjectConfig, overrides=["train.tokenizer.steps"])
    with pytest.raises(ConfigError, match=r"\[train\.tokenizer\.steps\] is a value, not a table"):
        load_config(path, ProjectConfig, overrides=["train.tokenizer.steps.x=1"])


@dataclasses.dataclass
class Inner:
    name: str
    weights: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class AnySchema:
    """The loader is generic: any dataclass plugs in (here with required keys, optionals, dicts and paths)."""

    inner: Inner
    folder: Path = Path(".")
    limit: int | None = None
    mode: Literal["a", "b"] = "a"
    table: dict[str, int] = dataclasses.field(default_factory=dict)


def test_any_dataclass_schema(tmp_path):
    text = 'folder = "out"\nlimit = 4\n[inner]\nname = "x"\nweights = [1, 2.5]\n[table]\nk = 3\n'
    config = load_config(write(tmp_path, text, "custom.toml"), AnySchema)
    assert config == AnySchema(Inner("x", [1.0, 2.5]), Path("out"), 4, "a", {"k": 3})
    with pytest.raises(ConfigError, match=r"custom\.toml: missing required key 'inner'"):
        load_config(write(tmp_path, "limit = 4\n", "custom.toml"), AnySchema)
    with pytest.raises(ConfigError, match=r"custom\.toml: \[inner\] missing required key 'name'"):
        load_config(write(tmp_path, "[inner]\n", "custom.toml"), AnySchema)
    with pytest.raises(ConfigError, match=r"custom\.toml: key 'limit' must be an integer, got string 'x'"):
        load_config(write(tmp_path, 'limit = "x"\n[inner]\nname = "x"\n', "custom.toml"), AnySchema)
    with pytest.raises(ConfigError, match=r"custom\.toml: key 'table\.k' must be an integer"):
        load_config(write(tmp_path, '[inner]\nname = "x"\n[table]\nk = "v"\n', "custom.toml"), AnySchema)


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.toml: config file not found"):
        load_config(tmp_path / "missing.toml", ProjectConfig)
    with pytest.raises(ConfigError, match=r"broken\.toml: invalid TOML: .*line 3"):
        load_config(write(tmp_path, "[data]\nroot = 'x'\nmax_frames = = 3\n", "broken.toml"), ProjectConfig)


def test_config_module_does_not_import_torch():
    code = "import sys, kmm_core.training.config; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)

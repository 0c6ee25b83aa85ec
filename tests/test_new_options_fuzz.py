# SPDX-License-Identifier: GPL-3.0-or-later
"""A fuzzing pass over the command-line options added in the last round (`kmm-train check-words`,
`average-generators`, `action-results`, `prepare --accad/--cmu-amc`, the scan's environment variables): each option
given an out-of-range, NaN, infinite, huge, empty or wrong-type value is refused with a message naming the option
and its value, as one error (no traceback), before any model loads or anything is written; no value makes a command
hold more than the documented bounds (check-words' MAX_SEEDS, MAX_PHRASINGS, MAX_GENERATIONS)."""

from __future__ import annotations

import pytest

from kmm_core.evaluation.word_checks import MAX_BATCH, MAX_PHRASINGS, MAX_SEEDS
from kmm_core.evaluation.word_checks import main as check_words_main
from kmm_core.training.cli import main as train_main
from kmm_core.training.prepare_command import main as prepare_main

BAD_NUMBERS = ("-1", "0", "nan", "inf", "-inf", "1e308", "99999999999999999999", "", "abc", "1.5")


def _run(main, argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of a command's main (argparse's own refusals exit 2 through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


# (option, its valid range as the command states it): integers and shares of check-words
CHECK_WORDS = {"--seeds": (1, MAX_SEEDS), "--phrasings": (1, MAX_PHRASINGS), "--batch-size": (1, MAX_BATCH),
               "--seconds": (1.0, 10.0), "--strong-rate": (0.0, 1.0), "--seed": (0, 2**32 - 1),
               "--threads": (1, 4096)}


def _valid(value: str, low: float, high: float, integer: bool) -> bool:
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        return False
    return low <= number <= high


def _shown(value: str) -> tuple[str, ...]:
    """How a message may show `value`: as typed, or as the number Python reads from it."""
    try:
        return (value, str(float(value)), str(int(value)) if value.lstrip("-").isdigit() else value)
    except ValueError:
        return (value,)


CHECK_WORDS_CASES = [(option, value) for option in sorted(CHECK_WORDS) for value in BAD_NUMBERS
                     if not _valid(value, *CHECK_WORDS[option], option not in ("--seconds", "--strong-rate"))]


@pytest.mark.parametrize(("option", "value"), CHECK_WORDS_CASES)
def test_check_words_options(option, value, tiny_bundle, capsys):
    code, err = _run(check_words_main, ["--checkpoint", str(tiny_bundle), f"{option}={value}", "--quiet"], capsys)
    assert code in (1, 2), (code, err)
    assert option in err and "Traceback" not in err, err
    assert any(shown in err for shown in _shown(value)) or value == "", err


@pytest.mark.parametrize("value", [v for v in BAD_NUMBERS if not _valid(v, 0.0, 0.999999, False)])
def test_average_generators_start_weight(value, tmp_path, capsys):
    code, err = _run(train_main, ["average-generators", "--runs", str(tmp_path / "a"), str(tmp_path / "b"),
                                  f"--start-weight={value}", "--out", str(tmp_path / "out")], capsys)
    assert code in (1, 2) and "--start-weight" in err and "Traceback" not in err, (code, err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("runs", [[], [""], ["/dev/null", "/dev/null"], ["/proc/self/fd/0"], ["\0bad"]])
def test_average_generators_runs(runs, tmp_path, capsys):
    code, err = _run(train_main, ["average-generators", "--runs", *runs, "--out", str(tmp_path / "out")], capsys)
    assert code in (1, 2) and "Traceback" not in err, (code, err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("results", ["", "/dev/zero", "/proc/self", "/nonexistent/actions.md"])
def test_action_results_paths(results, tiny_bundle, tmp_path, capsys):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    card = (bundle / "README.md").read_bytes()
    code, err = _run(train_main, ["action-results", "--bundle", str(bundle), "--results", results], capsys)
    assert code in (1, 2) and "Traceback" not in err, (code, err)
    assert (bundle / "README.md").read_bytes() == card


@pytest.mark.parametrize("source", ["--accad", "--cmu-amc"])
@pytest.mark.parametrize("folder", ["", "/dev/null", "/nonexistent", "/proc/self/fd"])
def test_prepare_named_take_folders(source, folder, tmp_path, capsys):
    code, err = _run(prepare_main, ["--out", str(tmp_path / "out"), source, folder, "--quiet", "--workers", "1"],
                     capsys)
    assert code in (1, 2) and "Traceback" not in err, (code, err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("joints", [[], "right_wrist", [1], [None], ["right_wrist", "right_wrist"], ["x" * 10_000],
                                    ["pelvis"] * 100_000, {"a": 1}, [["right_wrist"]]])
def test_a_partial_key_poses_joints_field(joints):
    """The worker request field added for partial key poses (`constraints[i].joints`): every malformed value is one
    TimelineError naming the constraint and the field, however long the list."""
    from kmm_core.generation.timeline import Timeline, TimelineError
    from kmm_core.motion.skeleton import rest_positions, tpose_offsets

    pose = {"type": "pose", "frame": 10, "positions": rest_positions(tpose_offsets()).tolist(), "joints": joints}
    with pytest.raises(TimelineError) as refused:
        Timeline.from_dict({"fps": 20, "segments": [{"prompt": "walk", "frames": 40}], "constraints": [pose]})
    assert "constraints[0].joints" in str(refused.value) and len(str(refused.value)) < 1000

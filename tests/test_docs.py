# SPDX-License-Identifier: GPL-3.0-or-later
"""The README and the user guide stay true: the README's two commands (and `.ci/run` running exactly the second),
every relative link and anchor resolving, every `kmm` example parsing with the real command line (the README's
command-line block run for real), no user-facing page naming an issue or a round, every guide page reachable from
the README, and the README's picture made by its committed script from the current default model."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from kmm_core import cli as kmm_cli
from kmm_core.training import cli as train_cli

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FIRST_COMMAND = ('python3.11 -m venv .venv && .venv/bin/pip install -e ".[dev]" && .venv/bin/kmm generate --timeline '
                 'examples/timeline.json --seed 0 -o demo.bvh --preview demo.gif')
SECOND_COMMAND = ".venv/bin/python -m pytest -q"
# Pages written for users: the README and docs/*.md (the architecture map is for developers and may name history).
USER_PAGES = [README] + sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "architecture.md")
# Pages of the guide (links and `kmm` examples checked): the user pages, the architecture map, training, changelog.
GUIDE_PAGES = sorted({*USER_PAGES, REPO / "docs" / "architecture.md", REPO / "training" / "README.md",
                      REPO / "CHANGELOG.md"})
# Generated data, not a page to read: written by tests/test_blender_retarget.py, its numbers shown in retargeting.md.
NOT_GUIDE_PAGES = {REPO / "docs" / "retargeting_table.md"}
PICTURE = REPO / "docs" / "images" / "character-timeline.gif"
PICTURE_SCRIPT = REPO / "docs" / "images" / "render_character_preview.py"

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FORBIDDEN = [
    (re.compile(r"\bissues?\s*#?\s*\d+", re.I), "an issue number"),
    (re.compile(r"\b(?:this|the) issue(?:'s)?\b(?!\s+(?:of|with|that|is|was)\b)", re.I), "the issue"),
    (re.compile(r"\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|\d+(?:st|nd|rd|th))"
                r"[- ]rounds?\b", re.I), "a round"),
    (re.compile(r"\bround\s+\d+\b", re.I), "a round"),
]
BARE_NUMBER = re.compile(r"(?<![\w&/`])#\d+\b")  # "#26": outside code (a take named `walk #2` is fine)


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(markdown: str) -> str:
    """The page without fenced blocks and inline code, so code and file names are not read as prose or links."""
    return INLINE_CODE.sub("", FENCE.sub("", markdown))


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_readme_opens_with_the_two_commands_and_ci_runs_exactly_the_second():
    first_block = FENCE.search(text(README)).group(1).strip().splitlines()
    assert first_block == [FIRST_COMMAND, SECOND_COMMAND]
    assert text(README).index("```") < text(README).index("\n## "), "the two commands come before any section"
    commands = [line.strip() for line in text(REPO / ".ci" / "run").splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == SECOND_COMMAND, "the CI's last command must be the README's test command, exactly"


def test_readme_is_short():
    lines = text(README).splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move detail into docs/ (the guide)"


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    heading = heading.strip().lower().replace("`", "")
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in FENCE.sub("", text(path)).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = github_anchor(match.group(1))
            anchor, n = base, 0
            while anchor in found:
                n += 1
                anchor = f"{base}-{n}"
            found.add(anchor)
    return found


def links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(text(path)))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)]  # http:, https:, mailto:


@pytest.mark.parametrize("page", GUIDE_PAGES, ids=relative)
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {relative(linked)})")
    assert not broken, f"{relative(page)}: broken links: {broken}"


def reachable_from_readme() -> set[Path]:
    seen, todo = {README.resolve()}, [README.resolve()]
    while todo:
        page = todo.pop()
        for target in links(page):
            file_part = target.partition("#")[0]
            linked = (page.parent / file_part).resolve() if file_part else page
            if linked.suffix == ".md" and linked.is_file() and linked not in seen:
                seen.add(linked)
                todo.append(linked)
    return seen


def test_every_guide_page_is_reachable_from_the_readme():
    pages = {p.resolve() for p in (REPO / "docs").glob("*.md")} | {
        (REPO / "training" / "README.md").resolve(), (REPO / "CHANGELOG.md").resolve()}
    missing = pages - {p.resolve() for p in NOT_GUIDE_PAGES} - reachable_from_readme()
    assert not missing, f"link these from the README or a page it links: {sorted(map(relative, missing))}"


@pytest.mark.parametrize("page", USER_PAGES, ids=relative)
def test_no_user_facing_page_names_an_issue_or_a_round(page):
    body = text(page)
    found = [f"{what}: {match.group(0)!r}" for pattern, what in FORBIDDEN for match in pattern.finditer(body)]
    found += [f"an issue number: {match.group(0)!r}" for match in BARE_NUMBER.finditer(prose(body))]
    assert not found, (f"{relative(page)} speaks of the project's history ({found}): describe the product as it "
                       "is; history goes to CHANGELOG.md and training/runs/")


def command_lines(page: Path, program: str, inline: bool = False) -> list[str]:
    """Every `program ...` command of a page's code blocks (continuations joined), or with `inline` every inline
    code span of its prose that starts with the program's name."""
    body = text(page)
    if inline:
        return [span.strip("`") for span in INLINE_CODE.findall(FENCE.sub("", body))
                if span.strip("`").startswith(program + " ")]
    found = []
    for block in FENCE.findall(body):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"^\s*(\$\s+)?(\.venv/bin/|~?[\w./-]*/bin/)?", "", line)
            if line.startswith(program + " "):
                found.append(line)
    return found


def arguments_of(line: str) -> list[str]:
    """The words of one documented command: a trailing comment, `[optional]` parts and what follows a shell
    operator dropped (the example's own words are what is checked)."""
    words = shlex.split(line, comments=True)
    for i, word in enumerate(words):
        if word in ("&&", "||", "|", ";", ">", "2>"):
            words = words[:i]
            break
    return [w for w in words if not (w.startswith("[") or w.endswith("]"))][1:]


def kmm_examples(inline: bool) -> list[tuple[str, str]]:
    return [(relative(page), line) for page in GUIDE_PAGES for line in command_lines(page, "kmm", inline)]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_the_guide_has_kmm_examples():
    assert len(kmm_examples(inline=False)) >= 20, kmm_examples(inline=False)


@pytest.mark.parametrize(("page", "line"), kmm_examples(inline=False))
def test_every_kmm_example_parses_with_the_real_command_line(page, line):
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            kmm_cli.build_parser().parse_args(arguments_of(line))
    except SystemExit as exit_request:
        pytest.fail(f"{page}: `{line}` does not parse (exit {exit_request.code}): {errors.getvalue().strip()}")


@pytest.mark.parametrize(("page", "line"), kmm_examples(inline=True))
def test_every_kmm_command_named_in_prose_exists_with_its_options(page, line):
    """`kmm generate --no-foot-lock` in a sentence names a command and its options, not a whole example: both
    must exist (a full example in prose parses like a code block's)."""
    arguments = arguments_of(line)
    if "-o" in arguments or "--output" in arguments:
        test_every_kmm_example_parses_with_the_real_command_line(page, line)
        return
    commands = subcommands(kmm_cli.build_parser())
    assert arguments[0] in commands, f"{page}: `{line}`: no command {arguments[0]!r}"
    known = set(commands[arguments[0]]._option_string_actions)
    unknown = [w.split("=")[0] for w in arguments[1:] if w.startswith("-") and w.split("=")[0] not in known]
    assert not unknown, f"{page}: `{line}`: kmm {arguments[0]} has no option {unknown}"


def test_every_kmm_train_example_names_a_real_command():
    commands = subcommands(train_cli.build_parser())
    lines = [(relative(page), line) for page in GUIDE_PAGES for inline in (False, True)
             for line in command_lines(page, "kmm-train", inline)]
    assert len(lines) >= 20, lines
    unknown = [(page, line) for page, line in lines if arguments_of(line)[:1] and arguments_of(line)[0] not in commands]
    assert not unknown, unknown


def readme_cli_block() -> list[str]:
    section = text(README).split("## On the command line", 1)[1]
    return command_lines_from(FENCE.search(section).group(1))


def command_lines_from(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.startswith("kmm ")]


def test_the_readme_command_line_block_runs(tmp_path, monkeypatch, capsys):
    """The README's command-line lines, run in order as a user would (their BVH skeleton: the one the first line
    writes), each ending with exit code 0 and writing what it says."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "timeline.json", tmp_path / "examples" / "timeline.json")
    lines = readme_cli_block()
    assert [arguments_of(line)[0] for line in lines] == ["generate", "generate", "edit", "retarget", "vocab", "doctor"]
    for line in lines:
        if arguments_of(line)[0] == "retarget":
            shutil.copy(tmp_path / "raise.bvh", tmp_path / "their_rig.bvh")
        status = kmm_cli.main(arguments_of(line) + (["--quiet"] if arguments_of(line)[0] in ("generate", "edit")
                                                    else []))
        assert status == 0, (line, capsys.readouterr().err[-2000:])
    for name in ("raise.bvh", "take.npz", "take.gif", "take2.npz", "take_on_rig.bvh"):
        assert (tmp_path / name).stat().st_size > 0, name


def model_stamp(picture: Path) -> dict[str, str]:
    """What the render script wrote into the picture: the model's name and its bundle.json's SHA-256."""
    from PIL import Image

    with Image.open(picture) as image:
        comment = image.info.get("comment") or image.info.get("Comment") or b""
    comment = comment.decode() if isinstance(comment, bytes) else comment
    return dict(item.split("=", 1) for item in comment.split())


def test_the_readme_picture_is_a_real_character_rendered_by_the_committed_script():
    from PIL import Image

    assert f"]({relative(PICTURE)})" in text(README), "the README shows the rendered character"
    assert relative(PICTURE_SCRIPT) in text(README), "the README names the command that makes the picture again"
    assert PICTURE.stat().st_size < 1.5e6
    with Image.open(PICTURE) as picture:
        assert picture.format == "GIF" and picture.n_frames >= 50


@pytest.mark.parametrize("picture", [PICTURE, REPO / "docs" / "images" / "characters-strip.png"], ids=relative)
def test_the_rendered_pictures_show_the_current_default_model(picture):
    from kmm_core.bundle.model_choice import resolve_model

    stamp = model_stamp(picture)
    default = resolve_model("default")
    assert stamp.get("model") == default.name, stamp
    assert stamp["bundle.json-sha256"] == hashlib.sha256((default / "bundle.json").read_bytes()).hexdigest(), (
        f"the default model changed: make {relative(picture)} again with {relative(PICTURE_SCRIPT)} (its docstring "
        "gives the command)")
    assert stamp["timeline"] == "examples/timeline.json" and stamp["seed"] == "0"


def test_the_panel_picture_is_drawn_from_the_current_panel_code():
    """docs/images/panel.png: shown in the README and the Blender guide with the command that draws it, said to be
    drawn from the panel's own code (Blender draws no interface headless), and drawn from the panel.py there is now."""
    from PIL import Image

    picture, script = REPO / "docs" / "images" / "panel.png", REPO / "docs" / "images" / "render_panel.py"
    assert "](docs/images/panel.png)" in text(README)
    guide = text(REPO / "docs" / "blender.md")
    assert "](images/panel.png)" in guide and relative(script) in guide and "draw()" in guide
    with Image.open(picture) as image:
        stamp = json.loads(image.info["kmm-panel"])
        assert image.width >= 800 and image.height >= 400
    source = hashlib.sha256((REPO / "kmm_blender" / "ui" / "panel.py").read_bytes()).hexdigest()
    assert stamp["panel.py-sha256"] == source, f"the panel changed: draw {relative(picture)} again with {relative(script)}"


def test_every_flag_that_takes_a_segment_number_names_its_convention():
    """`kmm edit --segment` counts from 0 (as timeline files and the worker do), Blender's panel and `batch.py
    --regenerate-segment` from 1: each flag's help and each page says which, and names the other."""
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
        kmm_cli.main(["edit", "--help"])
    edit_help = " ".join(help_text.getvalue().split())
    assert "counted from 0" in edit_help and "count from 1" in edit_help, edit_help
    batch = text(REPO / "kmm_blender" / "batch.py")
    assert "counted from 1 as the panel's table shows" in batch and "count from 0" in batch
    assert "counted from 0, as in timeline files" in text(REPO / "docs" / "cli.md")
    assert "counted from 0: the panel's and `batch.py`'s segment 1 is 0 here" in text(REPO / "docs" / "worker_protocol.md")


HISTORY = [
    (re.compile(r"\b(?:cand-\w+|soupZ|pscf\w*|wise\d+|gZ\d*)\b"), "an internal run or candidate name"),
    (re.compile(r"(?<![-/\w])v(?:[89]|1[0-9])\b"), "an internal model version"),
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b"), "a commit hash"),
    (re.compile(r"\bonce (?:took|crashed|made|wrote|was|printed|killed|lost)\b", re.I), "a story of an old failure"),
    (re.compile(r"\(before:|\bbefore that\b|\b[Pp]revious default\b|\bsixth round\b"), "a before figure"),
]


@pytest.mark.parametrize("page", USER_PAGES, ids=relative)
def test_user_pages_speak_of_the_product_as_it_is(page):
    """A user page tells what the product does now: no internal run names or versions, no commit hashes, no stories
    of what once failed, no "before" figures (the history is in CHANGELOG.md, training/runs and the architecture
    page's history notes).  Code, file paths and commands are not prose and are not read."""
    body = prose(text(page))
    found = [(what, match.group(0)) for pattern, what in HISTORY for match in pattern.finditer(body)]
    assert not found, f"{relative(page)}: {found[:8]}"

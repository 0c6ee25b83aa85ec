# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train prepare`: build a HumanML3D-layout training folder from BVH archives, the extra mocap sources
(HDM05 ASF/AMC, CMU iClone export, CMU exp-map subset, DeepMimic) or a user's BVH folder.

Examples::

    kmm-train prepare --out data/prepared \\
        --bandai-namco ../shared/data/bandai-namco/bandai-namco-bvh.tar.xz \\
        --cmu ../shared/data/cmu/cmu-bvh.tar.xz --cmu-descriptions ../shared/data/cmu/cmu-descriptions.json
    kmm-train prepare --out data/extra --hdm05 X/hdm05-subset-jointlearning \\
        --cmu-iclone X/cmu-iclone-dragonforged --deepmimic X/deepmimic-humanoid3d \\
        --cmu-expmap X/cmu-8action-expmap --cmu-expmap-skeleton X/hdm05-subset-jointlearning/asf/HDM_bd.asf
    kmm-train prepare --out data/more --accad X/accad-male1 --cmu-amc X/cmu-140-getup
    kmm-train prepare --out data/mine --bvh-folder my_bvh --captions my_bvh/captions.csv --joint-map cmu_daz
    python -m kmm_core.training.prepare_command --help
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..common.atomic_write import OutputWriteError
from ..common.errors import KMMError
from ..data.extra_sources import cmu_expmap_specs, cmu_iclone_specs, deepmimic_specs, hdm05_specs
from ..data.named_take_sources import NAMED_TAKE_DATASETS, accad_specs, cmu_amc_specs
from ..data.prepare import (
    MAX_FRAMES,
    MIN_FRAMES,
    MIN_SOURCE_FRAMES,
    PrepareError,
    PrepareOptions,
    prepare_dataset,
    print_summary,
    skipped_listing,
)
from ..data.reversed_takes import reversed_takes
from ..data.sources import SourceScan, bandai_namco_specs, cmu_specs, user_specs
from ..evaluation.take_checks import check_scan

CMU_DESCRIPTIONS_FILE = "cmu-descriptions.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmm-train prepare",
        description="Build a HumanML3D-layout training dataset (new_joint_vecs/, new_joints/, texts/, "
                    "train/val/test.txt, Mean.npy/Std.npy, index.csv, report.json/.md) from BVH clips.")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; must be empty unless "
                        "--overwrite)")
    sources = parser.add_argument_group("sources (at least one)")
    sources.add_argument("--bandai-namco", type=Path, help="Bandai-Namco archive (.tar.xz) or extracted folder")
    sources.add_argument("--cmu", type=Path, help="CMU BVH archive (.tar.xz) or extracted folder")
    sources.add_argument("--cmu-descriptions", type=Path, help=f"CMU descriptions JSON (default: "
                         f"{CMU_DESCRIPTIONS_FILE} beside --cmu)")
    sources.add_argument("--hdm05", type=Path, help="HDM05 ASF/AMC folder (extra/hdm05-subset-jointlearning, "
                         "extracted)")
    sources.add_argument("--cmu-iclone", type=Path, help="CMU on the Character Creator rig: folder with clips.csv "
                         "and bvh/ (extra/cmu-iclone-dragonforged, extracted)")
    sources.add_argument("--cmu-expmap", type=Path, help="CMU exp-map subset folder (extra/cmu-8action-expmap, "
                         "extracted); needs --cmu-expmap-skeleton")
    sources.add_argument("--cmu-expmap-skeleton", type=Path, help="ASF skeleton with CMU's 31 bone names giving "
                         "the exp-map files their bone geometry (e.g. hdm05-subset-jointlearning/asf/HDM_bd.asf)")
    sources.add_argument("--deepmimic", type=Path, help="DeepMimic folder with characters/humanoid3d.txt and "
                         "motions/ (extra/deepmimic-humanoid3d, extracted)")
    sources.add_argument("--accad", type=Path, help="ACCAD Male1 BVH folder (more/accad-male1, extracted); captions "
                         "from the file names, every clip checked by its actions' geometric checks first")
    sources.add_argument("--cmu-amc", type=Path, help="CMU trials in ASF/AMC (more/cmu-140-getup, extracted: "
                         "<subject>.asf beside <subject>_<trial>.amc); checked like --accad")
    sources.add_argument("--bvh-folder", type=Path, help="your own folder of BVH files")
    sources.add_argument("--captions", type=Path, help="captions file (.csv or .json) for --bvh-folder")
    sources.add_argument("--joint-map", help="joint map for --bvh-folder: bandai_namco, cmu_daz, cmu_31 or a "
                         "JSON file")
    sources.add_argument("--drop-first-frame", action="store_true",
                         help="drop frame 0 of every --bvh-folder file (e.g. a T-pose)")
    options = parser.add_argument_group("options")
    options.add_argument("--seed", type=int, default=0, help="seed of captions, splits and limits (default 0)")
    options.add_argument("--captions-per-clip", type=int, default=3,
                         help="captions generated per labelled clip (default 3)")
    options.add_argument("--limit-per-content", type=int, default=None,
                         help="use at most N takes per dataset/content (fast tests and demos)")
    options.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                         help="worker processes (default: min(2, CPUs))")
    options.add_argument("--no-mirror", action="store_true", help="do not add left/right mirrored copies")
    options.add_argument("--reversed-takes", action="store_true",
                         help="add, to the train split, lie-down takes played backwards as get-ups (each checked by "
                              "the getup check first; docs/data.md, 'Reversed takes')")
    options.add_argument("--min-frames", type=int, default=MIN_FRAMES,
                         help=f"shortest clip in feature frames at 20 fps (default {MIN_FRAMES})")
    options.add_argument("--max-frames", type=int, default=MAX_FRAMES,
                         help=f"longest clip; longer takes are cut into windows (default {MAX_FRAMES})")
    options.add_argument("--min-source-frames", type=int, default=MIN_SOURCE_FRAMES,
                         help=f"clips shorter than this (frames at 20 fps) are dropped, longer short clips are "
                              f"padded by holding the last pose (default {MIN_SOURCE_FRAMES})")
    options.add_argument("--val-fraction", type=float, default=0.1)
    options.add_argument("--test-fraction", type=float, default=0.1)
    options.add_argument("--overwrite", action="store_true", help="replace a previous prepare output in --out")
    options.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return parser


def _describe(kind: str, path: Path, **extra) -> dict:
    return {"kind": kind, "path": str(path), **{k: str(v) for k, v in extra.items() if v is not None}}


def source_takes(scan: SourceScan, flag: str, path: Path) -> SourceScan:
    """`scan` of the source given as `flag PATH`; a PrepareError when not one of its files could be read as a take
    (all skipped before reading: a folder of symbolic links to files outside it, which no scan follows, or of files
    named as the source never names them): a source asked for and silently left out would change the data without
    a word.  Takes read and then refused by their action check are listed in the report as before."""
    if not scan.specs and scan.skipped:
        raise PrepareError(f"{flag} {path}: no take could be read, all {len(scan.skipped)} were skipped: "
                           f"{skipped_listing(scan.skipped)}")
    return scan


def run(args: argparse.Namespace) -> dict:
    """Gather the specs of every requested source and prepare the dataset; returns the report."""
    specs, skipped, described = [], [], []

    def announce(path: Path) -> None:
        if not args.quiet:  # reading the labels of an archive takes a pass over it (~15 s for Bandai-Namco)
            print(f"scanning {path} ...", file=sys.stderr, flush=True)

    def add(scan: SourceScan, kind: str, flag: str, path: Path, **extra) -> None:
        """One source's takes into the dataset's (not one readable: a PrepareError, `source_takes`); named takes are
        checked before they are trusted (a refused one is listed with the skipped files)."""
        scan = source_takes(scan, flag, path)
        if kind in NAMED_TAKE_DATASETS:
            scan = check_scan(scan)[0]
        specs.extend(scan.specs)
        skipped.extend(scan.skipped)
        described.append(_describe(kind, path, **extra))

    if args.bandai_namco is not None:
        announce(args.bandai_namco)
        add(bandai_namco_specs(args.bandai_namco, args.seed, args.captions_per_clip), "bandai-namco",
            "--bandai-namco", args.bandai_namco)
    if args.cmu is not None:
        descriptions = args.cmu_descriptions or args.cmu.parent / CMU_DESCRIPTIONS_FILE
        announce(args.cmu)
        add(cmu_specs(args.cmu, descriptions, args.seed, args.captions_per_clip), "cmu", "--cmu", args.cmu,
            descriptions=descriptions)
    extra = ((args.hdm05, "hdm05", lambda p: hdm05_specs(p, args.seed, args.captions_per_clip)),
             (args.cmu_iclone, "cmu-iclone", lambda p: cmu_iclone_specs(p, args.seed, args.captions_per_clip)),
             (args.cmu_expmap, "cmu-expmap", lambda p: cmu_expmap_specs(p, args.cmu_expmap_skeleton, args.seed,
                                                                        args.captions_per_clip)),
             (args.deepmimic, "deepmimic", lambda p: deepmimic_specs(p, args.seed, args.captions_per_clip)),
             (args.accad, "accad", lambda p: accad_specs(p, args.seed, args.captions_per_clip)),
             (args.cmu_amc, "cmu-amc", lambda p: cmu_amc_specs(p, args.seed, args.captions_per_clip)))
    for path, kind, scan_source in extra:
        if path is not None:
            add(scan_source(path), kind, f"--{kind}", path,
                **({"skeleton": args.cmu_expmap_skeleton} if kind == "cmu-expmap" else {}))
    if args.bvh_folder is not None:
        add(user_specs(args.bvh_folder, args.captions, args.joint_map, args.drop_first_frame), "user", "--bvh-folder",
            args.bvh_folder, captions=args.captions, joint_map=args.joint_map)
    if args.reversed_takes:
        scan = check_scan(reversed_takes(specs, args.seed, args.captions_per_clip))[0]
        specs += scan.specs
        skipped += scan.skipped
    options = PrepareOptions(
        seed=args.seed, min_frames=args.min_frames, max_frames=args.max_frames,
        min_source_frames=args.min_source_frames, mirror=not args.no_mirror, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, limit_per_content=args.limit_per_content, workers=args.workers,
        progress=not args.quiet, overwrite=args.overwrite)
    return prepare_dataset(specs, args.out, options, source_skipped=skipped, sources=described)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if all(path is None for path in (args.bandai_namco, args.cmu, args.hdm05, args.cmu_iclone, args.cmu_expmap,
                                     args.deepmimic, args.accad, args.cmu_amc, args.bvh_folder)):
        parser.error("give at least one source: --bandai-namco, --cmu, --hdm05, --cmu-iclone, --cmu-expmap, "
                     "--deepmimic, --accad, --cmu-amc or --bvh-folder")
    if (args.cmu_expmap is None) != (args.cmu_expmap_skeleton is None):
        parser.error("--cmu-expmap and --cmu-expmap-skeleton go together")
    if args.bvh_folder is not None and (args.captions is None or args.joint_map is None):
        parser.error("--bvh-folder needs --captions and --joint-map")
    if (args.captions is not None or args.joint_map is not None) and args.bvh_folder is None:
        parser.error("--captions and --joint-map belong to --bvh-folder")
    if args.captions_per_clip < 1:
        parser.error("--captions-per-clip must be >= 1")
    try:
        report = run(args)
    except OutputWriteError as error:  # disk full, no permission: exit 4 as `kmm` does; nothing half-written stays
        print(f"kmm-train prepare: error: {error}", file=sys.stderr)
        return 4
    except KMMError as error:
        print(f"kmm-train prepare: error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print_summary(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: GPL-3.0-or-later
"""Import BVH files with Blender's own importer (io_anim_bvh) and record pose bone positions.

bpy can be imported only once per process and takes seconds to start, so tests run this file in a subprocess
(see `run_blender_import`): `python tests/blender_scripts/bvh_import.py job.json result.npz`, where job.json lists
[{"path": "...bvh", "frames": [0, 5, ...]}, ...] (frames counted from 0 in the file).  For file k the result
holds `names_k` (bone names), `heads_k` and `tails_k` (len(frames), bones, 3): world-space head/tail of every pose
bone at those frames, in Blender's axes, imported with the importer's defaults (axis_forward='-Z', axis_up='Y',
i.e. BVH (x, y, z) becomes Blender (x, -z, y); scale 1; native rotation order).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

FRAME_START = 1  # Blender frame of the file's first frame


def run_blender_import(jobs: list[dict], work_dir: Path, timeout: float = 300.0) -> dict[str, np.ndarray]:
    """Run the import in a fresh Python process (this interpreter) and return the recorded arrays."""
    job_path, result_path = work_dir / "blender_job.json", work_dir / "blender_result.npz"
    job_path.write_text(json.dumps(jobs), encoding="utf-8")
    completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(job_path), str(result_path)],
                               capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        raise RuntimeError(f"Blender import failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    with np.load(result_path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def blender_to_bvh_axes(points: np.ndarray) -> np.ndarray:
    """Undo the importer's default axis conversion: Blender (x, y, z) -> BVH (x, z, -y)."""
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)


def _main(job_path: str, result_path: str) -> None:
    import bpy  # noqa: PLC0415 - only in the subprocess

    bpy.ops.wm.read_factory_settings(use_empty=True)
    jobs = json.loads(Path(job_path).read_text(encoding="utf-8"))
    results: dict[str, np.ndarray] = {}
    for k, job in enumerate(jobs):
        before = set(bpy.data.objects)
        outcome = bpy.ops.import_anim.bvh(filepath=job["path"], axis_forward="-Z", axis_up="Y", global_scale=1.0,
                                          rotate_mode="NATIVE", frame_start=FRAME_START, use_fps_scale=False,
                                          update_scene_fps=False, update_scene_duration=False)
        if outcome != {"FINISHED"}:
            raise RuntimeError(f"import of {job['path']} returned {outcome}")
        (armature,) = [obj for obj in bpy.data.objects if obj not in before and obj.type == "ARMATURE"]
        bones = list(armature.pose.bones)
        heads, tails = [], []
        for frame in job["frames"]:
            bpy.context.scene.frame_set(FRAME_START + int(frame))
            world = armature.matrix_world
            heads.append([tuple(world @ bone.head) for bone in bones])
            tails.append([tuple(world @ bone.tail) for bone in bones])
        results[f"names_{k}"] = np.array([bone.name for bone in bones])
        results[f"heads_{k}"] = np.array(heads, dtype=np.float64)
        results[f"tails_{k}"] = np.array(tails, dtype=np.float64)
        bpy.data.objects.remove(armature)
    np.savez(result_path, **results)


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])

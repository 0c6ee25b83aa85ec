# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a real skinned glTF character from a bone layout, with joint nodes whose local axes point anywhere.

Exporters give a joint node whatever local frame their source had: an FBX-converted Mixamo character's nodes carry
the FBX joint orients, a COLLADA export carries its own, and Blender's glTF importer then makes bones along those
axes (its default "Blender" bone heuristic) or towards the children ("Temperance", "Fortune").  The world-space rest
pose is the same in every case.  This writer makes such a file from a layout's joint positions: each joint node's
world rotation is drawn at random (seeded), its local translation and rotation are worked out so that every joint
sits where the layout puts it, and a small mesh (a tetrahedron around each joint, weighted to it) is skinned to the
joints with inverse bind matrices, so the importer makes an armature of it exactly as of a downloaded character.

    write_skinned_gltf(bones, path, seed=1)   # bones: (name, parent, head) in centimetres, Y up, facing +Z

Plain Python and NumPy (no bpy): the tests write the file, then import it in real Blender.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np


def _random_rotations(count: int, seed: int) -> np.ndarray:
    """(count, 3, 3) rotations drawn uniformly (normalised Gaussian quaternions)."""
    quaternions = np.random.default_rng(seed).normal(size=(count, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    return np.array([_quat_matrix(q) for q in quaternions])


def _quat_matrix(q) -> np.ndarray:
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _matrix_quat_xyzw(m: np.ndarray) -> list[float]:
    """glTF's (x, y, z, w) of a rotation matrix."""
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    quaternion = np.array([x, y, z, w])
    return (quaternion / np.linalg.norm(quaternion)).tolist()


def write_skinned_gltf(bones, path: str | Path, seed: int = 0, armature_scale: float = 0.01,
                       random_axes: bool = True, marker_size: float = 2.0,
                       ends: dict[str, list] | None = None) -> Path:
    """A .gltf (buffers embedded) of the layout `bones` [(name, parent or None, head (3,))], parents first, heads
    in the layout's units (`armature_scale` of them make a metre) with Y up and the character facing +Z.  Each joint
    node's world axes are random (seed `seed`) when `random_axes`, else the identity.  `ends`: more skin points of
    a bone ({name: [points]}: where a leaf's mesh ends, a shin's wheel)."""
    names = [b[0] for b in bones]
    index = {name: i for i, name in enumerate(names)}
    parents = [index[b[1]] if b[1] else -1 for b in bones]
    heads = np.array([b[2] for b in bones], dtype=np.float64)
    count = len(bones)
    world = _random_rotations(count, seed) if random_axes else np.broadcast_to(np.eye(3), (count, 3, 3)).copy()
    nodes = []
    for joint in range(count):
        parent = parents[joint]
        if parent < 0:
            local_rotation, local_translation = world[joint], heads[joint]
        else:
            local_rotation = world[parent].T @ world[joint]
            local_translation = world[parent].T @ (heads[joint] - heads[parent])
        nodes.append({"name": names[joint], "translation": local_translation.tolist(),
                      "rotation": _matrix_quat_xyzw(local_rotation),
                      "children": [c for c in range(count) if parents[c] == joint]})
    for node in nodes:
        if not node["children"]:
            del node["children"]
    # the mesh: a tetrahedron around each joint and halfway to each child (and at each point of `ends`), in armature
    # units, each vertex weighted fully to the joint whose bone it sits on
    corners = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64) * marker_size
    centres, owners = [], []
    for joint in range(count):
        centres.append(heads[joint])
        owners.append(joint)
        for child in (c for c in range(count) if parents[c] == joint):
            centres.append(0.5 * (heads[joint] + heads[child]))
            owners.append(joint)
        for point in (ends or {}).get(names[joint], []):
            centres.append(np.asarray(point, dtype=np.float64))
            owners.append(joint)
    centres = np.array(centres)
    positions = (centres[:, None, :] + corners[None]).reshape(-1, 3).astype(np.float32)
    joints = np.repeat(np.array(owners), 4)
    faces = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    indices = (faces[None] + 4 * np.arange(len(centres))[:, None, None]).reshape(-1).astype(np.uint16)
    joint_attribute = np.zeros((len(joints), 4), dtype=np.uint16)
    joint_attribute[:, 0] = joints
    weight_attribute = np.zeros((len(joints), 4), dtype=np.float32)
    weight_attribute[:, 0] = 1.0
    inverse_binds = []
    for joint in range(count):
        matrix = np.eye(4)
        matrix[:3, :3], matrix[:3, 3] = world[joint], heads[joint]
        inverse_binds.append(np.linalg.inv(matrix).T.reshape(-1))  # glTF stores matrices column by column
    chunks = [positions.tobytes(), joint_attribute.tobytes(), weight_attribute.tobytes(),
              np.array(inverse_binds, dtype=np.float32).tobytes(), indices.tobytes()]
    blob, views, offset = b"", [], 0
    for chunk in chunks:
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(chunk)})
        blob += chunk + b"\0" * (-len(chunk) % 4)
        offset = len(blob)
    accessors = [
        {"bufferView": 0, "componentType": 5126, "count": len(positions), "type": "VEC3",
         "min": positions.min(axis=0).tolist(), "max": positions.max(axis=0).tolist()},
        {"bufferView": 1, "componentType": 5123, "count": len(joints), "type": "VEC4"},
        {"bufferView": 2, "componentType": 5126, "count": len(joints), "type": "VEC4"},
        {"bufferView": 3, "componentType": 5126, "count": count, "type": "MAT4"},
        {"bufferView": 4, "componentType": 5123, "count": len(indices), "type": "SCALAR"},
    ]
    armature = count
    mesh_node = count + 1
    roots = [joint for joint in range(count) if parents[joint] < 0]
    document = {
        "asset": {"version": "2.0", "generator": "kmm tests/gltf_test_rig.py"},
        "scene": 0,
        "scenes": [{"nodes": [armature]}],
        "nodes": nodes + [
            {"name": "Armature", "scale": [armature_scale] * 3, "children": roots + [mesh_node]},
            {"name": "Body", "mesh": 0, "skin": 0}],
        "meshes": [{"name": "Body", "primitives": [{"attributes": {"POSITION": 0, "JOINTS_0": 1, "WEIGHTS_0": 2},
                                                    "indices": 4}]}],
        "skins": [{"joints": list(range(count)), "inverseBindMatrices": 3}],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob),
                     "uri": "data:application/octet-stream;base64," + base64.b64encode(blob).decode("ascii")}],
    }
    path = Path(path)
    path.write_text(json.dumps(document))
    return path


def with_legs_on_the_spine(bones, skirt_bones: int = 24):
    """The Mixamo layout's `bones` without the `mixamorig:` prefix and `Hips` called `Root`, with the thighs hung
    from `Spine` and, on `Root`, a ring of skirt bones and a three-bone tail: a character whose root carries more
    than the legs."""
    def plain(name):  # no Mixamo prefix, and the hips renamed: no preset names this rig's pelvis
        return None if name is None else "Root" if name == "mixamorig:Hips" else name.split(":", 1)[-1]

    moved = [(plain(name), "Spine" if name.endswith("UpLeg") else plain(parent), head) for name, parent, head in bones]
    hips = np.array(next(head for name, _, head in bones if name == "mixamorig:Hips"), dtype=np.float64)
    for k in range(skirt_bones):
        angle = 2 * np.pi * k / skirt_bones
        ring = hips + np.array([14.0 * np.cos(angle), -4.0, 12.0 * np.sin(angle)])
        moved.append((f"Skirt{k:02d}", "Root", ring.tolist()))
        moved.append((f"Skirt{k:02d}_End", f"Skirt{k:02d}", (ring + np.array([0.0, -35.0, 0.0])).tolist()))
    parent = "Root"
    for k in range(3):
        point = hips + np.array([0.0, -6.0 - 4.0 * k, -12.0 - 15.0 * k])
        moved.append((f"Tail{k}", parent, point.tolist()))
        parent = f"Tail{k}"
    return moved


def with_loose_prop(bones):
    """`bones` and a second root joint beside the body (a prop rigged as its own root)."""
    return list(bones) + [("Lantern", None, [40.0, 90.0, 20.0]), ("Lantern_Handle", "Lantern", [40.0, 110.0, 20.0])]


def wheeled_robot(bones):
    """(`robot_bones`, the skin ends of its shins: the wheels below the ankles)."""
    heads = {name.split(":", 1)[-1]: np.array(head, dtype=np.float64) for name, _, head in bones}
    wheels = {f"{side}Leg": [(heads[f"{side}Foot"] + [0.0, -4.0, 0.0]).tolist(),
                             (heads[f"{side}Foot"] + [0.0, -6.0, 3.0]).tolist()] for side in ("Left", "Right")}
    return robot_bones(bones), wheels


def robot_bones(bones):
    """A robot humanoid on wheels from the Mixamo layout's `bones`: Mixamo names without the prefix, no foot or
    toe bones (each shin ends at its wheel, which is mesh only), a knee cap `LeftKnee` hanging from the shin's top,
    three-bone wings on the chest and three claws for fingers on each hand."""
    plain = {name: name.split(":", 1)[-1] for name, _, _ in bones}
    heads = {plain[name]: np.array(head, dtype=np.float64) for name, _, head in bones}
    robot = []
    for name, parent, head in bones:
        short = plain[name]
        if any(part in short for part in ("Foot", "Toe", "HandMiddle", "HandThumb")):
            continue
        robot.append((short, plain[parent] if parent else None, head))
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        shin = heads[f"{side}Leg"]
        robot.append((f"{side}Knee", f"{side}Leg", (shin + [0.0, 3.0, 6.0]).tolist()))
        chest = heads["Spine2"]
        robot.append((f"{side}Wing1", "Spine2", (chest + [sign * 8.0, 5.0, -10.0]).tolist()))
        robot.append((f"{side}Wing2", f"{side}Wing1", (chest + [sign * 40.0, 25.0, -20.0]).tolist()))
        robot.append((f"{side}Wing3", f"{side}Wing2", (chest + [sign * 70.0, 40.0, -25.0]).tolist()))
        hand = heads[f"{side}Hand"]
        for k, spread in enumerate((-3.0, 0.0, 3.0)):
            robot.append((f"{side}Claw{k}", f"{side}Hand", (hand + [sign * 6.0, 0.0, spread]).tolist()))
            robot.append((f"{side}Claw{k}_Tip", f"{side}Claw{k}", (hand + [sign * 14.0, -2.0, spread]).tolist()))
    return robot


def quadruped():
    """A four-legged animal (a dog's proportions, centimetres, Y up, facing +Z) with the bone names of a common
    animal rig: `b_Hip` at the back, front legs `b_LeftUpperArm` .. `b_LeftHand_011`, hind legs `b_LeftThigh` ..
    `b_LeftFoot01_017`, a neck, a head and a tail."""
    bones = [("b_Root", None, [0.0, 55.0, 0.0]), ("b_Hip", "b_Root", [0.0, 55.0, -25.0]),
             ("b_Spine01", "b_Hip", [0.0, 56.0, -5.0]), ("b_Spine02", "b_Spine01", [0.0, 57.0, 15.0]),
             ("b_Neck", "b_Spine02", [0.0, 62.0, 30.0]), ("b_Head", "b_Neck", [0.0, 72.0, 40.0]),
             ("b_Head_End", "b_Head", [0.0, 70.0, 58.0]), ("b_Tail01", "b_Hip", [0.0, 58.0, -35.0]),
             ("b_Tail02", "b_Tail01", [0.0, 60.0, -50.0])]
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        bones += [(f"b_{side}UpperArm", "b_Spine02", [sign * 9.0, 48.0, 22.0]),
                  (f"b_{side}ForeArm", f"b_{side}UpperArm", [sign * 9.0, 30.0, 22.0]),
                  (f"b_{side}Hand_011", f"b_{side}ForeArm", [sign * 9.0, 8.0, 22.0]),
                  (f"b_{side}Finger_012", f"b_{side}Hand_011", [sign * 9.0, 1.0, 27.0]),
                  (f"b_{side}Thigh", "b_Hip", [sign * 9.0, 50.0, -25.0]),
                  (f"b_{side}Calf", f"b_{side}Thigh", [sign * 9.0, 30.0, -20.0]),
                  (f"b_{side}Foot01_017", f"b_{side}Calf", [sign * 9.0, 10.0, -28.0]),
                  (f"b_{side}Toe_018", f"b_{side}Foot01_017", [sign * 9.0, 1.0, -24.0])]
    return bones


def lone_arm():
    """One arm on its own (a first-person view model): shoulder, upper arm, forearm, hand, two fingers."""
    return [("Shoulder", None, [0.0, 140.0, 0.0]), ("UpperArm", "Shoulder", [15.0, 140.0, 0.0]),
            ("ForeArm", "UpperArm", [42.0, 140.0, 0.0]), ("Hand", "ForeArm", [70.0, 140.0, 0.0]),
            ("Finger1", "Hand", [80.0, 140.0, 2.0]), ("Finger2", "Hand", [80.0, 140.0, -2.0])]


def layout_bones(layout_path: str | Path) -> list[tuple[str, str | None, list[float]]]:
    """(name, parent, head) of a `kind: bones` layout of tests/data/characters/layouts."""
    layout = json.loads(Path(layout_path).read_text())
    return [(name, parent, head) for name, parent, head, _tail in layout["bones"]]


assert struct.calcsize("<f") == 4  # the buffers are little-endian float32 / uint16, as glTF requires

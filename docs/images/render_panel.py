# SPDX-License-Identifier: GPL-3.0-or-later
"""Draw the add-on's sidebar for the guide, beside Blender's render of the take: docs/images/panel.png.

    .venv/bin/python docs/images/render_panel.py [--out docs/images/panel.png]

Blender cannot draw its interface without a window, and the `bpy` module has none, so no screenshot can be taken
headless.  The sidebar is drawn instead from the add-on's own drawing code run in real Blender: the add-on is
registered in the dev environment's Blender, the example timeline (`examples/timeline.json`) is loaded into its table
the way Import Timeline loads it, Khronos' Cesium Man is set as the Armature, and the KMM panel's and its Settings
sub-panel's `draw()` (and the table's `draw_item()` for each row) are called with a layout that records every row,
column, box, label, property and button.  Labels and values come from Blender's own RNA (a property's name and
current value, an operator's label), so the picture shows what the panel holds; PIL then draws the recorded layout
in the colours of Blender's default dark theme, without icons.  Left of it: a frame of the README's picture
(`docs/images/character-timeline.gif`, rendered by Blender's Workbench engine), the take the panel's Generate makes.

The PNG carries the SHA-256 of `kmm_blender/ui/panel.py` it was drawn from (`tests/test_docs.py` says when the
panel's code changed since).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PANEL_SOURCE = REPO / "kmm_blender" / "ui" / "panel.py"
TIMELINE = REPO / "examples" / "timeline.json"
CHARACTER = REPO / "tests" / "data" / "characters" / "CesiumMan.gltf"
VIEW_PICTURE = REPO / "docs" / "images" / "character-timeline.gif"
STAMP_KEY = "kmm-panel"

WIDTH, LINE, PAD = 400, 26, 6
THEME = {"back": (48, 48, 48), "panel": (61, 61, 61), "header": (66, 66, 66), "text": (230, 230, 230),
         "dim": (160, 160, 160), "field": (29, 29, 29), "button": (84, 84, 84), "alert": (140, 50, 50),
         "box": (54, 54, 54), "check": (71, 114, 179)}


@dataclass
class Item:
    """One recorded layout element: a container ("row", "column", "box") with children, or a widget."""

    kind: str
    text: str = ""
    value: str = ""
    children: list[Item] = field(default_factory=list)
    alert: bool = False
    split: bool = False
    icon: str = ""
    units: int = 0   # a fixed width in Blender's UI units (`ui_units_x`), 0: share the row


ICON_GLYPHS = {"ADD": "+", "REMOVE": "-", "DUPLICATE": "=", "TRIA_UP": "^", "TRIA_DOWN": "v", "IMPORT": "in",
               "EXPORT": "out", "FILE_REFRESH": "R", "ARMATURE_DATA": "new"}
"""What an icon-only button shows (the picture has no icons)."""
UNIT = 20


class Recorder:
    """A stand-in for `bpy.types.UILayout` that records what a panel's draw() puts in it."""

    def __init__(self, item: Item, split: bool = False):
        self._item = item
        self.use_property_split = split
        self.use_property_decorate = False
        self.alert = False
        self.scale_y = 1.0
        self.ui_units_x = 0
        self.enabled = True
        self.active = True

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        if name == "ui_units_x" and value:
            self._item.units = int(value)

    def _child(self, kind: str) -> Recorder:
        item = Item(kind, alert=self.alert)
        self._item.children.append(item)
        child = Recorder(item, self.use_property_split)
        return child

    def row(self, align: bool = False, **_ignored) -> Recorder:
        return self._child("row")

    def column(self, align: bool = False, **_ignored) -> Recorder:
        return self._child("column")

    def box(self) -> Recorder:
        return self._child("box")

    def separator(self, **_ignored) -> None:
        self._item.children.append(Item("separator"))

    def label(self, text: str = "", icon: str = "NONE", **_ignored) -> None:
        if text:
            self._item.children.append(Item("label", text=text, alert=self.alert or self._item.alert))

    def progress(self, factor: float = 0.0, text: str = "", **_ignored) -> None:
        self._item.children.append(Item("label", text=text))

    def prop(self, data, prop: str, text: str | None = None, **_ignored) -> None:
        definition = data.bl_rna.properties[prop]
        value = getattr(data, prop)
        if definition.type == "BOOLEAN":
            shown = "yes" if value else "no"
        elif definition.type == "ENUM":
            shown = next((entry.name for entry in definition.enum_items if entry.identifier == value), str(value))
        elif definition.type == "POINTER":
            shown = getattr(value, "name", "") if value is not None else ""
        elif definition.type == "FLOAT":
            shown = f"{value:.2f}"
        else:
            shown = str(value)
        label = definition.name if text is None else text
        icon = _ignored.get("icon", "")
        if text == "" and icon and definition.type == "BOOLEAN":  # an icon-only toggle
            self._item.children.append(Item("button", icon=icon))
            return
        kind = "check" if definition.type == "BOOLEAN" and not self.use_property_split else "field"
        self._item.children.append(Item(kind, text=label, value=shown, split=self.use_property_split and text != "",
                                        alert=self.alert or self._item.alert))

    def operator(self, idname: str, text: str | None = None, icon: str = "", **_ignored):
        import bpy

        if text is None:
            group, name = idname.split(".")
            text = getattr(getattr(bpy.ops, group), name).get_rna_type().name
        self._item.children.append(Item("button", text=text, icon=icon))

        class Properties:  # what a draw() may set on the operator it adds (e.g. direction = "UP")
            pass

        return Properties()

    def template_list(self, list_type: str, _list_id, data, collection: str, active_data, active_property: str,
                      rows: int = 5, **_ignored) -> None:
        import bpy

        draw_row = getattr(bpy.types, list_type).draw_item  # the registered list's own draw_item (self unused)
        table = self._child("box")
        for index, element in enumerate(getattr(data, collection)):
            draw_row(None, bpy.context, table.row(), data, element, "NONE", active_data, active_property, index=index)
        for _ in range(max(0, rows - len(getattr(data, collection)))):
            table._item.children.append(Item("separator"))


def recorded_panel(panel_type, context, split: bool = False) -> Item:
    """What `panel_type.draw(context)` lays out."""
    root = Item("column")

    class Panel:  # the panel's own methods on a plain object (a registered Panel cannot be made by hand)
        layout = Recorder(root, split)

    for name, member in vars(panel_type).items():
        if callable(member) and not name.startswith("__"):
            setattr(Panel, name, member)
    panel_type.draw(Panel(), context)
    return root


# ---- drawing ------------------------------------------------------------------------------------------------------
def height(item: Item) -> int:
    if item.kind == "row":
        return max([height(child) for child in item.children] or [0])
    if item.kind in ("column", "box"):
        inner = sum(height(child) for child in item.children)
        return inner + (2 * PAD if item.kind == "box" and item.children else 0)
    return LINE // 2 if item.kind == "separator" else LINE


def fixed_width(item: Item) -> int:
    """The width an element keeps in a row (0: it shares the rest): icon-only buttons, containers of nothing else,
    a `ui_units_x` width."""
    if item.units:
        return item.units * UNIT
    if item.kind == "button" and not item.text or item.kind == "separator":
        return LINE + 4
    if item.kind in ("row", "column") and item.children and all(fixed_width(c) for c in item.children):
        sizes = [fixed_width(c) for c in item.children]
        return sum(sizes) if item.kind == "row" else max(sizes)
    return 0


def widths(children: list[Item], total: int) -> list[int]:
    """A row's children: fixed ones their width, the rest sharing what is left."""
    fixed = [fixed_width(child) for child in children]
    share = (total - sum(fixed)) // max(1, sum(1 for f in fixed if not f))
    return [f or share for f in fixed]


def fitted(draw, font, text: str, width: int) -> str:
    """`text` cut to `width` pixels, with an ellipsis when cut (as Blender does)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def draw_item(draw, font, item: Item, x: int, y: int, width: int) -> int:
    """Draw `item` at (x, y) `width` wide; returns its height."""
    h = height(item)
    if item.kind == "row":
        for child, w in zip(item.children, widths(item.children, width), strict=True):
            draw_item(draw, font, child, x, y, w - 2)
            x += w
        return h
    if item.kind in ("column", "box"):
        inset = PAD if item.kind == "box" else 0
        if item.kind == "box" and item.children:
            draw.rounded_rectangle((x, y, x + width, y + h - 2), 4, fill=THEME["box"], outline=THEME["field"])
        top = y + inset
        for child in item.children:
            top += draw_item(draw, font, child, x + inset, top, width - 2 * inset)
        return h
    if item.kind == "separator":
        return h
    middle = y + (LINE - 14) // 2
    colour = (255, 150, 150) if item.alert else THEME["text"]
    if item.kind == "label":
        draw.text((x + 4, middle), fitted(draw, font, item.text, width - 8), font=font, fill=colour)
    elif item.kind == "button":
        draw.rounded_rectangle((x, y + 2, x + width, y + LINE - 2), 4, fill=THEME["button"])
        label = fitted(draw, font, item.text or ICON_GLYPHS.get(item.icon, ""), width - 8)
        draw.text((x + (width - draw.textlength(label, font=font)) / 2, middle), label, font=font, fill=colour)
    elif item.kind == "check":
        draw.rounded_rectangle((x + 2, y + 6, x + 16, y + 20), 3,
                               fill=THEME["check"] if item.value == "yes" else THEME["field"])
        draw.text((x + 22, middle), item.text, font=font, fill=colour)
    else:  # a property field; with property split its name on the left, right-aligned
        box_x = x
        if item.split:
            half = int(width * 0.4)
            draw.text((x + half - 6 - draw.textlength(item.text, font=font), middle), item.text, font=font,
                      fill=THEME["dim"])
            box_x = x + half
        draw.rounded_rectangle((box_x, y + 2, x + width, y + LINE - 2), 4, fill=THEME["field"])
        shown = item.value if item.split or not item.text or item.value == item.text else \
            (f"{item.text}: {item.value}" if item.value else item.text)
        draw.text((box_x + 6, middle), fitted(draw, font, shown, x + width - box_x - 12), font=font, fill=colour)
    return h


def draw_sidebar(panels: list[tuple[str, Item]]):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    total = sum(LINE + height(item) + 2 * PAD for _, item in panels) + PAD
    image = Image.new("RGB", (WIDTH, total), THEME["back"])
    draw = ImageDraw.Draw(image)
    y = PAD // 2
    for title, item in panels:
        draw.rectangle((2, y, WIDTH - 3, y + LINE), fill=THEME["header"])
        draw.text((12, y + (LINE - 14) // 2), title, font=font, fill=THEME["text"])
        y += LINE
        body = height(item) + 2 * PAD
        draw.rectangle((2, y, WIDTH - 3, y + body), fill=THEME["panel"])
        draw_item(draw, font, item, 2 + PAD, y + PAD, WIDTH - 4 - 2 * PAD)
        y += body + PAD
    return image


def view_frame(height_px: int):
    """A frame of the README's Blender render (the raised left hand), scaled to `height_px`."""
    from PIL import Image

    with Image.open(VIEW_PICTURE) as gif:
        gif.seek(min(gif.n_frames - 1, gif.n_frames * 2 // 5))
        frame = gif.convert("RGB")
    return frame.resize((round(frame.width * height_px / frame.height), height_px))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "panel.png"))
    args = parser.parse_args()
    import bpy
    from PIL import Image, PngImagePlugin

    spec = importlib.util.spec_from_file_location("kmm_panel_batch", REPO / "kmm_blender" / "batch.py")
    batch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(batch)
    package = batch._addon_package()
    if not hasattr(bpy.types.Scene, "kmm"):
        package.register()
    segment_table = importlib.import_module(".kmm_blender.timeline.segment_table", package.__name__)
    properties = importlib.import_module(".kmm_blender.timeline.properties", package.__name__)
    panel = importlib.import_module(".kmm_blender.ui.panel", package.__name__)

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    bpy.ops.import_scene.gltf(filepath=str(CHARACTER))
    scene = bpy.context.scene
    rows, _constraints = segment_table.import_timeline(TIMELINE, properties.scene_fps(scene), scene.frame_start)
    properties.set_rows(scene.kmm, rows)
    scene.kmm.target_armature = next(o for o in bpy.data.objects if o.type == "ARMATURE")

    sidebar = draw_sidebar([("KMM Motion", recorded_panel(panel.KMM_PT_main, bpy.context)),
                            ("Settings", recorded_panel(panel.KMM_PT_settings, bpy.context, split=True))])
    view = view_frame(sidebar.height)
    picture = Image.new("RGB", (view.width + sidebar.width, sidebar.height), THEME["back"])
    picture.paste(view, (0, 0))
    picture.paste(sidebar, (view.width, 0))
    info = PngImagePlugin.PngInfo()
    info.add_text(STAMP_KEY, json.dumps({"panel.py-sha256": hashlib.sha256(PANEL_SOURCE.read_bytes()).hexdigest(),
                                         "timeline": "examples/timeline.json"}))
    out = Path(args.out)
    picture.save(out, pnginfo=info, optimize=True)
    print(f"wrote {out}: {picture.width}x{picture.height}, {out.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

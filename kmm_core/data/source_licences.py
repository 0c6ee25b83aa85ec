# SPDX-License-Identifier: GPL-3.0-or-later
"""What each training-data source allows, and what that means for weights trained on a mix of them (torch-free).

The one table of the project's data licences: `SOURCE_LICENCES` maps every source kind ``kmm-train prepare``
records in its report (``report.json`` ``sources[].kind``, copied to a run's ``dataset.json`` ``sources``) to its
terms and the acknowledgement text it asks for.  `combined_licence` turns the sources of one model into the
``bundle.json`` licence fields (``kmm-train bundle``) and the model card's licence section:

* any source that forbids commercial use (Bandai-Namco, CC BY-NC 4.0) -> the weights are non-commercial;
* any source whose terms are not verified for commercial use (the CMU iClone export, DeepMimic's clips, a user's
  own data) -> non-commercial too, conservatively, until someone checks them;
* a source whose licence is reported but not confirmed (ACCAD, reported CC BY 3.0) counts as that licence, and its
  terms, carried into the licence note, say so (the caveat ships with the weights);
* any share-alike source (HDM05, CC BY-SA 3.0) -> the weights are shared alike under that licence (trained
  weights count, conservatively, as an adaptation);
* every source's acknowledgement is carried.

The reasoning per source is in training/README.md ("What each source allows").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..common.errors import KMMError

CMU_ACKNOWLEDGEMENT = ("The data used in this project was obtained from mocap.cs.cmu.edu. The database was created "
                       "with funding from NSF EIA-0196217.")
CMU_TERMS = ('CMU Graphics Lab Motion Capture Database terms: "free for use in research projects. You may include '
             'this data in commercially-sold products, but you may not resell this data directly, even in converted '
             'form."')
HDM05_ACKNOWLEDGEMENT = ('The data used in this project was obtained from HDM05. M. Müller, T. Röder, M. Clausen, '
                         'B. Eberhardt, B. Krüger, A. Weber: "Documentation Mocap Database HDM05", Technical report '
                         'CG-2007-2, Universität Bonn, June 2007.')
ACCAD_ACKNOWLEDGEMENT = ('Motion capture data from the ACCAD Motion Capture Lab: "ACCAD, The Ohio State University" '
                         "(Advanced Computing Center for the Arts and Design), general motion set Male1; licence "
                         "reported as CC BY 3.0, not confirmed.")
CODE_LICENCE = "GPL-3.0-or-later"


@dataclass(frozen=True)
class SourceLicence:
    """The terms of one source kind.

    ``licence``: the short name ("CC BY-NC 4.0"); ``terms``: one sentence on what it allows and where it says so;
    ``commercial``: True when weights trained on it may be used commercially, False when the licence forbids it,
    None when nobody has verified that (treated as non-commercial); ``share_alike``: adaptations must keep the
    licence; ``acknowledgement``: the text to carry wherever the data (or weights trained on it) is used.
    """

    kind: str
    title: str
    licence: str
    terms: str
    commercial: bool | None
    share_alike: bool
    acknowledgement: str


SOURCE_LICENCES: dict[str, SourceLicence] = {s.kind: s for s in (
    SourceLicence(
        "bandai-namco", "Bandai-Namco Research Motion Dataset 1 and 2", "CC BY-NC 4.0",
        "Creative Commons Attribution-NonCommercial 4.0: non-commercial use only; weights trained on it inherit it.",
        False, False,
        "Bandai-Namco Research Motion Dataset (github.com/BandaiNamcoResearchInc/Bandai-Namco-Research-Motiondataset), "
        'Kobayashi et al. 2023, "Motion Capture Dataset for Practical Use of AI-based Motion Editing and '
        'Stylization", licensed CC BY-NC 4.0.'),
    SourceLicence(
        "cmu", "CMU Graphics Lab Motion Capture Database (BVH conversions)", "CMU terms",
        CMU_TERMS + " Weights are not the data: commercial products are allowed.", True, False, CMU_ACKNOWLEDGEMENT),
    SourceLicence(
        "cmu-expmap", "CMU motion capture, exponential-map subset (8 actions)", "CMU terms",
        CMU_TERMS + " (The redistributing repository's code is MIT; the skeleton geometry used is HDM05's.)",
        True, False, CMU_ACKNOWLEDGEMENT),
    SourceLicence(
        "hdm05", "Motion Capture Database HDM05", "CC BY-SA 3.0",
        "Creative Commons Attribution-ShareAlike 3.0 Unported: commercial use allowed with attribution; trained "
        "weights count, conservatively, as an adaptation, so they are shared under CC BY-SA 3.0.",
        True, True, HDM05_ACKNOWLEDGEMENT),
    SourceLicence(
        "cmu-iclone", "CMU motion capture re-exported on the Reallusion Character Creator rig", "CMU terms (unverified export)",
        CMU_TERMS + " The files were exported from Reallusion iClone/Character Creator and the redistributing "
        "repository states no licence: commercial use is unverified until Reallusion's EULA is checked.",
        None, False, CMU_ACKNOWLEDGEMENT + " Re-exported on the Reallusion Character Creator rig."),
    SourceLicence(
        "deepmimic", "DeepMimic humanoid motion clips", "MIT (provenance unverified)",
        "The DeepMimic repository is MIT (c) 2018 Xue Bin Peng; where each clip was captured is not documented, so "
        "commercial use is unverified.",
        None, False,
        'DeepMimic humanoid clips (github.com/xbpeng/DeepMimic, MIT), Peng et al. 2018, "DeepMimic: Example-Guided '
        'Deep Reinforcement Learning of Physics-Based Character Skills".'),
    SourceLicence(
        "accad", "ACCAD Motion Capture Lab, general motion set Male1", "CC BY 3.0 (reported, not confirmed)",
        "ACCAD (The Ohio State University) distributes this data for free use, widely reported as Creative Commons "
        "Attribution 3.0 (commercial use allowed with attribution); caveat: the copy used came from a repository with "
        "no licence file and ACCAD's own page was not checked, so the licence is not confirmed: confirm it with ACCAD "
        "before relying on it commercially.",
        True, False, ACCAD_ACKNOWLEDGEMENT),
    SourceLicence(
        "cmu-amc", "CMU Graphics Lab Motion Capture Database (ASF/AMC trials)", "CMU terms",
        CMU_TERMS + " Weights are not the data: commercial products are allowed.", True, False, CMU_ACKNOWLEDGEMENT),
    SourceLicence(
        "user", "Your own BVH files", "your data's terms",
        "The terms of your own motion data, which kmm-train cannot know: check them before any commercial use.",
        None, False, "Your own motion data (kmm-train prepare --bvh-folder)."),
)}


@dataclass(frozen=True)
class CombinedLicence:
    """The licence of weights trained on several sources (the ``bundle.json`` fields, see the module docstring)."""

    licence: str            # one line: "CC BY-SA 3.0, commercial use allowed"
    licence_note: str       # what it means, with the code's licence and each source's terms
    acknowledgements: tuple[str, ...]
    commercial_use: bool
    share_alike: bool
    sources: tuple[str, ...]

    def manifest_fields(self) -> dict:
        return {"licence": self.licence, "licence_note": self.licence_note,
                "acknowledgements": list(self.acknowledgements), "commercial_use": self.commercial_use,
                "share_alike": self.share_alike}


class UnknownSourceError(KMMError, ValueError):
    """A training source kind with no entry in the licence table."""


def source_licence(kind: str) -> SourceLicence:
    try:
        return SOURCE_LICENCES[kind]
    except KeyError:
        raise UnknownSourceError(f"training source {kind!r} has no licence entry (known: "
                                 f"{', '.join(SOURCE_LICENCES)}); add it to kmm_core/data/source_licences.py") from None


def source_kind(dataset: str) -> str:
    """The source kind of a dataset name in the prepared data ('bandai-namco-2' -> 'bandai-namco')."""
    if dataset in SOURCE_LICENCES:
        return dataset
    for kind in sorted(SOURCE_LICENCES, key=len, reverse=True):
        if dataset.startswith(kind + "-") and dataset[len(kind) + 1:].isdigit():
            return kind
    return dataset


def combined_licence(kinds: Iterable[str]) -> CombinedLicence:
    """The licence of weights trained on these source kinds (order kept, duplicates dropped).  No sources (a run
    that did not record them, e.g. on HumanML3D): the licence is unknown and commercial use is not allowed."""
    entries = [source_licence(kind) for kind in dict.fromkeys(kinds)]
    if not entries:
        return CombinedLicence(
            "unknown (the training data's sources were not recorded), no commercial use",
            f"Code: {CODE_LICENCE}. The run does not record which data the weights were trained on, so their "
            "licence is unknown: do not use them commercially until you know it.", (), False, False, ())
    forbidding = [e for e in entries if e.commercial is False]
    unverified = [e for e in entries if e.commercial is None]
    share_alike = [e for e in entries if e.share_alike]
    commercial = not forbidding and not unverified
    governing = list(dict.fromkeys(e.licence for e in forbidding + share_alike)) \
        or list(dict.fromkeys(e.licence for e in unverified + entries))
    licence = " + ".join(governing) + (", commercial use allowed" if commercial else ", non-commercial use only")
    note = [f"Code: {CODE_LICENCE}."]
    if commercial:
        note.append("These weights may be used commercially" + (
            f", under {' and '.join(dict.fromkeys(e.licence for e in share_alike))}: give attribution and share "
            "adaptations of the weights under the same licence." if share_alike else
            ", with the attribution below."))
    else:
        reasons = [f"{e.title} is {e.licence}" for e in forbidding]
        reasons += [f"{e.title}: commercial use unverified" for e in unverified]
        note.append("These weights are for non-commercial use only: " + "; ".join(reasons) + ".")
        if share_alike:
            note.append(f"They are also shared alike under {' and '.join(dict.fromkeys(e.licence for e in share_alike))}"
                        " (attribution; adaptations under the same licence).")
    note += [f"{e.title}: {e.terms}" for e in entries]
    return CombinedLicence(licence, " ".join(note), tuple(dict.fromkeys(e.acknowledgement for e in entries)),
                           commercial, bool(share_alike), tuple(e.kind for e in entries))

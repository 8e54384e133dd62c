"""Measurement tags in panel channel names: which part of ``141Pr_CD45`` or ``CD3 FITC-A`` names the marker.

Cytometry and imaging exports name a channel by what it measured *and* how: mass cytometry and IMC
add the metal isotope of the antibody (``141Pr_CD45``, ``CD45(Sm152)Di``, ``Sm152_CD45``), flow
cytometry the fluorochrome and the detector's pulse measure (``CD3 FITC-A``, ``HLA-DR_APC-Cy7``,
``Comp-PE-A :: CD19`` in FCS's ``$PnN :: $PnS`` spelling). :func:`marker_part` returns the marker
name left when every tag around it is one this module recognises, and None otherwise: it never
drops a token it does not know (``CD45RA`` stays ``CD45RA``, ``B220`` is not a detector), and a
name that is only a tag (``191Ir``, ``FSC-A``, ``PE``, ``APC``) has no marker part.

The recognised tags are data: :data:`METALS` (element -> mass numbers) and :data:`FLUOROCHROMES`
(families of dye names); docs/marker-names.md lists both and where they come from.
"""

from __future__ import annotations

import re
from functools import cache

__all__ = ["FLUOROCHROMES", "METALS", "is_tag", "marker_part"]

# Metals conjugated to antibodies in mass cytometry (CyTOF) and imaging mass cytometry, with the
# mass numbers of their natural isotopes (the enriched isotopes sold for conjugation are among
# them). Sources: Standard BioTools' Maxpar metal catalogue and the IUPAC table of isotopic
# compositions. A mass number outside the range is not that element (``CD45`` is not cadmium-45,
# ``Cd`` is 106-116), and symbols are case-sensitive (``CD111`` is a CD molecule, ``Cd111`` cadmium).
METALS: dict[str, tuple[int, int]] = {
    # lanthanides: the bulk of every CyTOF and IMC panel
    "La": (138, 139), "Ce": (136, 142), "Pr": (141, 141), "Nd": (142, 150), "Sm": (144, 154),
    "Eu": (151, 153), "Gd": (152, 160), "Tb": (159, 159), "Dy": (156, 164), "Ho": (165, 165),
    "Er": (162, 170), "Tm": (169, 169), "Yb": (168, 176), "Lu": (175, 176),
    # other antibody labels, DNA intercalators (Ir, Rh), viability (Pt, Rh), barcodes (Pd, Cd),
    # beads and background channels (Ce, Eu, Ho, Lu, Ba, Cs, Sn, Pb, Hg, Xe, I, Te, Tl, Os, Ru)
    "Y": (89, 89), "Ru": (96, 104), "Rh": (103, 103), "Pd": (102, 110), "Ag": (107, 109),
    "Cd": (106, 116), "In": (113, 115), "Sn": (112, 124), "Te": (120, 130), "I": (127, 127),
    "Xe": (124, 136), "Cs": (133, 133), "Ba": (130, 138), "Os": (184, 192), "Ir": (191, 193),
    "Pt": (190, 198), "Au": (197, 197), "Hg": (196, 204), "Tl": (203, 205), "Pb": (204, 208),
    "Bi": (209, 209),
}

# Fluorochromes as flow cytometry panels and multiplexed immunofluorescence name them: one row per
# family, (family, pattern, examples). In a pattern ``~`` is an optional separator (``PE-Cy7``,
# ``PE Cy7``, ``PECy7``) and ``#`` a three-digit wavelength. Sources: the vendors' fluorochrome
# catalogues (BD Biosciences: BV, BUV, BB, RB, RY, Horizon V450/V500, PE-CF594, APC-H7, APC-R700;
# BioLegend: Spark, PE-Dazzle 594, PE/Fire, APC/Fire; Thermo Fisher: Alexa Fluor, eFluor, Super
# Bright, Qdot, Pacific Blue/Orange; Cytek: cFluor; Beckman Coulter: ECD, Krome Orange; Miltenyi:
# Vio dyes; Akoya: Opal), as they appear in FlowRepository channel names. Matching ignores case.
FLUOROCHROMES: tuple[tuple[str, str, str], ...] = (
    ("fluorescein", r"FITC", "FITC"),
    ("phycoerythrin and its tandems",
     r"PE(?:~(?:Cy5(?:~5)?|Cy7|CF594|Dazzle~?594|Texas~Red|Fire~?#|Vio~?#|Alexa~?Fluor~?#|AF~?#|eFluor~?#))?",
     "PE, PE-Cy5, PE-Cy5.5, PE-Cy7, PE-CF594, PE-Dazzle594, PE-Texas Red, PE/Fire 640, PE-Vio770"),
    ("allophycocyanin and its tandems",
     r"APC(?:~(?:Cy7|H7|R700|Fire~?#|Vio~?#|Alexa~?Fluor~?#|AF~?#|eFluor~?#))?",
     "APC, APC-Cy7, APC-H7, APC-R700, APC/Fire 750, APC-Vio770, APC-eFluor 780"),
    ("peridinin chlorophyll protein and its tandems", r"PerCP(?:~(?:Cy5~5|eFluor~?#|Vio~?#))?",
     "PerCP, PerCP-Cy5.5, PerCP-eFluor 710"),
    ("ECD (PE-Texas Red)", r"ECD", "ECD"),
    ("Brilliant Violet, Ultraviolet, Blue; Real Blue, Real Yellow",
     r"(?:BV|BUV|BB|RB|RY|Brilliant~(?:Violet|Ultraviolet|Blue))~?#", "BV421, BUV395, BB515, RB545, Brilliant Violet 605"),
    ("Horizon", r"(?:Horizon~)?V(?:450|500)", "V450, V500"),
    ("Alexa Fluor", r"(?:Alexa~?(?:Fluor~?)?|AF~?)#", "AF488, Alexa Fluor 647, Alexa647"),
    ("eFluor", r"(?:eFluor|eF)~?#", "eFluor 450, eF660"),
    ("Super Bright", r"(?:Super~Bright|SB)~?#", "Super Bright 600, SB702"),
    ("Spark", r"Spark~(?:Plus~)?(?:Blue|NIR|UV|Violet|YG|Red)~?#", "Spark Blue 550, Spark NIR 685"),
    ("cFluor", r"cFluor~?(?:UV|V|B|YG|R)~?#", "cFluor V420, cFluor B532"),
    ("Pacific Blue/Orange, Krome Orange", r"Pac(?:ific)?~?(?:Blue|Orange)|Krome~Orange", "Pacific Blue, PacOrange"),
    ("Vio dyes", r"Vio~?(?:Blue|Green|Bright~?(?:FITC|#))", "VioBlue, VioGreen"),
    ("cyanine dyes", r"Cy(?:2|3|3~5|5|5~5|7)", "Cy3, Cy5, Cy5.5, Cy7"),
    ("other imaging dyes", r"(?:Opal|ATTO|DyLight|Qdot|iFluor)~?#", "Opal 520, ATTO 550, DyLight 650, Qdot 605"),
)

_SEP = r"[-_ ./]"  # between a tag and the marker, and inside a dye's name
_SPLIT = re.compile(r"[-_ ./|]+")
# Flow detectors named by laser and filter (BD: B530, V450, YG586, R670; Attune: BL1, RL1; FACSCalibur:
# FL1; spectral: V7, B2): always with the pulse measure, which sets them apart from markers (B220).
_DETECTOR = r"(?:FL\d{1,2}|[BRVY]L\d{1,2}|(?:UV|V|B|YG|G|Y|R)\d{1,3})"
_PULSE = rf"{_SEP}[AHW]"  # area, height, width
_COMP = rf"(?:Comp{_SEP}?)?"  # a compensated channel


@cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(fluorochrome channel, flow detector channel, metal isotope), each matched whole."""
    dyes = "|".join(f"(?:{pattern})" for _, pattern, _ in FLUOROCHROMES)
    dyes = dyes.replace("~", f"{_SEP}?").replace("#", r"\d{3}")
    fluor = re.compile(rf"{_COMP}(?:{dyes})(?:{_PULSE})?", re.IGNORECASE)
    detector = re.compile(rf"{_COMP}{_DETECTOR}{_PULSE}")
    symbols = "|".join(sorted(METALS, key=len, reverse=True))
    # mass first (141Pr; R's make.names writes X141Pr) or symbol first (Pr141), then CyTOF's Di/Dd
    metal = re.compile(rf"(?:X?(?P<m1>\d{{2,3}})(?P<e1>{symbols})|(?P<e2>{symbols})(?P<m2>\d{{2,3}}))(?:{_SEP}?D[id])?")
    return fluor, detector, metal


def _is_metal(text: str) -> bool:
    hit = _patterns()[2].fullmatch(text)
    if hit is None:
        return False
    element, mass = (hit["e1"], hit["m1"]) if hit["e1"] else (hit["e2"], hit["m2"])
    low, high = METALS[element]
    return low <= int(mass) <= high


def _is_channel(text: str) -> bool:
    """Whether ``text`` names how something was measured and nothing else: a metal, a detector."""
    return _is_metal(text) or _patterns()[1].fullmatch(text) is not None


def is_tag(text: str) -> bool:
    """Whether ``text`` is, whole, a measurement tag: a metal isotope, a fluorochrome (with ``Comp-``
    and a pulse measure ``-A``/``-H``/``-W``), or a flow detector channel."""
    text = text.strip()
    return _is_channel(text) or _patterns()[0].fullmatch(text) is not None


_BRACKETED = re.compile(r"(?P<a>[^()\[\]]*)[(\[](?P<b>[^()\[\]]+)[)\]](?P<d>\s*D[id])?\s*")
# Longer names are not channel names (exports write a few dozen characters); the bound keeps the
# search linear in the panel for any input.
MAX_NAME = 200


def _strip_once(name: str) -> str | None:
    """The name without one recognised tag at its start, its end or in brackets; None when none."""
    bracketed = _BRACKETED.fullmatch(name)
    if bracketed is not None and bracketed["a"]:
        a, b = bracketed["a"].strip(), bracketed["b"].strip()
        if is_tag(b + (bracketed["d"] or "").strip()):  # CD45(Sm152)Di, CD3 (FITC)
            return a
        if not bracketed["d"] and is_tag(a):  # FITC-A (CD3), Nd142Di (CD19)
            return b
        return None
    cuts = [(m.start(), m.end()) for m in _SPLIT.finditer(name) if 0 < m.start() and m.end() < len(name)]
    # the longest tag first: PE-Cy7 before PE, PerCP-Cy5.5 before PerCP
    for start, end in cuts[::-1]:
        if is_tag(name[:start]):
            return name[end:]
    for start, end in cuts:
        if is_tag(name[end:]):
            return name[:start]
    return None


def marker_part(name: str) -> str | None:
    """The marker a tagged channel name measures (``141Pr_CD45`` -> ``CD45``, ``CD3 FITC-A`` -> ``CD3``,
    ``Comp-PE-A :: CD19`` -> ``CD19``); None when the name carries no recognised tag, or nothing but
    tags (``191Ir``, ``FSC-A``, ``Comp-PE-A``)."""
    name = name.strip()
    if len(name) > MAX_NAME:
        return None
    if "::" in name:  # FCS: the detector channel ($PnN) and the stain ($PnS), in either order
        left, _, right = (side.strip() for side in name.partition("::"))
        if is_tag(left) and not is_tag(right):
            rest = right
        elif is_tag(right) and not is_tag(left):
            rest = left
        else:
            return None
        return marker_part(rest) or rest
    if is_tag(name):
        return None
    rest = _strip_once(name)
    while rest is not None:
        if not re.search(r"[A-Za-z]", rest) or _is_channel(rest):  # 191Ir_193Ir, 141Pr_2: no marker
            return None
        inner = _strip_once(rest)
        if inner is None or is_tag(rest):  # APC measured by 150Nd is the gene APC
            return rest
        rest = inner
    return None

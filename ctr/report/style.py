"""Colours shared by the report's figures (matplotlib's and the inline SVG ones) and its HTML."""

INK = "#1f2933"
MUTED = "#7b8794"
UNASSIGNED = "#c4c9d0"
POSITIVE = "#c8553d"
NEGATIVE = "#9aa5b1"

"""Input data: reading the AnnData, checking values and labels, preparing and clustering cells.

Modules: ``anndata_io`` (read, choose layer and cluster column), ``checks`` (CTR5xx diagnostics),
``preprocess`` (transforms, technical channels), ``cluster`` / ``gpu`` (Leiden on CPU or GPU),
``panel`` (marker panels). Import from the modules; this package imports nothing heavy.
"""

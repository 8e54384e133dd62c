"""Writing results: atomic file writers and the run directory."""

from ctr.io.atomic import (
    write_csv_atomic,
    write_h5ad_atomic,
    write_json_atomic,
    write_text_atomic,
)
from ctr.io.rundir import prepare_run_dir, run_guard

__all__ = [
    "prepare_run_dir",
    "run_guard",
    "write_csv_atomic",
    "write_h5ad_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

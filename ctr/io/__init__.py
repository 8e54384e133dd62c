"""Writing results: atomic file writers and the run directory."""

from ctr.io.atomic import (
    write_csv_atomic,
    write_h5ad_atomic,
    write_json_atomic,
    write_text_atomic,
)
from ctr.io.rundir import check_output_file, run_guard, staged_run_dir, updating_run_dir

__all__ = [
    "check_output_file",
    "run_guard",
    "staged_run_dir",
    "updating_run_dir",
    "write_csv_atomic",
    "write_h5ad_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

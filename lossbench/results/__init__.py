"""A sweep directory's files: runs.csv, epochs.csv, config.yaml, checkpoints, the lock.

    python -c "import pandas as pd; print(pd.read_csv('outputs/sweep/DIR/runs.csv'))"

One home for what a sweep directory holds, in four parts:

  columns.py  the contract: the CSVs' columns and what each cell may hold, the run id and its
              settings hash, and the rows the trainer's metrics become
  write.py    writing: rows keyed by run_id (a sweep that resumes never duplicates a run),
              config.yaml (one config a directory), checkpoints, the lock
  verify.py   reading back, no file trusted: each line checked, which runs are finished, repair
  load.py     the runs and epochs of every sweep below some directories, as `analyze` reads them

Every file is written atomically (lossbench/atomic.py). The columns are documented in
docs/results.md ("Result files"); docs/reliability.md says what happens in each case of damage.
"""

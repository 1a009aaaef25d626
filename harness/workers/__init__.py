"""Workers: where a sweep's tasks are measured. `local` (worker processes of this host, one a GPU, the order of
their shared queue planned by `schedule`) and `ray` (Ray tasks of one GPU each on a cluster); both yield
(task, row) pairs to harness/sweep.py, the one writer of the CSV."""

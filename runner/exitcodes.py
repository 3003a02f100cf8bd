"""Exit codes of every qc2c entry point, in one place (Slurm's requeue path checks EXIT_PREEMPTED)."""

EXIT_OK = 0
EXIT_RUN_FAILED = 1  # the run ran and failed (errors above max_sample_errors, preflight refusal at run time)
EXIT_BAD_INPUT = 2  # bad manifest, arguments or files: one line per problem on stderr
EXIT_ALREADY_RUNNING = 3  # another live process owns the run ("already running (pid ...)"); nothing written
EXIT_PREEMPTED = 75  # SIGTERM / SIGINT / SIGUSR1 / SIGHUP: progress flushed, resume me (EX_TEMPFAIL)

"""Named exit codes for every flshell command."""

OK = 0
JOB_FAILED = 1  # the job ran and failed (or a command failed)
USAGE = 2  # bad arguments or an invalid job folder: nothing ran
ABORTED = 3  # the job was aborted
CONNECTION = 3  # admin commands: the server could not be reached
JOB_UNSUCCESSFUL = 4  # admin commands: wait_job saw the job end other than COMPLETED
INTERRUPTED = 130  # Ctrl-C

"""Planning and running a job for any task: the configuration, the task interface, the plan (every check
before anything is written), one member run, the executor and the one dispatcher the CLI and the API use."""

"""Background work of the service: the steering loop (thread or child process) and the reaper."""

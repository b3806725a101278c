"""The tests' root: its directory is on sys.path for every tier, so that `free_ports` (the one
helper that hands out ports) imports the same way from each."""

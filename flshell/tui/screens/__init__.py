"""The TUI's screens: main (jobs, sites, GPUs), job detail, and modal dialogs."""

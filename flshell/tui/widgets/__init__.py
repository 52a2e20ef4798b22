"""The TUI's widgets, by screen region: tables, GPU rows, status line, job detail, log tail."""

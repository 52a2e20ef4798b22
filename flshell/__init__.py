"""flshell: the operator front ends (console, TUI, CLI). No FL logic lives here."""

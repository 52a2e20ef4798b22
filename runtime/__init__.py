"""The federated runtime: importable without any front end."""

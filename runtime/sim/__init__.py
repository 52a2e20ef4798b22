"""The simulator: a server and N sites in this process."""

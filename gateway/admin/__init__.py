"""Administration: the remote AE registry, the association log, and their HTTP routes under /api."""

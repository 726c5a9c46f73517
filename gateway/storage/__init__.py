"""Object storage: where every received instance is kept durably."""

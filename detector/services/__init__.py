"""Use cases behind the API: each validates, acts, commits, and only then enqueues."""

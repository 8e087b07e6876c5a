"""Pure decisions: no I/O, no engine imports, tested without servers."""

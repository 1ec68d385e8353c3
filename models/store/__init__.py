"""Where the data lives: the deferred database and base model (base.py), opening and
closing the store (state.py), the group commit every redaction's write goes through
(group_commit.py), SQL generated once per shape (prepared.py), the store's secrets
(keys.py), pages of an account's rows (pages.py) and PostgreSQL's maintenance schedule
(schedule.py). Imports nothing else of models/ but its errors."""

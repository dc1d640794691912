"""Built-in handlers, registered in the `dtpush.handlers` entry-point group like any plugin.

- `sqlite` (`handlers.sqlite:SqliteHandler`): tables `events` and `latest` in a SQLite file.
- `log` (`handlers.log:LogHandler`): one JSON line per event.
"""

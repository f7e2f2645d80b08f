"""History and audit: in the cluster (CR status) by default, PostgreSQL when configured.

``postgres`` (and with it psycopg) is imported only where a database URL is set."""


class StoreUnavailable(RuntimeError):
    """The database could not be reached or did not answer in time."""

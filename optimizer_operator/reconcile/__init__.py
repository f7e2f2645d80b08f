"""One reconciler per kind: the glue between a body, the decisions and the writes."""

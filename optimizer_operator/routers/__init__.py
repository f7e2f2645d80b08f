"""Per-request routers: which of two configurations should answer each request, learned
from an app's own labelled traffic (features, a linear model, its artifact, datasets)."""

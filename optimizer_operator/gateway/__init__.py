"""The gateway sidecar: an OpenAI-compatible proxy that splits traffic and scores quality."""

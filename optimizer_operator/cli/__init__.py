"""The llm-optimizer command and the kubectl plugin."""

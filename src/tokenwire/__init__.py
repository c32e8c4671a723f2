"""tokenwire: move LLM output from model servers to people with minimal overhead."""

__version__ = "0.1.0"

"""A tiny library tested by Kiln's sample pipelines."""


def slugify(text: str) -> str:
    """Lowercase `text` and join its words with dashes."""
    return "-".join(word.lower() for word in text.split())


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

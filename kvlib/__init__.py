"""kvlib: the reference library of the KV-cache course."""

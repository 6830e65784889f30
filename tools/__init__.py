"""Developer tools: the extension builder and the helpers tests, the demo and the benchmarks
share. Nothing here ships in the extension zip, and nothing under ``bitwrk/`` imports it."""

"""The real-time runtime: periodic loops on the wall clock and their statistics (DESIGN §4)."""

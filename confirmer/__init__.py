"""The confirmer: follows Bybit private order streams and confirms accepted cancels."""

"""cancelq: cancel orders on Bybit V5 through Redis and Celery."""

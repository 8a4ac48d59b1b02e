"""The Bybit V5 adapter: the typed HTTP client (:mod:`.client`), request signing
(:mod:`.signing`) and the exchange's clock (:mod:`.clock`). Workers and confirmers both talk to
the exchange through it; it knows nothing of queues, Redis or Celery."""

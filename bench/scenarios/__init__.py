"""Scenarios: one module each; ``run(ctx)`` adds its figures to ``ctx.results``."""

from cancelq.cli import app

app()

from charrnn.cli import app

app(prog_name="charrnn")

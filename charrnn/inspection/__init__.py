"""`charrnn inspect`: what the model computes per character, the units that track the text, the page."""

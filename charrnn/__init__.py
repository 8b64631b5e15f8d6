"""charrnn: character-level RNN / GRU / LSTM language models."""

__version__ = "0.1.0"

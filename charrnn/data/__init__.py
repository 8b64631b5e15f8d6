"""The data layer: corpus files -> UTF-8 text -> encoded ids (cached, memory-mapped) -> splits -> batches."""

"""Parsers and renderers of text formats that both collect/ (which writes captures) and modes/
(which interprets them) use: the layer below both. Formats only - no kernel access and no
kube-proxy semantics."""

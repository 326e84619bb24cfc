"""The stage language (stdlib only): value grammar, parameter dataclasses, the op registry (one
`OpDef` per op), the parser, and building a run's stack from its command line."""

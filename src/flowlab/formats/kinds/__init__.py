"""What each task kind delivers from a batch project: one module per kind, named as the kind, holding its
`DELIVERABLE` (see `formats._deliverable`)."""

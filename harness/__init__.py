"""The measuring core: inputs, fp32 reference check, timer, metrics, isolation, CSV store, reports.
Knows no backend by name."""

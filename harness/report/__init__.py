"""Reports: functions of result rows, never a measurement. `tables` (the pivot and its renderings, winners, the
best per class), `verdict` and `model_step` (views over many batches and over a model's layers), `plots`
(PNG figures), `html` (the one-page report) and `readme` (the generated blocks of the Markdown files)."""

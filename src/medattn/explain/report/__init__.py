"""`medattn report RUN`: RUN/report.html, one self-contained file (every image embedded as base64 PNG): the model
card, training curves, the task's evaluation (`Task.report_sections`) and a gallery of test cases with their
explanations."""

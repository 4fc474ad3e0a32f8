"""Model selection: patient-level cross-validation with fold ensembles, and hyperparameter search on Optuna.

folds.py    pool train+val and split it into stratified (patient-grouped) folds
cv.py       train every fold as an ordinary run, score it on its held-out fold, write cv.json
ensemble.py the fold models as one predictor (mean of probabilities) for evaluate and predict
space.py    the grid file: a base config, the searched keys and their values, checked strictly
grid.py     the search itself: an Optuna study in SQLite, each trial a cross-validation
report.py   terminal summaries of both
"""

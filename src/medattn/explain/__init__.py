"""Explanations that can be checked: attention maps, CAMs and attributions for every task in 2D and 3D, and
their faithfulness (deletion / insertion against a random map) and lesion localisation.

hooks.py      the target layer's activations and gradients; every `attend` / `gate` submodule's output
target.py     what is explained: a scalar score of the model's output (given by each task, tasks/*/)
cam.py        Grad-CAM, Grad-CAM++, HiResCAM
attribution.py occlusion and integrated gradients
attention.py  the model's own attention: spatial gates, channel-weighted features, transformer rollout
methods.py    one entry point per method; windows.py: the sliding window of patch-trained models
explainer.py  a run's image (or volume, or a 2D model's slices) -> maps on the input's own grid
removal.py faithfulness.py localisation.py scores.py   is the map right?
overlay.py outputs.py command.py                      PNG overlays, mosaics, NIfTI and .npy; `medattn explain`
report/       `medattn report RUN`: one self-contained HTML file
"""

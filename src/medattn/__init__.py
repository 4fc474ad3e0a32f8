"""medattn: attention CNNs for medical images, from files on disk to a trained, evaluated model.

Heavy modules (torch, MONAI) are imported by the submodules that need them, so that
`import medattn` and `medattn --help` stay fast.
"""

__version__ = "0.1.0"

"""`python -m medattn ...` (and `torchrun -m medattn ...`) run the command line."""

from medattn.cli import main

if __name__ == "__main__":
    main()

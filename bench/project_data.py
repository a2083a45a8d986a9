"""Load the benchmark's data the way a user of this project would."""


def load_project_data(sr, args, fallback):
    """Return ``train, test, loader_name``.

    Uses ``softmaxreg.datasets.load`` (which verifies the files' checksums)
    when the package has it, else the benchmark's own IDX reader ``fallback``.
    """
    try:
        train, test = sr.datasets.load(args.dataset, data_dir=args.data_dir,
                                       download=False)
        return train, test, "softmaxreg.datasets.load"
    except (ImportError, AttributeError):
        train, test = fallback(args.data_dir, args.dataset)
        return train, test, "bench IDX reader"

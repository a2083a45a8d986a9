"""Peer: plain PyTorch on the CPU with the tutorial's model and optimizer.

784-128-10 MLP (ReLU), Adam (lr 1e-3, eps 1e-7 as Keras uses), batch 32,
cross-entropy on logits (the idiomatic PyTorch form of softmax + sparse CE).
The loop shuffles with ``randperm`` and slices tensors: the fast way to write
it by hand, faster than a per-sample ``DataLoader`` at batch 32.
"""

import time

import numpy as np

from common import (
    EpochClock,
    accuracy,
    blas_info,
    emit,
    latency_us,
    load_dataset,
    log_loss,
    standard_parser,
    throughput,
    unavailable,
)

NAME = "pytorch"


def build(torch):
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )


def train_epoch(torch, model, optimizer, x, y, batch_size, generator):
    loss_fn = torch.nn.functional.cross_entropy
    order = torch.randperm(len(x), generator=generator)
    for begin in range(0, len(x), batch_size):
        index = order[begin : begin + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[index]), y[index])
        loss.backward()
        optimizer.step()


def main():
    args = standard_parser(__doc__).parse_args()
    try:
        import torch
    except ImportError as error:
        unavailable(NAME, f"cannot import torch: {error}")

    (x_train, y_train), (x_test, y_test) = load_dataset(args.data_dir, args.dataset)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.from_numpy((x_train / np.float32(255.0)).astype(np.float32))
    y = torch.from_numpy(y_train.astype(np.int64))
    xt = torch.from_numpy((x_test / np.float32(255.0)).astype(np.float32))

    model = build(torch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    clock = EpochClock()
    start = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        clock.start()
        train_epoch(torch, model, optimizer, x, y, args.batch_size, generator)
        clock.stop()
    fit_seconds = time.perf_counter() - start

    model.eval()

    def predict(images):
        with torch.inference_mode():
            return torch.softmax(model(images), dim=1).numpy()

    probabilities = predict(xt)
    emit({
        "name": NAME,
        "fit_seconds": fit_seconds,
        "epoch_seconds": clock.seconds,
        "test_accuracy": accuracy(probabilities, y_test),
        "test_log_loss": log_loss(probabilities, y_test),
        "throughput": throughput(predict, xt),
        "latency": latency_us(predict, xt[:1]),
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        "threads": {"intra_op": torch.get_num_threads()},
        "blas": blas_info(),
    })


if __name__ == "__main__":
    main()

"""The datasets: digits, MNIST, Fashion-MNIST, 2-D toy sets; the IDX reader."""

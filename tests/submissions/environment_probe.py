"""Reports facts about the process it runs in, as numbers."""

import os
import tempfile

import torch

print("loaded in", os.getcwd())


def probe(X):
    with open("scratch.txt", "w") as f:
        f.write("left behind")
    secret_names = ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "GRADCHECKERS_TEST_SECRET")
    return torch.tensor(
        [
            sum(name in os.environ for name in secret_names),
            os.environ.get("HOME") == os.getcwd(),
            tempfile.gettempdir() == os.getcwd(),
            torch.get_num_threads(),
            os.path.exists("scratch.txt"),
            len(os.listdir(".")),
            __name__ == "__main__",
        ],
        dtype=torch.float64,
    )

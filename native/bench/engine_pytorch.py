"""PyTorch-from-Python baseline for `pathotype bench engine`.

Does the same work as the addon and the plain C++ program: VGG16 (Keras layout) on 64x64x3
patches, a flatten-dense(256)-dropout-dense(3) head, SGD with momentum, channels-last,
uint8 NHWC input normalised inside the timed step. Prints one JSON line.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VGG16_BLOCKS = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]


class Vgg16(nn.Module):
    def __init__(self, classes: int, size: int, hidden: int) -> None:
        super().__init__()
        layers = []
        cin = 3
        for convs, cout in VGG16_BLOCKS:
            for _ in range(convs):
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = size // 32
        self.fc1 = nn.Linear(512 * side * side, hidden)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.permute(0, 2, 3, 1).flatten(1)
        return self.fc2(self.drop(F.relu(self.fc1(x))))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=8)
    p.add_argument("--predict-steps", type=int, default=16)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bf16", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Vgg16(3, a.size, 256).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    mean = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    batch = torch.randint(0, 256, (a.batch, a.size, a.size, 3), dtype=torch.uint8)
    labels = torch.randint(0, 3, (a.batch,))

    def prep(b: torch.Tensor) -> torch.Tensor:
        x = b.permute(0, 3, 1, 2).float()
        return x.flip(1) - mean

    def train_step() -> None:
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = F.cross_entropy(model(prep(batch)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def predict_step() -> None:
        model.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            torch.softmax(model(prep(batch)).float(), 1)

    out = {"torch": torch.__version__, "threads": a.threads, "batch": a.batch, "bf16": a.bf16}
    for name, fn, steps in (("train", train_step, a.train_steps), ("predict", predict_step, a.predict_steps)):
        for _ in range(a.warmup):
            fn()
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        out[name + "PerSecond"] = steps * a.batch / (time.perf_counter() - t)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

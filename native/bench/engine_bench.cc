// Plain libtorch baseline for `pathotype bench engine`: the same work as the addon, written the
// way PyTorch's C++ frontend examples write it. VGG16 (Keras layout) on 64x64x3 patches, a
// flatten-dense(256)-dropout-dense(classes) head, SGD with momentum, channels-last weights and
// input, uint8 NHWC batches normalised inside the timed step. Prints one JSON line.
#include <torch/torch.h>
#include <torch/version.h>

#include <ATen/autocast_mode.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

struct Vgg16Impl : torch::nn::Module {
  Vgg16Impl(int64_t classes, int64_t size, int64_t hidden) {
    const int64_t blocks[5][2] = {{2, 64}, {2, 128}, {3, 256}, {3, 512}, {3, 512}};
    int64_t in = 3;
    for (auto& block : blocks) {
      for (int64_t i = 0; i < block[0]; i++) {
        features->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, block[1], 3).padding(1)));
        features->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
        in = block[1];
      }
      features->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)));
    }
    register_module("features", features);
    const int64_t side = size / 32;
    fc1 = register_module("fc1", torch::nn::Linear(512 * side * side, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, classes));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = features->forward(x).permute({0, 2, 3, 1}).flatten(1);
    x = torch::dropout(torch::relu(fc1->forward(x)), 0.5, is_training());
    return fc2->forward(x);
  }
  torch::nn::Sequential features;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Vgg16);

static int Arg(int argc, char** argv, const char* name, int fallback) {
  for (int i = 1; i + 1 < argc; i++) {
    if (std::strcmp(argv[i], name) == 0) return std::atoi(argv[i + 1]);
  }
  return fallback;
}

static bool Flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], name) == 0) return true;
  }
  return false;
}

int main(int argc, char** argv) {
  const int threads = Arg(argc, argv, "--threads", 2);
  const int batchSize = Arg(argc, argv, "--batch", 32);
  const int size = Arg(argc, argv, "--size", 64);
  const int trainSteps = Arg(argc, argv, "--train-steps", 8);
  const int predictSteps = Arg(argc, argv, "--predict-steps", 16);
  const int warmup = Arg(argc, argv, "--warmup", 2);
  const bool bf16 = Flag(argc, argv, "--bf16");
  torch::set_num_threads(threads);
  torch::manual_seed(0);

  Vgg16 model(3, size, 256);
  {
    torch::NoGradGuard noGrad;
    for (auto& p : model->parameters()) {
      if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
    }
  }
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(1e-3).momentum(0.9));
  auto mean = torch::tensor({103.939f, 116.779f, 123.68f});
  auto batch = torch::randint(0, 256, {batchSize, size, size, 3}, torch::kUInt8);
  auto labels = torch::randint(0, 3, {batchSize}, torch::kLong);

  auto prep = [&](const torch::Tensor& b) {
    auto x = b.to(torch::kFloat).flip({3});
    x.sub_(mean);
    return x.permute({0, 3, 1, 2});
  };
  auto autocast = [&](bool on) {
    if (!bf16) return;
    if (on) at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(on);
    if (!on) at::autocast::clear_cache();
  };
  auto trainStep = [&] {
    model->train();
    autocast(true);
    auto logits = model->forward(prep(batch));
    autocast(false);
    auto loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat), labels);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  };
  auto predictStep = [&] {
    torch::InferenceMode inference;
    model->eval();
    autocast(true);
    auto logits = model->forward(prep(batch));
    autocast(false);
    torch::softmax(logits.to(torch::kFloat), 1);
  };
  auto rate = [&](const std::function<void()>& step, int steps) {
    for (int i = 0; i < warmup; i++) step();
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; i++) step();
    std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    return steps * batchSize / elapsed.count();
  };
  const double train = rate(trainStep, trainSteps);
  const double predict = rate(predictStep, predictSteps);
  std::printf(
      "{\"torch\":\"%s\",\"threads\":%d,\"batch\":%d,\"bf16\":%s,\"trainPerSecond\":%.3f,\"predictPerSecond\":%.3f}\n",
      TORCH_VERSION, threads, batchSize, bf16 ? "true" : "false", train, predict);
  return 0;
}

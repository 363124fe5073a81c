// Plain C++ mirror of the TypeScript network spec (src/engine/spec.ts). The TypeScript side
// validates and infers shapes; parsing here only converts, and rejects what it cannot read.
#pragma once

#include <napi.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace pathotype {

enum class LayerType {
  Conv2d,
  BatchNorm,
  Relu,
  Relu6,
  MaxPool,
  AvgPool,
  GlobalAvgPool,
  Flatten,
  Dropout,
  Linear,
  ZeroPad,
  Residual,
  AttentionPool,
};

enum class Padding { Valid, Same };

struct LayerSpec {
  LayerType type = LayerType::Relu;
  std::string name;
  // conv2d
  int64_t inChannels = 0;
  int64_t filters = 0;
  std::array<int64_t, 2> kernel{1, 1};
  std::array<int64_t, 2> stride{1, 1};
  int64_t groups = 1;
  bool bias = true;
  Padding padding = Padding::Valid;
  // batchnorm (Keras semantics: momentum is the weight of the old running value)
  int64_t features = 0;
  double epsilon = 1e-3;
  double momentum = 0.99;
  // linear; attentionPool (inFeatures: the instances' features, units: the attention's hidden size)
  int64_t inFeatures = 0;
  int64_t units = 0;
  bool gated = true;
  // dropout
  double rate = 0.0;
  // zeroPad: top, bottom, left, right
  std::array<int64_t, 4> pad{0, 0, 0, 0};
  // residual: output = body(x) + shortcut(x), the shortcut being identity when empty
  std::vector<LayerSpec> body;
  std::vector<LayerSpec> shortcut;
};

struct InputSpec {
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 3;
  bool bgr = false;
  // A bag of instances laid along the width, as many as each batch brings (attention pooling).
  bool bag = false;
  std::vector<double> mean;
  std::vector<double> std;
};

struct NetworkSpec {
  InputSpec input;
  int64_t classes = 0;
  std::vector<LayerSpec> layers;
};

NetworkSpec ParseNetworkSpec(const Napi::Object& spec);

}  // namespace pathotype

#include "network.h"

#include "distributed.h"

#include <ATen/autocast_mode.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>

namespace pathotype {

namespace F = torch::nn::functional;

struct Layer {
  LayerSpec spec;  // body and shortcut moved into the members below
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d batchNorm{nullptr};
  torch::nn::Linear linear{nullptr};
  // attentionPool: `linear` is V (features to hidden), `gate` U, `score` w (hidden to 1).
  torch::nn::Linear gate{nullptr}, score{nullptr};
  // The attention scores of the last forward pass (inference reads them back).
  mutable torch::Tensor scores;
  std::vector<Layer> body, shortcut;
};

namespace {

std::atomic<int> g_threads{0};

// Keras 'same' padding: the total is split with the extra pixel after, so stride-2 layers pad
// asymmetrically and PyTorch's symmetric padding argument cannot express them.
std::pair<int64_t, int64_t> SamePadding(int64_t in, int64_t kernel, int64_t stride) {
  int64_t out = (in + stride - 1) / stride;
  int64_t total = std::max<int64_t>((out - 1) * stride + kernel - in, 0);
  return {total / 2, total - total / 2};
}

struct Pads {
  int64_t top = 0, bottom = 0, left = 0, right = 0;
  bool symmetric() const { return top == bottom && left == right; }
};

Pads SamePads(const torch::Tensor& x, const LayerSpec& s) {
  auto [top, bottom] = SamePadding(x.size(2), s.kernel[0], s.stride[0]);
  auto [left, right] = SamePadding(x.size(3), s.kernel[1], s.stride[1]);
  return {top, bottom, left, right};
}

class AutocastGuard {
 public:
  explicit AutocastGuard(bool enabled) : enabled_(enabled) {
    if (!enabled_) return;
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  ~AutocastGuard() {
    if (!enabled_) return;
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
  }

 private:
  bool enabled_;
};

Layer BuildLayer(LayerSpec spec, torch::nn::Module& root, std::vector<torch::nn::BatchNorm2d>& norms) {
  Layer layer;
  switch (spec.type) {
    case LayerType::Conv2d: {
      auto options = torch::nn::Conv2dOptions(spec.inChannels, spec.filters, {spec.kernel[0], spec.kernel[1]})
                         .stride({spec.stride[0], spec.stride[1]})
                         .groups(spec.groups)
                         .bias(spec.bias);
      layer.conv = root.register_module(spec.name, torch::nn::Conv2d(options));
      torch::NoGradGuard noGrad;
      torch::nn::init::kaiming_normal_(layer.conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      if (spec.bias) layer.conv->bias.zero_();
      break;
    }
    case LayerType::BatchNorm: {
      auto options = torch::nn::BatchNorm2dOptions(spec.features).eps(spec.epsilon).momentum(1.0 - spec.momentum);
      layer.batchNorm = root.register_module(spec.name, torch::nn::BatchNorm2d(options));
      norms.push_back(layer.batchNorm);
      break;
    }
    case LayerType::Linear: {
      auto options = torch::nn::LinearOptions(spec.inFeatures, spec.units).bias(spec.bias);
      layer.linear = root.register_module(spec.name, torch::nn::Linear(options));
      torch::NoGradGuard noGrad;
      torch::nn::init::xavier_uniform_(layer.linear->weight);  // Keras' glorot_uniform default
      if (spec.bias) layer.linear->bias.zero_();
      break;
    }
    case LayerType::AttentionPool: {
      auto make = [&](const std::string& suffix, int64_t in, int64_t out) {
        auto module = root.register_module(spec.name + suffix, torch::nn::Linear(torch::nn::LinearOptions(in, out)));
        torch::NoGradGuard noGrad;
        torch::nn::init::xavier_uniform_(module->weight);
        module->bias.zero_();
        return module;
      };
      layer.linear = make("_V", spec.inFeatures, spec.units);
      if (spec.gated) layer.gate = make("_U", spec.inFeatures, spec.units);
      layer.score = make("_w", spec.units, 1);
      break;
    }
    case LayerType::Residual:
      for (auto& l : spec.body) layer.body.push_back(BuildLayer(std::move(l), root, norms));
      for (auto& l : spec.shortcut) layer.shortcut.push_back(BuildLayer(std::move(l), root, norms));
      spec.body.clear();
      spec.shortcut.clear();
      break;
    default:
      break;
  }
  layer.spec = std::move(spec);
  return layer;
}

torch::Tensor RunLayers(const std::vector<Layer>& layers, torch::Tensor x, bool training);

torch::Tensor RunLayer(const Layer& layer, torch::Tensor x, bool training) {
  const LayerSpec& s = layer.spec;
  switch (s.type) {
    case LayerType::Conv2d: {
      torch::Tensor bias = s.bias ? layer.conv->bias : torch::Tensor();
      std::vector<int64_t> padding{0, 0};
      if (s.padding == Padding::Same) {
        Pads p = SamePads(x, s);
        if (p.symmetric()) {
          padding = {p.top, p.left};
        } else {
          x = torch::constant_pad_nd(x, {p.left, p.right, p.top, p.bottom}, 0);
        }
      }
      return torch::conv2d(x, layer.conv->weight, bias, {s.stride[0], s.stride[1]}, padding, {1, 1}, s.groups);
    }
    case LayerType::BatchNorm: {
      const auto& bn = *layer.batchNorm;
      // While statistics are being learned, in fp32 whatever autocast made of the input: some CPU
      // backends (the AVX2 fallback of bf16 convolution) would keep mean and variance in bf16.
      const bool learning = bn.is_training() && x.scalar_type() != torch::kFloat;
      return torch::batch_norm(learning ? x.to(torch::kFloat) : x, bn.weight, bn.bias, bn.running_mean,
                               bn.running_var, bn.is_training(), bn.options.momentum().value(), bn.options.eps(),
                               false);
    }
    case LayerType::Relu:
      return torch::relu(x);
    case LayerType::Relu6:
      // Not hardtanh: libtorch 1.13 has no bfloat16 backward for it on CPU.
      return torch::clamp(x, 0.0, 6.0);
    case LayerType::MaxPool: {
      std::vector<int64_t> padding{0, 0};
      if (s.padding == Padding::Same) {
        Pads p = SamePads(x, s);
        if (p.symmetric() && p.top * 2 <= s.kernel[0] && p.left * 2 <= s.kernel[1]) {
          padding = {p.top, p.left};
        } else {
          x = torch::constant_pad_nd(x, {p.left, p.right, p.top, p.bottom},
                                     -std::numeric_limits<float>::infinity());
        }
      }
      return torch::max_pool2d(x, {s.kernel[0], s.kernel[1]}, {s.stride[0], s.stride[1]}, padding);
    }
    case LayerType::AvgPool: {
      if (s.padding == Padding::Valid) {
        return torch::avg_pool2d(x, {s.kernel[0], s.kernel[1]}, {s.stride[0], s.stride[1]});
      }
      // Keras averages over the real pixels only: divide the padded sum by the padded count.
      Pads p = SamePads(x, s);
      std::vector<int64_t> pad{p.left, p.right, p.top, p.bottom};
      auto area = static_cast<double>(s.kernel[0] * s.kernel[1]);
      auto sum = torch::avg_pool2d(torch::constant_pad_nd(x, pad, 0), {s.kernel[0], s.kernel[1]},
                                   {s.stride[0], s.stride[1]}) * area;
      auto ones = torch::ones({1, 1, x.size(2), x.size(3)}, x.options());
      auto count = torch::avg_pool2d(torch::constant_pad_nd(ones, pad, 0), {s.kernel[0], s.kernel[1]},
                                     {s.stride[0], s.stride[1]}) * area;
      return sum / count;
    }
    case LayerType::GlobalAvgPool:
      return x.mean({2, 3});
    case LayerType::Flatten:
      // Keras flattens height, width, channels in that order; matching it lets Keras dense
      // weights that follow a flatten load unchanged.
      return x.dim() == 4 ? x.permute({0, 2, 3, 1}).flatten(1) : x.flatten(1);
    case LayerType::Dropout:
      return torch::dropout(x, s.rate, training);
    case LayerType::Linear:
      return torch::linear(x, layer.linear->weight, s.bias ? layer.linear->bias : torch::Tensor());
    case LayerType::ZeroPad:
      return torch::constant_pad_nd(x, {s.pad[2], s.pad[3], s.pad[0], s.pad[1]}, 0);
    case LayerType::AttentionPool: {
      // Gated attention (Ilse et al. 2018): an instance's score is w . (tanh(V h) * sigmoid(U h));
      // the bag's vector is the instances' sum weighted by the softmax of the scores over the bag.
      torch::Tensor h = x.flatten(2).transpose(1, 2);  // [N, instances, features]
      auto dense = [](const torch::nn::Linear& l, const torch::Tensor& in) {
        return torch::linear(in, l->weight, l->bias);
      };
      torch::Tensor hidden = torch::tanh(dense(layer.linear, h));
      if (s.gated) hidden = hidden * torch::sigmoid(dense(layer.gate, h));
      torch::Tensor scores = dense(layer.score, hidden).squeeze(2).to(torch::kFloat);
      layer.scores = scores.detach();
      torch::Tensor weights = torch::softmax(scores, 1).to(h.scalar_type());
      return (weights.unsqueeze(2) * h).sum(1);
    }
    case LayerType::Residual: {
      torch::Tensor y = RunLayers(layer.body, x, training);
      return y + (layer.shortcut.empty() ? x : RunLayers(layer.shortcut, x, training));
    }
  }
  throw std::logic_error("unhandled layer type");
}

torch::Tensor RunLayers(const std::vector<Layer>& layers, torch::Tensor x, bool training) {
  for (const Layer& layer : layers) x = RunLayer(layer, std::move(x), training);
  return x;
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); i++) out += (i ? "," : "") + std::to_string(shape[i]);
  return out + "]";
}

}  // namespace

void SetThreads(int threads) { g_threads = threads; }
int GetThreads() { return g_threads > 0 ? g_threads.load() : at::get_num_threads(); }
void ApplyThreads() {
  if (g_threads > 0 && at::get_num_threads() != g_threads) at::set_num_threads(g_threads);
}

Network::Network(NetworkSpec spec) : spec_(std::move(spec)), module_(std::make_shared<torch::nn::Module>("Network")) {
  std::vector<LayerSpec> layerSpecs = std::move(spec_.layers);
  spec_.layers.clear();
  for (auto& l : layerSpecs) layers_.push_back(BuildLayer(std::move(l), *module_, batchNorms_));
  // Channels-last weights let oneDNN run convolutions without reordering every call.
  {
    torch::NoGradGuard noGrad;
    for (auto& p : module_->parameters()) {
      if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
    }
  }
  mean_ = torch::tensor(std::vector<float>(spec_.input.mean.begin(), spec_.input.mean.end()));
  std_ = torch::tensor(std::vector<float>(spec_.input.std.begin(), spec_.input.std.end()));
  // One dry run proves that the spec's shapes chain and that the head emits one logit a class.
  torch::InferenceMode inference;
  module_->eval();
  auto probe = torch::zeros({1, spec_.input.channels, spec_.input.height, spec_.input.width})
                   .contiguous(torch::MemoryFormat::ChannelsLast);
  torch::Tensor out;
  try {
    out = RunLayers(layers_, probe, false);
  } catch (const c10::Error& e) {
    throw std::invalid_argument(std::string("the network spec does not fit together: ") + e.what_without_backtrace());
  }
  if (out.dim() != 2 || out.size(1) != spec_.classes) {
    throw std::invalid_argument("the network ends in shape " + ShapeText(out.sizes().vec()) + " but must end in [N," +
                                std::to_string(spec_.classes) + "], one logit per class");
  }
}

Network::~Network() = default;

torch::Tensor Network::ToInput(const Batch& b) const {
  const InputSpec& in = spec_.input;
  if (b.n < 1) throw std::invalid_argument("the batch is empty");
  const bool widthFits = in.bag ? b.w >= 1 : b.w == in.width;
  if (b.h != in.height || !widthFits || b.c != in.channels) {
    throw std::invalid_argument("the batch holds " + std::to_string(b.h) + "x" + std::to_string(b.w) + "x" +
                                std::to_string(b.c) + " inputs but the network takes " + std::to_string(in.height) +
                                "x" + (in.bag ? std::string("any") : std::to_string(in.width)) + "x" +
                                std::to_string(in.channels));
  }
  torch::Tensor x =
      b.floats ? torch::from_blob(const_cast<float*>(b.floats), {b.n, b.h, b.w, b.c}, torch::kFloat).clone()
               : torch::from_blob(const_cast<uint8_t*>(b.data), {b.n, b.h, b.w, b.c}, torch::kUInt8).to(torch::kFloat);
  if (in.bgr) x = x.flip({3});
  x.sub_(mean_).div_(std_);
  // NHWC memory seen as NCHW is exactly the channels-last layout: no copy.
  return x.permute({0, 3, 1, 2});
}

torch::Tensor Network::Augment(torch::Tensor x, bool flip, bool rotate90) const {
  const int64_t n = x.size(0);
  // Quarter turns of a non-square patch would change its shape: only half turns then.
  const bool square = x.size(2) == x.size(3);
  auto turns = rotate90 ? torch::randint(0, 4, {n}, torch::kLong) : torch::zeros({n}, torch::kLong);
  if (rotate90 && !square) turns = (turns / 2) * 2;
  auto mirrors = flip ? torch::randint(0, 2, {n}, torch::kLong) : torch::zeros({n}, torch::kLong);
  auto kind = turns * 2 + mirrors;
  torch::Tensor out = x.contiguous(torch::MemoryFormat::ChannelsLast).clone(torch::MemoryFormat::ChannelsLast);
  for (int64_t k = 1; k < 8; k++) {
    auto idx = (kind == k).nonzero().flatten();
    if (idx.numel() == 0) continue;
    auto part = out.index_select(0, idx);
    if (k % 2) part = part.flip({3});
    if (k / 2) part = torch::rot90(part, k / 2, {2, 3});
    out.index_copy_(0, idx, part);
  }
  return out;
}

torch::Tensor Network::Forward(const torch::Tensor& x) { return RunLayers(layers_, x, module_->is_training()); }

void Network::SetTrainingMode(bool frozenBatchNormEval, bool batchNormEval) {
  module_->train(true);
  for (auto& bn : batchNorms_) {
    // As Keras does for layers with trainable=False: a frozen batch norm keeps its statistics.
    const bool frozen = !bn->weight.requires_grad() && !bn->bias.requires_grad();
    if (batchNormEval || (frozenBatchNormEval && frozen)) bn->eval();
  }
}

StepResult Network::TrainStep(const Batch& batch, const int32_t* labels, const TrainOptions& options,
                              c10d::ProcessGroup* group) {
  if (!optimizer_) throw std::invalid_argument("configure an optimizer before the first training step");
  for (int64_t i = 0; i < batch.n; i++) {
    if (labels[i] < 0 || labels[i] >= spec_.classes) {
      throw std::invalid_argument("label " + std::to_string(labels[i]) + " at index " + std::to_string(i) +
                                  " is outside 0.." + std::to_string(spec_.classes - 1));
    }
  }
  if (!options.classWeights.empty() && static_cast<int64_t>(options.classWeights.size()) != spec_.classes) {
    throw std::invalid_argument("classWeights needs one weight per class (" + std::to_string(spec_.classes) + ")");
  }
  torch::Tensor x = ToInput(batch);
  if (options.flip || options.rotate90) x = Augment(x, options.flip, options.rotate90);
  auto target = torch::from_blob(const_cast<int32_t*>(labels), {batch.n}, torch::kInt).to(torch::kLong);

  SetTrainingMode(options.frozenBatchNormEval, options.batchNormEval);
  double syncMs = 0.0;
  auto timed = [&syncMs](const std::function<void()>& collective) {
    const auto start = std::chrono::steady_clock::now();
    collective();
    syncMs += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  if (group) timed([&] { Broadcast(*group, module_->buffers(true), 0); });
  torch::Tensor logits;
  {
    AutocastGuard autocast(options.bf16);
    logits = Forward(x);
  }
  logits = logits.to(torch::kFloat);
  auto lossOptions = F::CrossEntropyFuncOptions().label_smoothing(options.labelSmoothing);
  if (!options.classWeights.empty()) lossOptions.weight(torch::tensor(options.classWeights));
  torch::Tensor loss = F::cross_entropy(logits, target, lossOptions);
  const double lossValue = loss.item<double>();
  if (!std::isfinite(lossValue)) {
    throw NonFiniteLoss("the training loss is not finite (" + std::to_string(lossValue) +
                             "); the weights were not updated. Lower the learning rate or check the input data");
  }
  for (auto& p : module_->parameters()) p.mutable_grad().reset();
  loss.backward();
  if (group) timed([&] { AllReduceGradients(*group, module_->parameters(true)); });
  optimizer_->step();
  StepResult result;
  result.loss = lossValue;
  result.correct = logits.argmax(1).eq(target).sum().item<int64_t>();
  result.count = batch.n;
  result.syncMs = syncMs;
  return result;
}

void Network::SyncFrom(c10d::ProcessGroup& group, int root) {
  std::vector<torch::Tensor> state = module_->parameters(true);
  for (const auto& b : module_->buffers(true)) state.push_back(b);
  Broadcast(group, state, root);
}

std::vector<float> Network::Predict(const Batch& batch, bool bf16, bool raw, std::vector<float>* attention) {
  torch::InferenceMode inference;
  torch::Tensor x = ToInput(batch);
  module_->eval();
  torch::Tensor logits;
  {
    AutocastGuard autocast(bf16);
    logits = Forward(x);
  }
  torch::Tensor out = logits.to(torch::kFloat);
  if (!raw) out = torch::softmax(out, 1);
  out = out.contiguous();
  if (attention) {
    const Layer* pool = nullptr;
    for (const Layer& layer : layers_)
      if (layer.spec.type == LayerType::AttentionPool) pool = &layer;
    if (!pool) throw std::invalid_argument("the network has no attention pool to report");
    torch::Tensor scores = pool->scores.contiguous();
    attention->assign(scores.data_ptr<float>(), scores.data_ptr<float>() + scores.numel());
  }
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
}

std::vector<NamedTensor> Network::ExportTensors() const {
  std::vector<NamedTensor> out;
  auto add = [&out](const std::string& name, const torch::Tensor& t, bool buffer) {
    torch::Tensor c = t.detach().to(torch::kFloat).contiguous();
    NamedTensor n;
    n.name = name;
    n.shape = c.sizes().vec();
    n.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
    n.buffer = buffer;
    n.trainable = !buffer && t.requires_grad();
    out.push_back(std::move(n));
  };
  for (const auto& p : module_->named_parameters(true)) add(p.key(), p.value(), false);
  for (const auto& b : module_->named_buffers(true)) {
    // A step counter, only used when momentum is unset; not a weight.
    if (b.key().size() >= 19 && b.key().compare(b.key().size() - 19, 19, "num_batches_tracked") == 0) continue;
    add(b.key(), b.value(), true);
  }
  return out;
}

ImportReport Network::ImportTensors(const std::vector<NamedTensor>& tensors, bool strict) {
  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : module_->named_parameters(true)) targets[p.key()] = p.value();
  for (const auto& b : module_->named_buffers(true)) targets[b.key()] = b.value();
  ImportReport report;
  std::vector<std::pair<torch::Tensor, const NamedTensor*>> plan;
  std::map<std::string, bool> seen;
  for (const NamedTensor& t : tensors) {
    auto it = targets.find(t.name);
    if (it == targets.end()) {
      report.unexpected.push_back(t.name);
      continue;
    }
    if (seen[t.name]) throw std::invalid_argument("tensor '" + t.name + "' is given twice");
    seen[t.name] = true;
    if (it->second.sizes().vec() != t.shape) {
      throw std::invalid_argument("tensor '" + t.name + "' has shape " + ShapeText(t.shape) + " but the network needs " +
                                  ShapeText(it->second.sizes().vec()));
    }
    plan.emplace_back(it->second, &t);
  }
  for (const auto& [name, tensor] : targets) {
    const bool counter = name.size() >= 19 && name.compare(name.size() - 19, 19, "num_batches_tracked") == 0;
    if (!seen.count(name) && !counter) report.missing.push_back(name);
  }
  if (strict && (!report.missing.empty() || !report.unexpected.empty())) {
    std::string msg = "the weights do not match the network:";
    if (!report.missing.empty()) msg += " missing " + std::to_string(report.missing.size()) + " (first '" + report.missing[0] + "')";
    if (!report.unexpected.empty()) msg += " unexpected " + std::to_string(report.unexpected.size()) + " (first '" + report.unexpected[0] + "')";
    throw std::invalid_argument(msg);
  }
  torch::NoGradGuard noGrad;
  for (auto& [target, source] : plan) {
    auto src = torch::from_blob(const_cast<float*>(source->data.data()), source->shape, torch::kFloat);
    target.copy_(src);
    report.loaded.push_back(source->name);
  }
  return report;
}

int64_t Network::SetTrainable(const std::vector<std::string>& prefixes, bool trainable) {
  int64_t changed = 0;
  for (auto& p : module_->named_parameters(true)) {
    bool match = false;
    for (const auto& prefix : prefixes) match = match || p.key().compare(0, prefix.size(), prefix) == 0;
    if (!match) continue;
    p.value().requires_grad_(trainable);
    // A stale gradient would let momentum keep moving a frozen weight.
    if (!trainable) p.value().mutable_grad().reset();
    changed++;
  }
  return changed;
}

void Network::ConfigureOptimizer(const OptimizerConfig& c) {
  auto params = module_->parameters(true);
  if (c.type == "sgd") {
    optimizer_ = std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(c.learningRate).momentum(c.momentum).nesterov(c.nesterov).weight_decay(c.weightDecay));
  } else if (c.type == "adam") {
    optimizer_ = std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(c.learningRate).betas({c.beta1, c.beta2}).eps(c.epsilon).weight_decay(c.weightDecay));
  } else if (c.type == "adamw") {
    optimizer_ = std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(c.learningRate).betas({c.beta1, c.beta2}).eps(c.epsilon).weight_decay(c.weightDecay));
  } else {
    throw std::invalid_argument("unknown optimizer '" + c.type + "' (sgd, adam or adamw)");
  }
}

void Network::SetLearningRate(double learningRate) {
  if (!optimizer_) throw std::invalid_argument("configure an optimizer before setting its learning rate");
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(learningRate);
}

std::string Network::SaveOptimizerState() const {
  if (!optimizer_) throw std::invalid_argument("there is no optimizer to save");
  torch::serialize::OutputArchive archive;
  optimizer_->save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

void Network::LoadOptimizerState(const std::string& bytes) {
  if (!optimizer_) throw std::invalid_argument("configure the optimizer before loading its state");
  torch::serialize::InputArchive archive;
  archive.load_from(bytes.data(), bytes.size());
  optimizer_->load(archive);
}

}  // namespace pathotype

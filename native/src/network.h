// A network built from a NetworkSpec, with the training and inference steps the addon exposes.
// Knows nothing of Node: network_wrap.cc adapts it to JavaScript.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "errors.h"
#include "spec.h"

namespace pathotype {

struct Batch {
  const uint8_t* data = nullptr;  // uint8 NHWC pixels, or
  const float* floats = nullptr;  // float NHWC values (features of a bag's instances)
  int64_t n = 0, h = 0, w = 0, c = 0;
};

// Options arrive filled and validated from TypeScript (src/engine/network.ts holds the defaults);
// the zero values here only keep the structs initialised.
struct TrainOptions {
  bool flip = false;
  bool rotate90 = false;
  bool bf16 = false;
  bool frozenBatchNormEval = false;
  // Every batch norm uses its running statistics, as Keras advises when fine-tuning: small
  // batches of one tissue type would otherwise fit statistics that inference never sees.
  bool batchNormEval = false;
  double labelSmoothing = 0.0;
  std::vector<float> classWeights;  // empty: all classes weigh the same
};

struct StepResult {
  double loss = 0.0;
  int64_t correct = 0;
  int64_t count = 0;
  // Time spent in the group's collectives (buffer broadcast, gradient all-reduce).
  double syncMs = 0.0;
};

struct OptimizerConfig {
  std::string type;  // sgd | adam | adamw
  double learningRate = 0.0;
  double momentum = 0.0;
  bool nesterov = false;
  double weightDecay = 0.0;
  double beta1 = 0.0, beta2 = 0.0, epsilon = 0.0;
};

struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
  bool buffer = false;
  bool trainable = false;
};

struct ImportReport {
  std::vector<std::string> loaded, missing, unexpected;
};

struct Layer;
}  // namespace pathotype

namespace c10d {
class ProcessGroup;
}

namespace pathotype {

class Network {
 public:
  explicit Network(NetworkSpec spec);
  ~Network();

  // With a process group: buffers from rank 0 before the forward pass and gradients averaged
  // across the group before the optimizer steps, as DistributedDataParallel does.
  StepResult TrainStep(const Batch& batch, const int32_t* labels, const TrainOptions& options,
                       c10d::ProcessGroup* group = nullptr);
  // Every parameter and buffer from rank `root` of the group: the same start on every rank.
  void SyncFrom(c10d::ProcessGroup& group, int root);
  // Softmax probabilities (or logits when raw), n x classes, row-major. With `attention`, also the
  // attention pool's score of each instance before its softmax over the bag, n x instances.
  std::vector<float> Predict(const Batch& batch, bool bf16, bool raw, std::vector<float>* attention = nullptr);
  std::vector<NamedTensor> ExportTensors() const;
  // Validates every tensor before it changes any, so a failed import leaves the network as it was.
  ImportReport ImportTensors(const std::vector<NamedTensor>& tensors, bool strict);
  int64_t SetTrainable(const std::vector<std::string>& prefixes, bool trainable);
  void ConfigureOptimizer(const OptimizerConfig& config);
  void SetLearningRate(double learningRate);
  std::string SaveOptimizerState() const;
  void LoadOptimizerState(const std::string& bytes);

  int64_t classes() const { return spec_.classes; }
  // Held by every call that touches the network, so calls queued from JavaScript run one at a time.
  std::mutex& mutex() { return mutex_; }

 private:
  torch::Tensor ToInput(const Batch& batch) const;
  torch::Tensor Augment(torch::Tensor x, bool flip, bool rotate90) const;
  torch::Tensor Forward(const torch::Tensor& x);
  void SetTrainingMode(bool frozenBatchNormEval, bool batchNormEval);

  NetworkSpec spec_;
  std::shared_ptr<torch::nn::Module> module_;
  std::vector<Layer> layers_;
  std::vector<torch::nn::BatchNorm2d> batchNorms_;
  torch::Tensor mean_, std_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::mutex mutex_;
};

// Applied by each worker before it computes: OpenMP's thread count is per calling thread.
void SetThreads(int threads);
int GetThreads();
void ApplyThreads();

}  // namespace pathotype

#include "distributed.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <stdexcept>

namespace pathotype {

c10::intrusive_ptr<c10d::ProcessGroup> CreateGroup(const GroupOptions& options) {
  if (options.worldSize < 1 || options.rank < 0 || options.rank >= options.worldSize) {
    throw std::invalid_argument("rank " + std::to_string(options.rank) + " is outside a world of " +
                                std::to_string(options.worldSize));
  }
  const auto timeout = std::chrono::milliseconds(options.timeoutMs);
  c10d::TCPStoreOptions storeOptions;
  storeOptions.port = static_cast<std::uint16_t>(options.port);
  storeOptions.isServer = options.rank == 0;
  storeOptions.numWorkers = static_cast<std::size_t>(options.worldSize);
  storeOptions.waitWorkers = true;
  storeOptions.timeout = timeout;
  auto store = c10::make_intrusive<c10d::TCPStore>(options.host, storeOptions);
  auto glooOptions = c10d::ProcessGroupGloo::Options::create(timeout);
  glooOptions->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(options.host));
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, options.rank, options.worldSize, glooOptions);
}

void AllReduceGradients(c10d::ProcessGroup& group, const std::vector<torch::Tensor>& parameters) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters) {
    if (p.requires_grad() && p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return;
  std::vector<torch::Tensor> flat;
  flat.reserve(grads.size());
  for (const auto& g : grads) flat.push_back(g.contiguous().view(-1));
  std::vector<torch::Tensor> bucket{torch::cat(flat)};
  group.allreduce(bucket)->wait();
  bucket[0].div_(group.getSize());
  int64_t offset = 0;
  for (auto& g : grads) {
    const int64_t n = g.numel();
    g.copy_(bucket[0].narrow(0, offset, n).view(g.sizes()));
    offset += n;
  }
}

void Broadcast(c10d::ProcessGroup& group, const std::vector<torch::Tensor>& tensors, int root) {
  if (tensors.empty()) return;
  torch::NoGradGuard noGrad;
  std::vector<torch::Tensor> flat;
  flat.reserve(tensors.size());
  for (const auto& t : tensors) flat.push_back(t.detach().to(torch::kFloat).contiguous().view(-1));
  std::vector<torch::Tensor> bucket{torch::cat(flat)};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  group.broadcast(bucket, options)->wait();
  int64_t offset = 0;
  for (const auto& t : tensors) {
    const int64_t n = t.numel();
    t.detach().copy_(bucket[0].narrow(0, offset, n).view(t.sizes()).to(t.scalar_type()));
    offset += n;
  }
}

}  // namespace pathotype

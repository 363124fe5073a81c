// Data-parallel training on PyTorch's c10d: a Gloo process group over a TCPStore rendezvous,
// and the collectives PyTorch's DistributedDataParallel performs around a step (gradients
// averaged after backward; parameters and buffers broadcast from rank 0).
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace pathotype {

struct GroupOptions {
  int rank = 0;
  int worldSize = 1;
  std::string host;
  int port = 0;
  int timeoutMs = 0;
};

// Rank 0 serves the rendezvous store; every rank blocks until all have joined (or the timeout).
c10::intrusive_ptr<c10d::ProcessGroup> CreateGroup(const GroupOptions& options);

// Averages the gradients of `parameters` across the group in one flattened all-reduce.
void AllReduceGradients(c10d::ProcessGroup& group, const std::vector<torch::Tensor>& parameters);

// Overwrites every tensor with rank `root`'s values.
void Broadcast(c10d::ProcessGroup& group, const std::vector<torch::Tensor>& tensors, int root);

}  // namespace pathotype

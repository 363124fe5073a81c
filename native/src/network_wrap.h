// The JavaScript face of a Network: every method that computes or waits on the network runs on
// libuv's thread pool and returns a Promise; nothing here decides policy.
#pragma once

#include <napi.h>

#include <memory>

#include "network.h"

namespace pathotype {

class Completions;

// State of one addon instance (the main thread and each worker thread load their own).
struct AddonData {
  Napi::FunctionReference networkConstructor;
  std::unique_ptr<Completions> completions;
  ~AddonData();
};

AddonData* CreateAddonData(Napi::Env env);

class NetworkWrap : public Napi::ObjectWrap<NetworkWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit NetworkWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value TrainStep(const Napi::CallbackInfo& info);
  Napi::Value Predict(const Napi::CallbackInfo& info);
  Napi::Value ExportTensors(const Napi::CallbackInfo& info);
  Napi::Value ImportTensors(const Napi::CallbackInfo& info);
  Napi::Value SetTrainable(const Napi::CallbackInfo& info);
  Napi::Value ConfigureOptimizer(const Napi::CallbackInfo& info);
  Napi::Value SetLearningRate(const Napi::CallbackInfo& info);
  Napi::Value SaveOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value LoadOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value SyncFrom(const Napi::CallbackInfo& info);

  std::shared_ptr<Network> network_;
};

// createNetwork(spec): Promise<NetworkWrap>, built off the event loop.
Napi::Value CreateNetwork(const Napi::CallbackInfo& info);
Napi::Value CreateGroupJs(const Napi::CallbackInfo& info);

}  // namespace pathotype

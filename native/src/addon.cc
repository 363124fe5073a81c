// pathotype's engine addon: builds networks from a TypeScript spec and runs their training and
// inference steps on libtorch. src/engine/native.ts is the only module that loads it.
#include <malloc.h>
#include <napi.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "network_wrap.h"

namespace pathotype {
namespace {

// glibc's default returns every large freed block to the kernel (mmap/munmap, heap trimming,
// one arena per thread), so each forward pass faults its activations in again: perf showed 45%
// of the frozen ResNet50 pass in the kernel's page-fault path, and this policy doubled its speed
// (137 to 280 patches/s, 2-core EPYC). Freed memory is kept for reuse instead; the process keeps
// its high-water mark. PATHOTYPE_MALLOC=system leaves glibc's defaults.
const char* ApplyMemoryPolicy() {
  static const char* policy = "system";
  static std::once_flag once;
  std::call_once(once, [] {
    const char* chosen = std::getenv("PATHOTYPE_MALLOC");
    if (chosen && std::strcmp(chosen, "system") == 0) return;
    mallopt(M_ARENA_MAX, 1);
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
    policy = "keep";
  });
  return policy;
}

Napi::Value SetThreadsJs(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1) {
    throw Napi::TypeError::New(info.Env(), "threads must be a positive integer");
  }
  SetThreads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value GetThreadsJs(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), GetThreads()); }

Napi::Value ManualSeedJs(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "the seed must be a number");
  torch::manual_seed(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()));
  return info.Env().Undefined();
}

Napi::Value InfoJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("torchVersion", TORCH_VERSION);
  out.Set("mkldnn", at::hasMKLDNN());
  out.Set("openmp", at::hasOpenMP());
  out.Set("parallelInfo", at::get_parallel_info());
  out.Set("memoryPolicy", ApplyMemoryPolicy());
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  ApplyMemoryPolicy();
  // Per-instance data, not a static: each worker thread's copy of the addon gets its own.
  env.SetInstanceData<AddonData>(CreateAddonData(env));
  exports.Set("createNetwork", Napi::Function::New(env, CreateNetwork, "createNetwork"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreadsJs, "setThreads"));
  exports.Set("getThreads", Napi::Function::New(env, GetThreadsJs, "getThreads"));
  exports.Set("manualSeed", Napi::Function::New(env, ManualSeedJs, "manualSeed"));
  exports.Set("info", Napi::Function::New(env, InfoJs, "info"));
  exports.Set("createGroup", Napi::Function::New(env, CreateGroupJs, "createGroup"));
  return exports;
}

}  // namespace
}  // namespace pathotype

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return pathotype::Init(env, exports); }

NODE_API_MODULE(pathotype_engine, InitAddon)

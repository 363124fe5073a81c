#include "network_wrap.h"

#include <functional>
#include <utility>

#include "compute_thread.h"
#include "distributed.h"
#include "errors.h"

namespace pathotype {

// Per addon instance: the channel through which the compute thread hands finished jobs back to
// this instance's JavaScript thread. Referenced only while jobs are in flight, so an idle engine
// never keeps Node alive.
class Completions {
 public:
  using Done = std::function<void(Napi::Env)>;

  explicit Completions(Napi::Env env) {
    tsfn_ = Tsfn::New(env, "pathotype:engine", 0, 1);
    tsfn_.Unref(env);
  }
  void Started(Napi::Env env) {
    if (inFlight_++ == 0) tsfn_.Ref(env);
  }
  void Finished(Napi::Env env) {
    if (--inFlight_ == 0) tsfn_.Unref(env);
  }
  // From the compute thread: runs done(env) on the JavaScript thread.
  void Deliver(Done* done) {
    if (tsfn_.BlockingCall(done) != napi_ok) delete done;  // the environment is shutting down
  }

 private:
  static void Call(Napi::Env env, Napi::Function, std::nullptr_t*, Done* done) {
    std::unique_ptr<Done> owned(done);
    if (env != nullptr) (*owned)(env);
  }
  using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, Done, Call>;
  Tsfn tsfn_;
  int inFlight_ = 0;
};

namespace {

// Runs `execute` on the compute thread and settles a promise with `convert`'s value, or with an
// Error carrying a `code`. `Result` is produced on the compute thread and read on the JS thread.
template <typename Result>
class Task {
 public:
  using Execute = std::function<Result()>;
  using Convert = std::function<Napi::Value(Napi::Env, Result&)>;

  static Napi::Promise Queue(Napi::Env env, Execute execute, Convert convert) {
    auto task = std::make_shared<Task>(env, std::move(execute), std::move(convert));
    Completions* completions = env.GetInstanceData<AddonData>()->completions.get();
    completions->Started(env);
    ComputeThread::Instance().Submit([task, completions] {
      task->succeeded_ = Guard([&] {
        ApplyThreads();
        task->result_ = task->execute_();
      }, task->failure_);
      completions->Deliver(new Completions::Done([task, completions](Napi::Env env) {
        completions->Finished(env);
        task->Settle(env);
      }));
    });
    return task->deferred_.Promise();
  }

  Task(Napi::Env env, Execute execute, Convert convert)
      : deferred_(Napi::Promise::Deferred::New(env)), execute_(std::move(execute)), convert_(std::move(convert)) {}

 private:
  void Settle(Napi::Env env) {
    Napi::HandleScope scope(env);
    Napi::Value value;
    if (succeeded_ && Guard([&] { value = convert_(env, result_); }, failure_)) {
      deferred_.Resolve(value);
      return;
    }
    Napi::Error error = Napi::Error::New(env, failure_.message);
    error.Set("code", Napi::String::New(env, failure_.code));
    deferred_.Reject(error.Value());
  }

  Napi::Promise::Deferred deferred_;
  Execute execute_;
  Convert convert_;
  Result result_{};
  Failure failure_;
  bool succeeded_ = false;
};

struct Nothing {};

Napi::Value Undefined(Napi::Env env, Nothing&) { return env.Undefined(); }

void ThrowInput(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_ENGINE_INPUT"));
  throw error;
}

// Copies an NHWC batch (uint8 pixels, or float features of a bag's instances) out of JavaScript
// memory, so that the worker never reads memory the caller may change or free while it runs.
struct OwnedBatch {
  std::vector<uint8_t> bytes;
  std::vector<float> floats;
  int64_t n = 0, h = 0, w = 0, c = 0;
  Batch view() const {
    return Batch{floats.empty() ? bytes.data() : nullptr, floats.empty() ? nullptr : floats.data(), n, h, w, c};
  }
};

OwnedBatch ReadBatch(const Napi::CallbackInfo& info, size_t dataIndex, size_t shapeIndex) {
  Napi::Env env = info.Env();
  const bool typed = info[dataIndex].IsTypedArray();
  const napi_typedarray_type kind = typed ? info[dataIndex].As<Napi::TypedArray>().TypedArrayType() : napi_int8_array;
  if (kind != napi_uint8_array && kind != napi_float32_array) {
    ThrowInput(env, "the batch must be a Uint8Array of NHWC pixels or a Float32Array of NHWC values");
  }
  if (!info[shapeIndex].IsArray() || info[shapeIndex].As<Napi::Array>().Length() != 4) {
    ThrowInput(env, "the batch shape must be [n, height, width, channels]");
  }
  Napi::Array shape = info[shapeIndex].As<Napi::Array>();
  int64_t dims[4];
  for (uint32_t i = 0; i < 4; i++) {
    Napi::Value v = shape.Get(i);
    if (!v.IsNumber()) ThrowInput(env, "the batch shape must hold integers");
    double d = v.As<Napi::Number>().DoubleValue();
    if (d < 0 || d > 1e9 || d != static_cast<double>(static_cast<int64_t>(d))) {
      ThrowInput(env, "the batch shape must hold non-negative integers");
    }
    dims[i] = static_cast<int64_t>(d);
  }
  const int64_t expected = dims[0] * dims[1] * dims[2] * dims[3];
  const size_t length = info[dataIndex].As<Napi::TypedArray>().ElementLength();
  if (static_cast<int64_t>(length) != expected) {
    ThrowInput(env, "the batch has " + std::to_string(length) + " values but its shape needs " +
                        std::to_string(expected));
  }
  OwnedBatch batch;
  if (kind == napi_uint8_array) {
    Napi::Uint8Array data = info[dataIndex].As<Napi::Uint8Array>();
    batch.bytes.assign(data.Data(), data.Data() + length);
  } else {
    Napi::Float32Array data = info[dataIndex].As<Napi::Float32Array>();
    batch.floats.assign(data.Data(), data.Data() + length);
  }
  batch.n = dims[0];
  batch.h = dims[1];
  batch.w = dims[2];
  batch.c = dims[3];
  return batch;
}

// Options are required: the TypeScript layer (src/engine/network.ts) validates them and fills
// every default, so the addon holds no policy of its own.
Napi::Value RequiredOption(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) ThrowInput(o.Env(), std::string("option '") + key + "' is missing");
  return v;
}

bool BoolOption(const Napi::Object& o, const char* key) {
  Napi::Value v = RequiredOption(o, key);
  if (!v.IsBoolean()) ThrowInput(o.Env(), std::string("option '") + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

double NumberOption(const Napi::Object& o, const char* key) {
  Napi::Value v = RequiredOption(o, key);
  if (!v.IsNumber()) ThrowInput(o.Env(), std::string("option '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined()) return Napi::Object::New(info.Env());
  if (!info[index].IsObject()) ThrowInput(info.Env(), "options must be an object");
  return info[index].As<Napi::Object>();
}

Napi::Array Strings(Napi::Env env, const std::vector<std::string>& items) {
  Napi::Array out = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); i++) out.Set(i, items[i]);
  return out;
}

using GroupHandle = c10::intrusive_ptr<c10d::ProcessGroup>;

GroupHandle GroupOf(const Napi::Value& value) {
  if (!value.IsExternal()) ThrowInput(value.Env(), "not a process group (from createGroup)");
  return *value.As<Napi::External<GroupHandle>>().Data();
}

}  // namespace

Napi::Function NetworkWrap::Define(Napi::Env env) {
  return DefineClass(env, "Network",
                     {
                         InstanceMethod<&NetworkWrap::TrainStep>("trainStep"),
                         InstanceMethod<&NetworkWrap::Predict>("predict"),
                         InstanceMethod<&NetworkWrap::ExportTensors>("exportTensors"),
                         InstanceMethod<&NetworkWrap::ImportTensors>("importTensors"),
                         InstanceMethod<&NetworkWrap::SetTrainable>("setTrainable"),
                         InstanceMethod<&NetworkWrap::ConfigureOptimizer>("configureOptimizer"),
                         InstanceMethod<&NetworkWrap::SetLearningRate>("setLearningRate"),
                         InstanceMethod<&NetworkWrap::SaveOptimizerState>("saveOptimizerState"),
                         InstanceMethod<&NetworkWrap::LoadOptimizerState>("loadOptimizerState"),
                         InstanceMethod<&NetworkWrap::SyncFrom>("syncFrom"),
                     });
}

NetworkWrap::NetworkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NetworkWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    ThrowInput(info.Env(), "networks are made by createNetwork(spec), not by new");
  }
  network_ = *info[0].As<Napi::External<std::shared_ptr<Network>>>().Data();
}

Napi::Value NetworkWrap::TrainStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto batch = std::make_shared<OwnedBatch>(ReadBatch(info, 0, 1));
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    ThrowInput(env, "labels must be an Int32Array");
  }
  Napi::Int32Array labelArray = info[2].As<Napi::Int32Array>();
  if (static_cast<int64_t>(labelArray.ElementLength()) != batch->n) {
    ThrowInput(env, "there are " + std::to_string(labelArray.ElementLength()) + " labels for a batch of " +
                        std::to_string(batch->n));
  }
  auto labels = std::make_shared<std::vector<int32_t>>(labelArray.Data(), labelArray.Data() + labelArray.ElementLength());
  Napi::Object o = OptionsArg(info, 3);
  TrainOptions options;
  options.flip = BoolOption(o, "flip");
  options.rotate90 = BoolOption(o, "rotate90");
  options.bf16 = BoolOption(o, "bf16");
  options.frozenBatchNormEval = BoolOption(o, "frozenBatchNormEval");
  options.batchNormEval = BoolOption(o, "batchNormEval");
  options.labelSmoothing = NumberOption(o, "labelSmoothing");
  Napi::Value weights = o.Get("classWeights");
  if (!weights.IsUndefined()) {
    if (!weights.IsTypedArray() || weights.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      ThrowInput(env, "classWeights must be a Float32Array");
    }
    Napi::Float32Array w = weights.As<Napi::Float32Array>();
    options.classWeights.assign(w.Data(), w.Data() + w.ElementLength());
  }
  auto network = network_;
  // Optional fifth argument: a process group from createGroup, for data-parallel training.
  GroupHandle group = info.Length() > 4 && !info[4].IsUndefined() ? GroupOf(info[4]) : GroupHandle();
  return Task<StepResult>::Queue(
      env,
      [network, batch, labels, options, group] {
        std::lock_guard<std::mutex> lock(network->mutex());
        return network->TrainStep(batch->view(), labels->data(), options, group.get());
      },
      [](Napi::Env env, StepResult& r) {
        Napi::Object out = Napi::Object::New(env);
        out.Set("loss", r.loss);
        out.Set("correct", static_cast<double>(r.correct));
        out.Set("count", static_cast<double>(r.count));
        out.Set("syncMs", r.syncMs);
        return out;
      });
}

Napi::Value NetworkWrap::Predict(const Napi::CallbackInfo& info) {
  auto batch = std::make_shared<OwnedBatch>(ReadBatch(info, 0, 1));
  Napi::Object o = OptionsArg(info, 2);
  bool bf16 = BoolOption(o, "bf16");
  bool raw = BoolOption(o, "raw");
  bool attention = BoolOption(o, "attention");
  auto network = network_;
  struct Output {
    std::vector<float> values, attention;
  };
  return Task<Output>::Queue(
      info.Env(),
      [network, batch, bf16, raw, attention] {
        std::lock_guard<std::mutex> lock(network->mutex());
        Output out;
        out.values = network->Predict(batch->view(), bf16, raw, attention ? &out.attention : nullptr);
        return out;
      },
      [attention](Napi::Env env, Output& result) -> Napi::Value {
        auto typed = [env](const std::vector<float>& values) {
          Napi::Float32Array out = Napi::Float32Array::New(env, values.size());
          std::copy(values.begin(), values.end(), out.Data());
          return out;
        };
        if (!attention) return typed(result.values);
        Napi::Object out = Napi::Object::New(env);
        out.Set("values", typed(result.values));
        out.Set("attention", typed(result.attention));
        return out;
      });
}

Napi::Value NetworkWrap::ExportTensors(const Napi::CallbackInfo& info) {
  auto network = network_;
  return Task<std::vector<NamedTensor>>::Queue(
      info.Env(),
      [network] {
        std::lock_guard<std::mutex> lock(network->mutex());
        return network->ExportTensors();
      },
      [](Napi::Env env, std::vector<NamedTensor>& tensors) {
        Napi::Array out = Napi::Array::New(env, tensors.size());
        for (size_t i = 0; i < tensors.size(); i++) {
          NamedTensor& t = tensors[i];
          Napi::Object o = Napi::Object::New(env);
          o.Set("name", t.name);
          Napi::Array shape = Napi::Array::New(env, t.shape.size());
          for (size_t d = 0; d < t.shape.size(); d++) shape.Set(d, static_cast<double>(t.shape[d]));
          o.Set("shape", shape);
          Napi::Float32Array data = Napi::Float32Array::New(env, t.data.size());
          std::copy(t.data.begin(), t.data.end(), data.Data());
          o.Set("data", data);
          o.Set("buffer", t.buffer);
          o.Set("trainable", t.trainable);
          out.Set(i, o);
        }
        return out;
      });
}

Napi::Value NetworkWrap::ImportTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) ThrowInput(env, "importTensors takes an array of {name, shape, data}");
  Napi::Array list = info[0].As<Napi::Array>();
  auto tensors = std::make_shared<std::vector<NamedTensor>>();
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value item = list.Get(i);
    if (!item.IsObject()) ThrowInput(env, "tensor " + std::to_string(i) + " is not an object");
    Napi::Object o = item.As<Napi::Object>();
    NamedTensor t;
    if (!o.Get("name").IsString()) ThrowInput(env, "tensor " + std::to_string(i) + " has no name");
    t.name = o.Get("name").As<Napi::String>().Utf8Value();
    Napi::Value data = o.Get("data");
    if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      ThrowInput(env, "tensor '" + t.name + "' data must be a Float32Array");
    }
    if (!o.Get("shape").IsArray()) ThrowInput(env, "tensor '" + t.name + "' has no shape");
    Napi::Array shape = o.Get("shape").As<Napi::Array>();
    int64_t count = 1;
    for (uint32_t d = 0; d < shape.Length(); d++) {
      Napi::Value dim = shape.Get(d);
      if (!dim.IsNumber() || dim.As<Napi::Number>().DoubleValue() < 0) {
        ThrowInput(env, "tensor '" + t.name + "' shape must hold non-negative integers");
      }
      t.shape.push_back(dim.As<Napi::Number>().Int64Value());
      count *= t.shape.back();
    }
    Napi::Float32Array values = data.As<Napi::Float32Array>();
    if (static_cast<int64_t>(values.ElementLength()) != count) {
      ThrowInput(env, "tensor '" + t.name + "' holds " + std::to_string(values.ElementLength()) +
                          " values but its shape needs " + std::to_string(count));
    }
    t.data.assign(values.Data(), values.Data() + values.ElementLength());
    tensors->push_back(std::move(t));
  }
  bool strict = info.Length() < 2 || info[1].IsUndefined() || info[1].ToBoolean().Value();
  auto network = network_;
  return Task<ImportReport>::Queue(
      env,
      [network, tensors, strict] {
        std::lock_guard<std::mutex> lock(network->mutex());
        return network->ImportTensors(*tensors, strict);
      },
      [](Napi::Env env, ImportReport& r) {
        Napi::Object out = Napi::Object::New(env);
        out.Set("loaded", Strings(env, r.loaded));
        out.Set("missing", Strings(env, r.missing));
        out.Set("unexpected", Strings(env, r.unexpected));
        return out;
      });
}

Napi::Value NetworkWrap::SetTrainable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray() || !info[1].IsBoolean()) ThrowInput(env, "setTrainable takes (prefixes: string[], trainable: boolean)");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<std::string> prefixes;
  for (uint32_t i = 0; i < list.Length(); i++) {
    if (!list.Get(i).IsString()) ThrowInput(env, "prefixes must be strings");
    prefixes.push_back(list.Get(i).As<Napi::String>().Utf8Value());
  }
  bool trainable = info[1].As<Napi::Boolean>().Value();
  auto network = network_;
  return Task<int64_t>::Queue(
      env,
      [network, prefixes, trainable] {
        std::lock_guard<std::mutex> lock(network->mutex());
        return network->SetTrainable(prefixes, trainable);
      },
      [](Napi::Env env, int64_t& n) { return Napi::Number::New(env, static_cast<double>(n)); });
}

Napi::Value NetworkWrap::ConfigureOptimizer(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  OptimizerConfig c;
  Napi::Value type = o.Get("type");
  if (!type.IsString()) ThrowInput(info.Env(), "optimizer type must be 'sgd', 'adam' or 'adamw'");
  c.type = type.As<Napi::String>().Utf8Value();
  c.learningRate = NumberOption(o, "learningRate");
  c.momentum = NumberOption(o, "momentum");
  c.nesterov = BoolOption(o, "nesterov");
  c.weightDecay = NumberOption(o, "weightDecay");
  c.beta1 = NumberOption(o, "beta1");
  c.beta2 = NumberOption(o, "beta2");
  c.epsilon = NumberOption(o, "epsilon");
  auto network = network_;
  return Task<Nothing>::Queue(
      info.Env(),
      [network, c] {
        std::lock_guard<std::mutex> lock(network->mutex());
        network->ConfigureOptimizer(c);
        return Nothing{};
      },
      Undefined);
}

Napi::Value NetworkWrap::SetLearningRate(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber()) ThrowInput(info.Env(), "the learning rate must be a number");
  double lr = info[0].As<Napi::Number>().DoubleValue();
  auto network = network_;
  return Task<Nothing>::Queue(
      info.Env(),
      [network, lr] {
        std::lock_guard<std::mutex> lock(network->mutex());
        network->SetLearningRate(lr);
        return Nothing{};
      },
      Undefined);
}

Napi::Value NetworkWrap::SaveOptimizerState(const Napi::CallbackInfo& info) {
  auto network = network_;
  return Task<std::string>::Queue(
      info.Env(),
      [network] {
        std::lock_guard<std::mutex> lock(network->mutex());
        return network->SaveOptimizerState();
      },
      [](Napi::Env env, std::string& bytes) { return Napi::Buffer<char>::Copy(env, bytes.data(), bytes.size()); });
}

Napi::Value NetworkWrap::LoadOptimizerState(const Napi::CallbackInfo& info) {
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowInput(info.Env(), "the optimizer state must be a Uint8Array");
  }
  Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
  auto bytes = std::make_shared<std::string>(reinterpret_cast<const char*>(data.Data()), data.ElementLength());
  auto network = network_;
  return Task<Nothing>::Queue(
      info.Env(),
      [network, bytes] {
        std::lock_guard<std::mutex> lock(network->mutex());
        network->LoadOptimizerState(*bytes);
        return Nothing{};
      },
      Undefined);
}

AddonData::~AddonData() = default;

AddonData* CreateAddonData(Napi::Env env) {
  auto* data = new AddonData();
  data->networkConstructor = Napi::Persistent(NetworkWrap::Define(env));
  data->completions = std::make_unique<Completions>(env);
  return data;
}

Napi::Value NetworkWrap::SyncFrom(const Napi::CallbackInfo& info) {
  GroupHandle group = GroupOf(info[0]);
  if (!info[1].IsNumber()) ThrowInput(info.Env(), "the root rank must be a number");
  const int root = info[1].As<Napi::Number>().Int32Value();
  auto network = network_;
  return Task<Nothing>::Queue(
      info.Env(),
      [network, group, root] {
        std::lock_guard<std::mutex> lock(network->mutex());
        network->SyncFrom(*group, root);
        return Nothing{};
      },
      Undefined);
}

// createGroup({rank, worldSize, host, port, timeoutMs}): joins the rendezvous on the compute
// thread (it waits for every rank), then resolves with the group's handle.
Napi::Value CreateGroupJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowInput(env, "createGroup takes an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  if (!o.Get("host").IsString()) ThrowInput(env, "option 'host' must be a string");
  GroupOptions options;
  options.rank = static_cast<int>(NumberOption(o, "rank"));
  options.worldSize = static_cast<int>(NumberOption(o, "worldSize"));
  options.port = static_cast<int>(NumberOption(o, "port"));
  options.timeoutMs = static_cast<int>(NumberOption(o, "timeoutMs"));
  options.host = o.Get("host").As<Napi::String>().Utf8Value();
  return Task<GroupHandle>::Queue(
      env, [options] { return CreateGroup(options); },
      [](Napi::Env env, GroupHandle& group) {
        return Napi::Value(Napi::External<GroupHandle>::New(
            env, new GroupHandle(group), [](Napi::Env, GroupHandle* g) { delete g; }));
      });
}

Napi::Value CreateNetwork(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) ThrowInput(env, "createNetwork takes a network spec object");
  NetworkSpec spec;
  Failure failure;
  if (!Guard([&] { spec = ParseNetworkSpec(info[0].As<Napi::Object>()); }, failure)) {
    ThrowInput(env, failure.message);
  }
  auto specPtr = std::make_shared<NetworkSpec>(std::move(spec));
  return Task<std::shared_ptr<Network>>::Queue(
      env, [specPtr] { return std::make_shared<Network>(std::move(*specPtr)); },
      [](Napi::Env env, std::shared_ptr<Network>& network) {
        Napi::FunctionReference* data = &env.GetInstanceData<AddonData>()->networkConstructor;
        // The external only carries the pointer into the constructor; the wrap keeps its own copy.
        std::shared_ptr<Network> carried = network;
        Napi::Value external = Napi::External<std::shared_ptr<Network>>::New(env, &carried);
        return Napi::Value(data->New({external}));
      });
}

}  // namespace pathotype

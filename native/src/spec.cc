#include "spec.h"

#include <stdexcept>

namespace pathotype {
namespace {

Napi::Value Field(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    throw std::invalid_argument(where + ": missing field '" + key + "'");
  }
  return v;
}

int64_t Int(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = Field(o, key, where);
  if (!v.IsNumber()) throw std::invalid_argument(where + ": '" + key + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) {
    throw std::invalid_argument(where + ": '" + key + "' must be an integer");
  }
  return static_cast<int64_t>(d);
}

// Every field is required: the TypeScript spec (src/engine/spec.ts) fills the defaults, so the
// addon holds no policy of its own.
double Num(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = Field(o, key, where);
  if (!v.IsNumber()) throw std::invalid_argument(where + ": '" + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool Bool(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = Field(o, key, where);
  if (!v.IsBoolean()) throw std::invalid_argument(where + ": '" + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string Str(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = Field(o, key, where);
  if (!v.IsString()) throw std::invalid_argument(where + ": '" + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::array<int64_t, 2> Pair(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = Field(o, key, where);
  if (v.IsNumber()) {
    int64_t n = Int(o, key, where);
    return {n, n};
  }
  if (v.IsArray() && v.As<Napi::Array>().Length() == 2) {
    Napi::Array a = v.As<Napi::Array>();
    Napi::Object pair = Napi::Object::New(o.Env());
    pair.Set("a", a.Get(0u));
    pair.Set("b", a.Get(1u));
    return {Int(pair, "a", where + "." + key), Int(pair, "b", where + "." + key)};
  }
  throw std::invalid_argument(where + ": '" + key + "' must be a number or a pair of numbers");
}

std::vector<double> Doubles(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = Field(o, key, where);
  if (!v.IsArray()) throw std::invalid_argument(where + ": '" + key + "' must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<double> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) throw std::invalid_argument(where + ": '" + key + "' must hold numbers");
    out.push_back(e.As<Napi::Number>().DoubleValue());
  }
  return out;
}

std::vector<LayerSpec> ParseLayers(const Napi::Value& value, const std::string& where);

LayerSpec ParseLayer(const Napi::Object& o, const std::string& where) {
  LayerSpec l;
  std::string type = Str(o, "type", where);
  Napi::Value name = o.Get("name");
  if (name.IsString()) l.name = name.As<Napi::String>().Utf8Value();
  std::string at = where + (l.name.empty() ? " (" + type + ")" : " '" + l.name + "'");
  if (type == "conv2d") {
    l.type = LayerType::Conv2d;
    l.inChannels = Int(o, "inChannels", at);
    l.filters = Int(o, "filters", at);
    l.kernel = Pair(o, "kernelSize", at);
    l.stride = Pair(o, "strides", at);
    l.groups = Int(o, "groups", at);
    l.bias = Bool(o, "useBias", at);
    std::string pad = Str(o, "padding", at);
    if (pad != "same" && pad != "valid") throw std::invalid_argument(at + ": padding must be 'same' or 'valid'");
    l.padding = pad == "same" ? Padding::Same : Padding::Valid;
  } else if (type == "batchNorm") {
    l.type = LayerType::BatchNorm;
    l.features = Int(o, "features", at);
    l.epsilon = Num(o, "epsilon", at);
    l.momentum = Num(o, "momentum", at);
  } else if (type == "relu") {
    l.type = LayerType::Relu;
  } else if (type == "relu6") {
    l.type = LayerType::Relu6;
  } else if (type == "maxPool" || type == "avgPool") {
    l.type = type == "maxPool" ? LayerType::MaxPool : LayerType::AvgPool;
    l.kernel = Pair(o, "poolSize", at);
    l.stride = Pair(o, "strides", at);
    std::string pad = Str(o, "padding", at);
    if (pad != "same" && pad != "valid") throw std::invalid_argument(at + ": padding must be 'same' or 'valid'");
    l.padding = pad == "same" ? Padding::Same : Padding::Valid;
  } else if (type == "globalAvgPool") {
    l.type = LayerType::GlobalAvgPool;
  } else if (type == "flatten") {
    l.type = LayerType::Flatten;
  } else if (type == "dropout") {
    l.type = LayerType::Dropout;
    l.rate = Num(o, "rate", at);
  } else if (type == "linear") {
    l.type = LayerType::Linear;
    l.inFeatures = Int(o, "inFeatures", at);
    l.units = Int(o, "units", at);
    l.bias = Bool(o, "useBias", at);
  } else if (type == "attentionPool") {
    l.type = LayerType::AttentionPool;
    l.inFeatures = Int(o, "inFeatures", at);
    l.units = Int(o, "units", at);
    l.gated = Bool(o, "gated", at);
  } else if (type == "zeroPad") {
    l.type = LayerType::ZeroPad;
    std::vector<double> p = Doubles(o, "padding", at);
    if (p.size() != 4) throw std::invalid_argument(at + ": padding must be [top, bottom, left, right]");
    for (int i = 0; i < 4; i++) l.pad[i] = static_cast<int64_t>(p[i]);
  } else if (type == "residual") {
    l.type = LayerType::Residual;
    l.body = ParseLayers(Field(o, "body", at), at + ".body");
    Napi::Value shortcut = o.Get("shortcut");
    if (!shortcut.IsUndefined() && !shortcut.IsNull()) l.shortcut = ParseLayers(shortcut, at + ".shortcut");
  } else {
    throw std::invalid_argument(at + ": unknown layer type '" + type + "'");
  }
  return l;
}

std::vector<LayerSpec> ParseLayers(const Napi::Value& value, const std::string& where) {
  if (!value.IsArray()) throw std::invalid_argument(where + ": layers must be an array");
  Napi::Array a = value.As<Napi::Array>();
  std::vector<LayerSpec> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw std::invalid_argument(where + "[" + std::to_string(i) + "] must be an object");
    out.push_back(ParseLayer(e.As<Napi::Object>(), where + "[" + std::to_string(i) + "]"));
  }
  return out;
}

}  // namespace

NetworkSpec ParseNetworkSpec(const Napi::Object& spec) {
  NetworkSpec s;
  Napi::Value input = Field(spec, "input", "spec");
  if (!input.IsObject()) throw std::invalid_argument("spec.input must be an object");
  Napi::Object in = input.As<Napi::Object>();
  s.input.height = Int(in, "height", "spec.input");
  s.input.width = Int(in, "width", "spec.input");
  s.input.channels = Int(in, "channels", "spec.input");
  std::string order = Str(in, "channelOrder", "spec.input");
  if (order != "rgb" && order != "bgr") throw std::invalid_argument("spec.input.channelOrder must be 'rgb' or 'bgr'");
  s.input.bgr = order == "bgr";
  s.input.bag = Bool(in, "bag", "spec.input");
  s.input.mean = Doubles(in, "mean", "spec.input");
  s.input.std = Doubles(in, "std", "spec.input");
  if (s.input.mean.size() != static_cast<size_t>(s.input.channels) ||
      s.input.std.size() != static_cast<size_t>(s.input.channels)) {
    throw std::invalid_argument("spec.input: mean and std need one value per channel");
  }
  s.classes = Int(spec, "classes", "spec");
  s.layers = ParseLayers(Field(spec, "layers", "spec"), "spec.layers");
  return s;
}

}  // namespace pathotype

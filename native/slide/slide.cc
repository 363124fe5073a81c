// A narrow binding of OpenSlide for whole-slide images: open a slide (vendor, levels, sizes,
// downsamples, properties, associated images), read a region of a level as 8-bit RGB, read an
// associated image. Every call that touches the file runs off the event loop; the JavaScript
// side (src/data/slide.ts) validates arguments and holds every policy (limits, mpp, levels).
#include <napi.h>
#include <openslide.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

Napi::Error SlideError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

// One open slide; closed once, by close() or when the JavaScript object is collected.
struct Slide {
  std::mutex mutex;
  openslide_t* osr = nullptr;
  ~Slide() {
    if (osr) openslide_close(osr);
  }
};

struct Metadata {
  std::string vendor;
  std::vector<std::pair<int64_t, int64_t>> levels;
  std::vector<double> downsamples;
  std::vector<std::pair<std::string, std::string>> properties;
  std::vector<std::string> associated;
};

// OpenSlide returns premultiplied ARGB; transparent pixels (outside the scanned area) are white.
void ToRgb(const uint32_t* argb, size_t count, uint8_t* rgb) {
  for (size_t i = 0; i < count; i++) {
    const uint32_t p = argb[i];
    const uint32_t a = p >> 24;
    uint32_t r = (p >> 16) & 0xff, g = (p >> 8) & 0xff, b = p & 0xff;
    if (a == 0) {
      r = g = b = 255;
    } else if (a != 255) {
      r = r * 255 / a;
      g = g * 255 / a;
      b = b * 255 / a;
    }
    rgb[i * 3] = static_cast<uint8_t>(r > 255 ? 255 : r);
    rgb[i * 3 + 1] = static_cast<uint8_t>(g > 255 ? 255 : g);
    rgb[i * 3 + 2] = static_cast<uint8_t>(b > 255 ? 255 : b);
  }
}

class OpenWorker : public Napi::AsyncWorker {
 public:
  OpenWorker(Napi::Env env, std::string path)
      : Napi::AsyncWorker(env), path_(std::move(path)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    const char* vendor = openslide_detect_vendor(path_.c_str());
    if (!vendor) {
      code_ = "ERR_SLIDE_UNSUPPORTED";
      SetError("OpenSlide does not recognise " + path_ + " as a slide");
      return;
    }
    meta_.vendor = vendor;
    openslide_t* osr = openslide_open(path_.c_str());
    if (!osr) {
      code_ = "ERR_SLIDE_UNSUPPORTED";
      SetError("OpenSlide cannot open " + path_);
      return;
    }
    const char* error = openslide_get_error(osr);
    if (error) {
      code_ = "ERR_SLIDE";
      SetError(path_ + " is damaged or truncated: " + error);
      openslide_close(osr);
      return;
    }
    slide_ = std::make_shared<Slide>();
    slide_->osr = osr;
    const int32_t count = openslide_get_level_count(osr);
    for (int32_t level = 0; level < count; level++) {
      int64_t w = 0, h = 0;
      openslide_get_level_dimensions(osr, level, &w, &h);
      meta_.levels.emplace_back(w, h);
      meta_.downsamples.push_back(openslide_get_level_downsample(osr, level));
    }
    for (const char* const* name = openslide_get_property_names(osr); name && *name; name++) {
      const char* value = openslide_get_property_value(osr, *name);
      meta_.properties.emplace_back(*name, value ? value : "");
    }
    for (const char* const* name = openslide_get_associated_image_names(osr); name && *name; name++) {
      meta_.associated.emplace_back(*name);
    }
    error = openslide_get_error(osr);
    if (error || count < 1) {
      code_ = "ERR_SLIDE";
      SetError(path_ + " is damaged: " + (error ? error : "no levels"));
      slide_.reset();
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("handle", Napi::External<std::shared_ptr<Slide>>::New(
                          env, new std::shared_ptr<Slide>(slide_),
                          [](Napi::Env, std::shared_ptr<Slide>* s) { delete s; }));
    out.Set("vendor", meta_.vendor);
    Napi::Array levels = Napi::Array::New(env, meta_.levels.size());
    for (size_t i = 0; i < meta_.levels.size(); i++) {
      Napi::Object level = Napi::Object::New(env);
      level.Set("width", static_cast<double>(meta_.levels[i].first));
      level.Set("height", static_cast<double>(meta_.levels[i].second));
      level.Set("downsample", meta_.downsamples[i]);
      levels.Set(i, level);
    }
    out.Set("levels", levels);
    Napi::Object properties = Napi::Object::New(env);
    for (const auto& [name, value] : meta_.properties) properties.Set(name, value);
    out.Set("properties", properties);
    Napi::Array associated = Napi::Array::New(env, meta_.associated.size());
    for (size_t i = 0; i < meta_.associated.size(); i++) associated.Set(i, meta_.associated[i]);
    out.Set("associated", associated);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& e) override {
    deferred_.Reject(SlideError(Env(), code_.empty() ? "ERR_SLIDE" : code_, e.Message()).Value());
  }

 private:
  std::string path_;
  std::string code_;
  Metadata meta_;
  std::shared_ptr<Slide> slide_;
  Napi::Promise::Deferred deferred_;
};

class ReadWorker : public Napi::AsyncWorker {
 public:
  // associated empty: a region of a level; otherwise that associated image whole.
  ReadWorker(Napi::Env env, std::shared_ptr<Slide> slide, int64_t x, int64_t y, int32_t level, int64_t w,
             int64_t h, std::string associated)
      : Napi::AsyncWorker(env),
        slide_(std::move(slide)),
        x_(x),
        y_(y),
        level_(level),
        w_(w),
        h_(h),
        associated_(std::move(associated)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::lock_guard<std::mutex> lock(slide_->mutex);
    openslide_t* osr = slide_->osr;
    if (!osr) {
      SetError("the slide is closed");
      return;
    }
    if (!associated_.empty()) {
      openslide_get_associated_image_dimensions(osr, associated_.c_str(), &w_, &h_);
      if (w_ <= 0 || h_ <= 0) {
        SetError("the slide has no associated image '" + associated_ + "'");
        return;
      }
    }
    std::vector<uint32_t> argb(static_cast<size_t>(w_ * h_));
    if (associated_.empty()) {
      openslide_read_region(osr, argb.data(), x_, y_, level_, w_, h_);
    } else {
      openslide_read_associated_image(osr, associated_.c_str(), argb.data());
    }
    const char* error = openslide_get_error(osr);
    if (error) {
      SetError(std::string("reading the slide failed: ") + error);
      return;
    }
    rgb_.resize(argb.size() * 3);
    ToRgb(argb.data(), argb.size(), rgb_.data());
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("width", static_cast<double>(w_));
    out.Set("height", static_cast<double>(h_));
    out.Set("data", Napi::Buffer<uint8_t>::Copy(env, rgb_.data(), rgb_.size()));
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(SlideError(Env(), "ERR_SLIDE", e.Message()).Value()); }

 private:
  std::shared_ptr<Slide> slide_;
  int64_t x_, y_;
  int32_t level_;
  int64_t w_, h_;
  std::string associated_;
  std::vector<uint8_t> rgb_;
  Napi::Promise::Deferred deferred_;
};

std::shared_ptr<Slide> SlideOf(const Napi::Value& value) {
  if (!value.IsExternal()) throw Napi::TypeError::New(value.Env(), "not a slide handle");
  return *value.As<Napi::External<std::shared_ptr<Slide>>>().Data();
}

int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  return static_cast<int64_t>(info[i].As<Napi::Number>().Int64Value());
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "the slide path must be a string");
  auto* worker = new OpenWorker(info.Env(), info[0].As<Napi::String>().Utf8Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// readRegion(handle, x, y, level, width, height): bounds and size limits are checked in JavaScript.
Napi::Value ReadRegion(const Napi::CallbackInfo& info) {
  auto slide = SlideOf(info[0]);
  auto* worker = new ReadWorker(info.Env(), slide, IntArg(info, 1, "x"), IntArg(info, 2, "y"),
                                static_cast<int32_t>(IntArg(info, 3, "level")), IntArg(info, 4, "width"),
                                IntArg(info, 5, "height"), "");
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value ReadAssociated(const Napi::CallbackInfo& info) {
  auto slide = SlideOf(info[0]);
  if (!info[1].IsString()) throw Napi::TypeError::New(info.Env(), "the associated image name must be a string");
  auto* worker = new ReadWorker(info.Env(), slide, 0, 0, 0, 0, 0, info[1].As<Napi::String>().Utf8Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  auto slide = SlideOf(info[0]);
  std::lock_guard<std::mutex> lock(slide->mutex);
  if (slide->osr) openslide_close(slide->osr);
  slide->osr = nullptr;
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open));
  exports.Set("readRegion", Napi::Function::New(env, ReadRegion));
  exports.Set("readAssociated", Napi::Function::New(env, ReadAssociated));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("version", Napi::String::New(env, openslide_get_version()));
  return exports;
}

}  // namespace

NODE_API_MODULE(pathotype_slide, Init)

#include "addon/png_wrap.h"

#include <memory>
#include <string>

#include "addon/convert.h"
#include "addon/promise_worker.h"
#include "core/io/png_filters.h"

namespace rpn {

namespace {

class UnfilterWorker : public PromiseWorker {
 public:
  UnfilterWorker(Napi::Env env, const Napi::Uint8Array& filtered, int64_t width, int64_t height, int channels)
      : PromiseWorker(env, "reconpatch:unfilterPng", nullptr),
        filtered_(filtered.Data()),
        size_(filtered.ByteLength()),
        width_(width),
        height_(height),
        channels_(channels),
        keepAlive_(Napi::Persistent(filtered.As<Napi::Object>())) {}

  void Run() override {
    out_ = std::make_unique<std::string>(static_cast<size_t>(width_) * static_cast<size_t>(height_) * 3, '\0');
    ok_ = rp::unfilterPngToRgb(filtered_, size_, width_, height_, channels_, reinterpret_cast<uint8_t*>(out_->data()),
                               out_->size());
  }

  Napi::Value Result(Napi::Env env) override {
    if (!ok_) return env.Null();
    std::string* owned = out_.release();
    return Napi::Buffer<char>::New(env, owned->data(), owned->size(), [](Napi::Env, char*, std::string* s) { delete s; }, owned);
  }

 private:
  const uint8_t* filtered_;
  size_t size_;
  int64_t width_, height_;
  int channels_;
  Napi::ObjectReference keepAlive_;
  std::unique_ptr<std::string> out_;
  bool ok_ = false;
};

}  // namespace

Napi::Value UnfilterPng(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber())
    throw makeError(env, "ERR_INVALID_IMAGE", "unfilterPng expects (Uint8Array, width, height, channels)");
  const double w = info[1].As<Napi::Number>().DoubleValue(), h = info[2].As<Napi::Number>().DoubleValue();
  const double c = info[3].As<Napi::Number>().DoubleValue();
  // Sizes JS checked against its pixel limits; refused here too, so no product below can overflow.
  if (!(w >= 1 && h >= 1 && w * h <= 1e10 && (c == 1 || c == 2 || c == 3 || c == 4)))
    throw makeError(env, "ERR_INVALID_IMAGE", "unfilterPng: width, height or channels out of range");
  return (new UnfilterWorker(env, info[0].As<Napi::Uint8Array>(), static_cast<int64_t>(w), static_cast<int64_t>(h),
                             static_cast<int>(c)))
      ->Start();
}

}  // namespace rpn

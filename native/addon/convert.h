// JS <-> core conversions and error mapping for the N-API glue. No torch headers here.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "core/float_array.h"
#include "core/options.h"
#include "core/raw_image.h"

namespace rpn {

// A JS Error with a stable `code` property (e.g. ERR_INVALID_IMAGE).
Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message);

// Runs a core call on the JS thread; an rp::Error becomes a JS error with its code. (Off the JS
// thread, PromiseWorker does the same for a rejected promise.)
template <class Fn>
Napi::Value callCore(Napi::Env env, Fn&& fn) {
  try {
    return fn();
  } catch (const rp::Error& e) {
    throw makeError(env, rp::errorCodeName(e.code()), e.what());
  }
}

// Raw frames {data: Uint8Array, width, height, channels}: views into JS memory (keep the array
// referenced while they are used). Throws a JS error with code ERR_INVALID_IMAGE.
std::vector<rp::RawImageView> imagesFromJs(const Napi::Array& array);
rp::RawImageView imageFromJs(const Napi::Value& value, uint32_t index);

// Plain options object (already validated in lib/options.ts) -> struct.
rp::EngineOptions optionsFromJs(const Napi::Object& o);
Napi::Object optionsToJs(Napi::Env env, const rp::EngineOptions& o);

// {data: Float32Array, shape: number[]} <-> FloatArray
rp::FloatArray floatArrayFromJs(const Napi::Value& value);
Napi::Object floatArrayToJs(Napi::Env env, rp::FloatArray&& a);

// Float vector -> Float32Array over external memory that owns the vector.
Napi::Float32Array externalFloat32(Napi::Env env, std::vector<float>&& values);

}  // namespace rpn

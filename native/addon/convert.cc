#include "addon/convert.h"

#include <type_traits>

namespace rpn {

Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

rp::RawImageView imageFromJs(const Napi::Value& value, uint32_t index) {
  Napi::Env env = value.Env();
  auto fail = [&](const std::string& why) {
    return makeError(env, "ERR_INVALID_IMAGE", "image " + std::to_string(index) + ": " + why);
  };
  if (!value.IsObject()) throw fail("expected a raw frame {data, width, height, channels}");
  Napi::Object o = value.As<Napi::Object>();
  Napi::Value data = o.Get("data");
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw fail("'data' must be a Uint8Array");
  auto bytes = data.As<Napi::Uint8Array>();
  rp::RawImageView view;
  view.data = bytes.Data();
  view.width = o.Get("width").ToNumber().Int64Value();
  view.height = o.Get("height").ToNumber().Int64Value();
  view.channels = o.Get("channels").ToNumber().Int64Value();
  if (view.width <= 0 || view.height <= 0 || (view.channels != 1 && view.channels != 3))
    throw fail("width and height must be positive and channels 1 or 3");
  if (static_cast<int64_t>(bytes.ByteLength()) != view.width * view.height * view.channels)
    throw fail("data has " + std::to_string(bytes.ByteLength()) + " bytes but width*height*channels is " +
               std::to_string(view.width * view.height * view.channels));
  return view;
}

std::vector<rp::RawImageView> imagesFromJs(const Napi::Array& array) {
  std::vector<rp::RawImageView> views;
  views.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) views.push_back(imageFromJs(array.Get(i), i));
  return views;
}

rp::EngineOptions optionsFromJs(const Napi::Object& o) {
  Napi::Env env = o.Env();
  rp::EngineOptions r;
  rp::visitOptions(r, [&](const char* name, auto& value) {
    using T = std::decay_t<decltype(value)>;
    Napi::Value v = o.Get(name);
    auto wrongType = [&](const char* what) {
      return Napi::TypeError::New(env, std::string("option '") + name + "' must be " + what);
    };
    if constexpr (std::is_enum_v<T>) {
      if (!v.IsString() || !rp::parseEnum(v.As<Napi::String>().Utf8Value(), &value)) throw wrongType("a known name");
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!v.IsString()) throw wrongType("a string");
      value = v.As<Napi::String>().Utf8Value();
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!v.IsBoolean()) throw wrongType("a boolean");
      value = v.As<Napi::Boolean>().Value();
    } else {
      if (!v.IsNumber()) throw wrongType("a number");
      if constexpr (std::is_floating_point_v<T>) value = v.As<Napi::Number>().DoubleValue();
      else value = static_cast<T>(v.As<Napi::Number>().Int64Value());
    }
  });
  return r;
}

Napi::Object optionsToJs(Napi::Env env, const rp::EngineOptions& r) {
  Napi::Object o = Napi::Object::New(env);
  rp::visitOptions(r, [&](const char* name, const auto& value) {
    using T = std::decay_t<decltype(value)>;
    if constexpr (std::is_enum_v<T>) o.Set(name, rp::enumName(value));
    else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, bool>) o.Set(name, value);
    else o.Set(name, static_cast<double>(value));
  });
  return o;
}

rp::FloatArray floatArrayFromJs(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) throw Napi::TypeError::New(env, "expected {data: Float32Array, shape: number[]}");
  Napi::Object o = value.As<Napi::Object>();
  Napi::Value data = o.Get("data"), shape = o.Get("shape");
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || !shape.IsArray())
    throw Napi::TypeError::New(env, "expected {data: Float32Array, shape: number[]}");
  auto f = data.As<Napi::Float32Array>();
  rp::FloatArray a;
  a.data.assign(f.Data(), f.Data() + f.ElementLength());
  auto s = shape.As<Napi::Array>();
  for (uint32_t i = 0; i < s.Length(); ++i) a.shape.push_back(s.Get(i).ToNumber().Int64Value());
  return a;
}

Napi::Object floatArrayToJs(Napi::Env env, rp::FloatArray&& a) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Array shape = Napi::Array::New(env, a.shape.size());
  for (size_t i = 0; i < a.shape.size(); ++i) shape.Set(static_cast<uint32_t>(i), static_cast<double>(a.shape[i]));
  o.Set("shape", shape);
  o.Set("data", externalFloat32(env, std::move(a.data)));
  return o;
}

Napi::Float32Array externalFloat32(Napi::Env env, std::vector<float>&& values) {
  auto* owned = new std::vector<float>(std::move(values));
  const size_t n = owned->size();
  if (n == 0) {
    delete owned;
    return Napi::Float32Array::New(env, 0);
  }
  auto buffer = Napi::ArrayBuffer::New(
      env, owned->data(), n * sizeof(float), [](Napi::Env, void*, std::vector<float>* v) { delete v; }, owned);
  return Napi::Float32Array::New(env, n, buffer, 0);
}

}  // namespace rpn

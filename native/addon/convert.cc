#include "addon/convert.h"

namespace rpn {

Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

namespace {

int64_t intProp(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a number");
  return v.As<Napi::Number>().Int64Value();
}

double numProp(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

std::string strProp(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace

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
  rp::EngineOptions r;
  r.backbone = strProp(o, "backbone");
  r.weights = strProp(o, "weights");
  r.resize = intProp(o, "resize");
  r.crop = intProp(o, "crop");
  r.resizeMode = strProp(o, "resizeMode") == "squash" ? rp::ResizeMode::Squash : rp::ResizeMode::Shorter;
  r.patchSize = intProp(o, "patchSize");
  r.pretrainDim = intProp(o, "pretrainDim");
  r.targetDim = intProp(o, "targetDim");
  r.coresetRatio = numProp(o, "coresetRatio");
  r.coresetProjection = intProp(o, "coresetProjection");
  r.coresetStarts = intProp(o, "coresetStarts");
  r.distance = strProp(o, "distance") == "squared" ? rp::Distance::SquaredEuclidean : rp::Distance::Euclidean;
  r.reweight = o.Get("reweight").ToBoolean().Value();
  r.reweightNeighbors = intProp(o, "reweightNeighbors");
  r.blurSigma = numProp(o, "blurSigma");
  r.head = o.Get("head").ToBoolean().Value();
  r.headIterations = intProp(o, "headIterations");
  r.headBatch = intProp(o, "headBatch");
  r.headProjectionDim = intProp(o, "headProjectionDim");
  r.headLr = numProp(o, "headLr");
  r.headWeightDecay = numProp(o, "headWeightDecay");
  r.headEma = numProp(o, "headEma");
  r.headK = intProp(o, "headK");
  r.headSigma = numProp(o, "headSigma");
  r.headAlpha = numProp(o, "headAlpha");
  r.headMargin = numProp(o, "headMargin");
  r.headNormalize = o.Get("headNormalize").ToBoolean().Value();
  r.headInitIdentity = o.Get("headInitIdentity").ToBoolean().Value();
  r.device = strProp(o, "device");
  r.threads = static_cast<int>(intProp(o, "threads"));
  r.seed = static_cast<uint64_t>(intProp(o, "seed"));
  r.batchSize = intProp(o, "batchSize");
  return r;
}

Napi::Object optionsToJs(Napi::Env env, const rp::EngineOptions& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("backbone", r.backbone);
  o.Set("weights", r.weights);
  o.Set("resize", static_cast<double>(r.resize));
  o.Set("crop", static_cast<double>(r.crop));
  o.Set("resizeMode", r.resizeMode == rp::ResizeMode::Squash ? "squash" : "shorter");
  o.Set("patchSize", static_cast<double>(r.patchSize));
  o.Set("pretrainDim", static_cast<double>(r.pretrainDim));
  o.Set("targetDim", static_cast<double>(r.targetDim));
  o.Set("coresetRatio", r.coresetRatio);
  o.Set("coresetProjection", static_cast<double>(r.coresetProjection));
  o.Set("coresetStarts", static_cast<double>(r.coresetStarts));
  o.Set("distance", r.distance == rp::Distance::Euclidean ? "euclidean" : "squared");
  o.Set("reweight", r.reweight);
  o.Set("reweightNeighbors", static_cast<double>(r.reweightNeighbors));
  o.Set("blurSigma", r.blurSigma);
  o.Set("head", r.head);
  o.Set("headIterations", static_cast<double>(r.headIterations));
  o.Set("headBatch", static_cast<double>(r.headBatch));
  o.Set("headProjectionDim", static_cast<double>(r.headProjectionDim));
  o.Set("headLr", r.headLr);
  o.Set("headWeightDecay", r.headWeightDecay);
  o.Set("headEma", r.headEma);
  o.Set("headK", static_cast<double>(r.headK));
  o.Set("headSigma", r.headSigma);
  o.Set("headAlpha", r.headAlpha);
  o.Set("headMargin", r.headMargin);
  o.Set("headNormalize", r.headNormalize);
  o.Set("headInitIdentity", r.headInitIdentity);
  o.Set("device", r.device);
  o.Set("threads", r.threads);
  o.Set("seed", static_cast<double>(r.seed));
  o.Set("batchSize", static_cast<double>(r.batchSize));
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

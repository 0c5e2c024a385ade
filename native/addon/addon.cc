// Module init: createEngine, loadEngine, the NativeEngine class. Compiled twice (CMakeLists.txt):
// into reconpatch.node, the addon users get, and with RECONPATCH_PROBES into the test addon
// reconpatch_probes.node, which also exports `internals` (single pipeline steps on small arrays,
// synchronous, for tests and benchmarks) and `probes` (crashes on purpose, for the crash tests).
#include "addon/addon.h"

#include <memory>

#include "addon/convert.h"
#include "addon/crash_handler.h"
#include "addon/engine_wrap.h"
#include "addon/png_wrap.h"
#include "core/memory.h"
#include "core/backbones/catalog.h"
#include "core/runtime.h"
#ifdef RECONPATCH_PROBES
#include "probes/bench_kernels.h"
#include "probes/crash_probe.h"
#include "probes/internals.h"
#include "probes/stage_timer.h"
#endif

namespace rpn {

#ifdef RECONPATCH_PROBES
namespace {

std::vector<int64_t> intVector(const Napi::Value& v) {
  std::vector<int64_t> out;
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(a.Get(i).ToNumber().Int64Value());
  return out;
}

Napi::Array toJsArray(Napi::Env env, const std::vector<int64_t>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), static_cast<double>(v[i]));
  return a;
}

Napi::Object makeInternals(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("patchFeatures", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            std::vector<rp::FloatArray> taps;
            auto a = info[0].As<Napi::Array>();
            for (uint32_t i = 0; i < a.Length(); ++i) taps.push_back(floatArrayFromJs(a.Get(i)));
            return floatArrayToJs(info.Env(), rp::internals::patchFeatures(taps, info[1].ToNumber().Int64Value(),
                                                                             info[2].ToNumber().Int64Value(),
                                                                             info[3].ToNumber().Int64Value(),
                                                                             info.Length() > 4 && info[4].ToBoolean()));
          });
        }));
  o.Set("preprocess", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            auto view = imageFromJs(info[0], 0);
            rp::ResizeMode mode = rp::ResizeMode::Shorter;
            if (!rp::parseEnum(info[3].ToString().Utf8Value(), &mode))
              throw makeError(info.Env(), "ERR_INVALID_OPTION", "preprocess: unknown resize mode");
            return floatArrayToJs(info.Env(), rp::internals::preprocess(view, info[1].ToNumber().Int64Value(),
                                                                          info[2].ToNumber().Int64Value(), mode));
          });
        }));
  o.Set("greedyCoreset", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return toJsArray(info.Env(), rp::internals::greedyCoreset(floatArrayFromJs(info[0]), intVector(info[1]),
                                                                       info[2].ToNumber().Int64Value(),
                                                                       info[3].ToBoolean().Value(),
                                                                       info[4].IsUndefined() ? 0 : info[4].ToNumber().Int32Value(),
                                                                       info.Length() > 5 && info[5].ToBoolean(),
                                                                       info.Length() > 6 && info[6].ToBoolean()));
          });
        }));
  o.Set("tilePlan", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            auto n = [&](int i) { return info[i].ToNumber().Int64Value(); };
            return toJsArray(info.Env(), rp::internals::tilePlan(n(0), n(1), n(2), n(3), n(4)));
          });
        }));
  o.Set("backbonePasses", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return Napi::String::New(info.Env(), rp::internals::backbonePasses(info[0].ToString().Utf8Value()));
          });
        }));
  o.Set("knn", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            std::vector<int64_t> idx;
            int64_t int8Queries = 0;
            const bool exclude = info.Length() > 5 && info[4].IsNumber() && info[5].IsNumber();
            auto d = rp::internals::knn(floatArrayFromJs(info[0]), floatArrayFromJs(info[1]),
                                        info[2].ToNumber().Int64Value(), &idx,
                                        info.Length() > 3 && info[3].IsString() ? info[3].ToString().Utf8Value() : "auto",
                                        exclude ? info[4].ToNumber().Int64Value() : 0,
                                        exclude ? info[5].ToNumber().Int64Value() : 0, &int8Queries);
            Napi::Object r = Napi::Object::New(info.Env());
            r.Set("int8Queries", Napi::Number::New(info.Env(), static_cast<double>(int8Queries)));
            r.Set("distances", floatArrayToJs(info.Env(), std::move(d)));
            r.Set("indices", toJsArray(info.Env(), idx));
            return r;
          });
        }));
  o.Set("gaussianBlur", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return floatArrayToJs(info.Env(),
                                  rp::internals::gaussianBlur(floatArrayFromJs(info[0]), info[1].ToNumber().DoubleValue()));
          });
        }));
  o.Set("gaussianBlurForm", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return floatArrayToJs(info.Env(), rp::internals::gaussianBlurForm(floatArrayFromJs(info[0]), info[1].ToNumber().DoubleValue(),
                                                                                info[2].ToBoolean()));
          });
        }));
  o.Set("mapToOriginal", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return floatArrayToJs(info.Env(), rp::internals::mapToOriginal(floatArrayFromJs(info[0]), intVector(info[1]), info[2].ToBoolean()));
          });
        }));
  o.Set("anomalyMap", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return floatArrayToJs(info.Env(), rp::internals::anomalyMap(floatArrayFromJs(info[0]),
                                                                          info[1].ToNumber().Int64Value(),
                                                                          info[2].ToNumber().Int64Value(),
                                                                          info[3].ToNumber().DoubleValue()));
          });
        }));
  o.Set("headSimilarities", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            auto r = rp::internals::headSimilarities(floatArrayFromJs(info[0]), info[1].ToNumber().Int64Value(),
                                                     info[2].ToNumber().DoubleValue());
            Napi::Object out = Napi::Object::New(info.Env());
            out.Set("knn", floatArrayToJs(info.Env(), std::move(r.knn)));
            out.Set("contextual", floatArrayToJs(info.Env(), std::move(r.contextual)));
            out.Set("contextualDense", floatArrayToJs(info.Env(), std::move(r.contextualDense)));
            out.Set("pairwise", floatArrayToJs(info.Env(), std::move(r.pairwise)));
            out.Set("bandwidth", r.bandwidth);
            return out;
          });
        }));
  o.Set("headLoss", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            rp::FloatArray grad;
            float loss = rp::internals::headLoss(floatArrayFromJs(info[0]), floatArrayFromJs(info[1]),
                                                 info[2].ToNumber().DoubleValue(), &grad,
                                                 info.Length() > 3 && info[3].ToBoolean().Value());
            Napi::Object out = Napi::Object::New(info.Env());
            out.Set("loss", loss);
            out.Set("grad", floatArrayToJs(info.Env(), std::move(grad)));
            return out;
          });
        }));
  o.Set("headTraining", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            auto r = rp::internals::headTraining(info[0].ToNumber().Int64Value(), info[1].ToNumber().Int64Value(),
                                                 info[2].ToNumber().Int64Value(), info[3].ToBoolean().Value(),
                                                 info[4].ToNumber().Int32Value(),
                                                 info.Length() > 5 ? info[5].ToNumber().Int64Value() : 0,
                                                 info.Length() > 6 ? info[6].ToNumber().DoubleValue() : 0);
            Napi::Object out = Napi::Object::New(info.Env());
            out.Set("msPerIteration", r.msPerIteration);
            out.Set("fWeight", floatArrayToJs(info.Env(), std::move(r.fWeight)));
            out.Set("fBias", floatArrayToJs(info.Env(), std::move(r.fBias)));
            Napi::Array losses = Napi::Array::New(info.Env(), r.losses.size());
            for (size_t i = 0; i < r.losses.size(); ++i) losses.Set(static_cast<uint32_t>(i), r.losses[i]);
            out.Set("losses", losses);
            return out;
          });
        }));
  o.Set("emaStep", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return floatArrayToJs(info.Env(), rp::internals::emaStep(floatArrayFromJs(info[0]), floatArrayFromJs(info[1]),
                                                                       info[2].ToNumber().DoubleValue()));
          });
        }));
  o.Set("gemmGflops", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return Napi::Number::New(info.Env(), rp::internals::gemmGflops(info[0].ToNumber().Int64Value(),
                                                                             info[1].ToNumber().Int32Value(),
                                                                             info[2].ToNumber().Int32Value()));
          });
        }));
  o.Set("readGBs", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return Napi::Number::New(info.Env(), rp::internals::readGBs(info[0].ToNumber().Int64Value(),
                                                                          info[1].ToNumber().Int32Value(),
                                                                          info[2].ToNumber().Int32Value()));
          });
        }));
  o.Set("knnInt8", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            if (info.Length() > 0 && info[0].IsBoolean()) rp::internals::setKnnInt8Enabled(info[0].ToBoolean().Value());
            auto s = rp::internals::knnInt8State();
            Napi::Object out = Napi::Object::New(info.Env());
            out.Set("supported", s.supported);
            out.Set("enabled", s.enabled);
            return out;
          });
        }));
  o.Set("knnCompare", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            std::unique_ptr<rp::FloatArray> bank, queries;
            if (info[0].IsObject()) bank = std::make_unique<rp::FloatArray>(floatArrayFromJs(info[0]));
            if (info[1].IsObject()) queries = std::make_unique<rp::FloatArray>(floatArrayFromJs(info[1]));
            auto r = rp::internals::knnCompare(bank.get(), queries.get(), info[2].ToNumber().Int64Value(),
                                               info[3].ToNumber().Int64Value(), info[4].ToNumber().Int64Value(),
                                               info[5].ToNumber().Int32Value(), info[6].ToNumber().Int32Value());
            Napi::Object out = Napi::Object::New(info.Env());
            out.Set("float32Ms", r.float32Ms);
            out.Set("int8Ms", r.int8Ms);
            out.Set("rescoredPerQuery", r.rescoredPerQuery);
            out.Set("queries", static_cast<double>(r.queries));
            out.Set("bankRows", static_cast<double>(r.bankRows));
            out.Set("fallbackQueries", static_cast<double>(r.fallbackQueries));
            out.Set("sameIndex", static_cast<double>(r.sameIndex));
            out.Set("maxRelativeGap", r.maxRelativeGap);
            out.Set("int8", r.int8);
            return out;
          });
        }));
  o.Set("knnMilliseconds", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return Napi::Number::New(info.Env(), rp::internals::knnMilliseconds(
                                                     info[0].ToNumber().Int64Value(), info[1].ToNumber().Int64Value(),
                                                     info[2].ToNumber().Int64Value(), info[3].ToNumber().Int32Value(),
                                                     info[4].ToNumber().Int32Value()));
          });
        }));
  o.Set("backboneMilliseconds", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            auto t = rp::internals::backboneMilliseconds(info[0].ToString().Utf8Value(), info[1].ToNumber().Int64Value(),
                                                         info[2].ToNumber().Int64Value(), info[3].ToNumber().Int32Value(),
                                                         info[4].ToNumber().Int32Value());
            auto o = Napi::Object::New(info.Env());
            o.Set("backboneMs", t.backboneMs);
            o.Set("patchFeaturesMs", t.patchFeaturesMs);
            return o;
          });
        }));
  o.Set("coresetProject", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return floatArrayToJs(info.Env(), rp::internals::coresetProject(floatArrayFromJs(info[0]),
                                                                            info[1].ToNumber().Int64Value(),
                                                                            static_cast<uint64_t>(info[2].ToNumber().Int64Value())));
          });
        }));
  o.Set("torchvisionTaps", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            std::vector<int64_t> strides, channels;
            auto taps = rp::internals::torchvisionTaps(info[0].ToString(), info[1].ToString(), info[2].ToString(),
                                                       floatArrayFromJs(info[3]), &strides, &channels);
            Napi::Array list = Napi::Array::New(info.Env(), taps.size());
            for (size_t i = 0; i < taps.size(); ++i) list.Set(static_cast<uint32_t>(i), floatArrayToJs(info.Env(), std::move(taps[i])));
            Napi::Object out = Napi::Object::New(info.Env());
            out.Set("taps", list);
            out.Set("strides", toJsArray(info.Env(), strides));
            out.Set("channels", toJsArray(info.Env(), channels));
            return out;
          });
        }));
  o.Set("startStageTimer", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
          probes::startStageTimer();
          return info.Env().Undefined();
        }));
  o.Set("readStageTimes", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
          auto times = probes::readStageTimes();
          Napi::Array list = Napi::Array::New(info.Env(), times.size());
          for (size_t i = 0; i < times.size(); ++i) {
            Napi::Object t = Napi::Object::New(info.Env());
            t.Set("operation", times[i].operation);
            t.Set("stage", times[i].stage);
            t.Set("ms", times[i].ms);
            t.Set("spans", static_cast<double>(times[i].spans));
            list.Set(static_cast<uint32_t>(i), t);
          }
          return list;
        }));
  o.Set("readCallThreads", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
          auto rows = probes::readCallThreads();
          Napi::Array list = Napi::Array::New(info.Env(), rows.size());
          for (size_t i = 0; i < rows.size(); ++i) {
            Napi::Object r = Napi::Object::New(info.Env());
            r.Set("engine", static_cast<double>(rows[i].engine));
            r.Set("operation", rows[i].operation);
            r.Set("thread", static_cast<double>(rows[i].thread));
            list.Set(static_cast<uint32_t>(i), r);
          }
          return list;
        }));
  o.Set("reweightedScore", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
          return callCore(info.Env(), [&]() -> Napi::Value {
            return Napi::Number::New(info.Env(), rp::internals::reweightedScore(floatArrayFromJs(info[0]),
                                                                                  floatArrayFromJs(info[1]),
                                                                                  info[2].ToNumber().Int64Value()));
          });
        }));
  return o;
}

// Test-only crash probes (native/probes/crash_probe.*).
Napi::Object makeProbes(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("crash", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
          if (!probes::crashNow(info[0].ToString().Utf8Value(), info.Length() > 1 && info[1].ToBoolean()))
            throw makeError(info.Env(), "ERR_INVALID_OPTION", "unknown crash kind");
          return info.Env().Undefined();
        }));
  o.Set("crashAtStage", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
          if (!probes::crashAtStage(info[0].ToString().Utf8Value(), info[1].ToString().Utf8Value()))
            throw makeError(info.Env(), "ERR_INVALID_OPTION", "unknown crash kind or stage");
          return info.Env().Undefined();
        }));
  return o;
}

}  // namespace
#endif  // RECONPATCH_PROBES

Addon::Addon(Napi::Env env, Napi::Object exports) {
  static const bool keptFreedMemory = rp::keepFreedMemory();  // once per process (bench/NOTES.md)
  (void)keptFreedMemory;
  const CrashHandlerState& crash = installCrashHandler(rp::torchVersion());  // once per process
  Napi::Function ctor = EngineWrap::Define(env);
  engineConstructor = Napi::Persistent(ctor);
  exports.Set("NativeEngine", ctor);
  exports.Set("createEngine", Napi::Function::New(env, CreateEngine, "createEngine"));
  exports.Set("decodeModel", Napi::Function::New(env, DecodeModel, "decodeModel"));
  exports.Set("loadEngine", Napi::Function::New(env, LoadEngine, "loadEngine"));
  exports.Set("unfilterPng", Napi::Function::New(env, UnfilterPng, "unfilterPng"));
#ifdef RECONPATCH_PROBES
  exports.Set("internals", makeInternals(env));
  exports.Set("probes", makeProbes(env));
#endif
  exports.Set("optionDefaults", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return optionsToJs(info.Env(), rp::EngineOptions{});
              }, "optionDefaults"));
  exports.Set("torchvisionCatalog", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                Napi::Object o = Napi::Object::New(info.Env());
                auto strings = [&](const std::vector<std::string>& v) {
                  Napi::Array a = Napi::Array::New(info.Env(), v.size());
                  for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), v[i]);
                  return a;
                };
                for (const auto& a : rp::torchvisionCatalog()) {
                  Napi::Object entry = Napi::Object::New(info.Env());
                  entry.Set("taps", strings(a.taps));
                  entry.Set("defaults", strings(a.defaults));
                  o.Set(a.name, entry);
                }
                return o;
              }, "torchvisionCatalog"));
  exports.Set("runtime", Napi::Function::New(env, [crash](const Napi::CallbackInfo& info) -> Napi::Value {
                auto r = rp::runtimeInfo();
                Napi::Object o = Napi::Object::New(info.Env());
                o.Set("torchVersion", r.torchVersion);
                o.Set("cudaBuild", r.cudaBuild);
                o.Set("cudaDevices", r.cudaDevices);
                o.Set("cxxStandard", static_cast<double>(r.cxxStandard));
                o.Set("crashReports", crash.installed ? Napi::Value(Napi::String::New(info.Env(), crash.dir)) : info.Env().Null());
                return o;
              }, "runtime"));
}

}  // namespace rpn

using ReconpatchAddon = rpn::Addon;
NODE_API_ADDON(ReconpatchAddon)

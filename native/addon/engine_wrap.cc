// The NativeEngine ObjectWrap: one AsyncWorker per native call. Over ~400 lines because each of
// the engine's methods needs its own worker (options copied into a plain struct first).
#include "addon/engine_wrap.h"

#include "addon/addon.h"
#include "addon/convert.h"
#include "addon/promise_worker.h"
#include "core/memory.h"

namespace rpn {

namespace {

using EnginePtr = std::shared_ptr<rp::Engine>;

class CreateWorker : public PromiseWorker {
 public:
  // The new engine's lane is made by the caller and the engine is built on it.
  CreateWorker(Napi::Env env, rp::EngineOptions options, LanePtr lane)
      : PromiseWorker(env, "reconpatch:create", std::move(lane)), options_(std::move(options)) {}
  void Run() override { engine_ = std::make_shared<rp::Engine>(options_); }
  Napi::Value Result(Napi::Env env) override { return EngineWrap::Wrap(env, engine_, lane()); }

 private:
  rp::EngineOptions options_;
  EnginePtr engine_;
};

using ModelPtr = std::shared_ptr<rp::DecodedModel>;
// A decoded model and the lane it was decoded on, which the engine loaded from it keeps.
struct DecodedHandle {
  ModelPtr model;
  LanePtr lane;
};

// Decodes model-file bytes in place (the JS buffer is kept alive, not copied).
class DecodeWorker : public PromiseWorker {
 public:
  DecodeWorker(Napi::Env env, const Napi::Buffer<char>& bytes, std::string label, LanePtr lane)
      : PromiseWorker(env, "reconpatch:decode", std::move(lane)), bytes_(bytes.Data(), bytes.Length()), label_(std::move(label)),
        keepAlive_(Napi::Persistent(bytes.As<Napi::Object>())) {}
  void Run() override { model_ = std::make_shared<rp::DecodedModel>(bytes_, label_); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("options", optionsToJs(env, model_->options()));
    o.Set("model", Napi::External<DecodedHandle>::New(env, new DecodedHandle{model_, lane()}, [](Napi::Env, DecodedHandle* p) { delete p; }));
    return o;
  }

 private:
  std::string_view bytes_;
  std::string label_;
  Napi::ObjectReference keepAlive_;
  ModelPtr model_;
};

class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, const DecodedHandle& decoded)
      : PromiseWorker(env, "reconpatch:load", decoded.lane), model_(decoded.model) {}
  void Run() override { engine_ = rp::Engine::fromModel(*model_); }
  Napi::Value Result(Napi::Env env) override { return EngineWrap::Wrap(env, engine_, lane()); }

 private:
  ModelPtr model_;
  EnginePtr engine_;
};

// Base for work on raw frames: keeps the JS array (and so its buffers) alive until settled.
class ImagesWorker : public PromiseWorker {
 public:
  ImagesWorker(Napi::Env env, const char* name, EnginePtr engine, LanePtr lane, const Napi::Array& images)
      : PromiseWorker(env, name, std::move(lane)), engine_(std::move(engine)), images_(imagesFromJs(images)),
        keepAlive_(Napi::Persistent(images.As<Napi::Object>())) {}

 protected:
  EnginePtr engine_;
  std::vector<rp::RawImageView> images_;

 private:
  Napi::ObjectReference keepAlive_;
};

class FitAddWorker : public ImagesWorker {
 public:
  using ImagesWorker::ImagesWorker;
  void Run() override { engine_->fitAdd(images_); }
};

class ScoreWorker : public ImagesWorker {
 public:
  // pending: against the model a fit has built but not committed (calibration).
  ScoreWorker(Napi::Env env, const char* name, EnginePtr engine, LanePtr lane, const Napi::Array& images, bool pending)
      : ImagesWorker(env, name, std::move(engine), std::move(lane), images), pending_(pending) {}
  void Run() override { results_ = pending_ ? engine_->scorePending(images_) : engine_->score(images_); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, results_.size());
    for (size_t i = 0; i < results_.size(); ++i) {
      auto& r = results_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("score", r.score);
      o.Set("width", static_cast<double>(r.width));
      o.Set("height", static_cast<double>(r.height));
      o.Set("map", externalFloat32(env, std::move(r.map)));
      out.Set(static_cast<uint32_t>(i), o);
    }
    return out;
  }

 private:
  bool pending_;
  std::vector<rp::ScoreResult> results_;
};

class EmbedWorker : public ImagesWorker {
 public:
  using ImagesWorker::ImagesWorker;
  void Run() override { features_.data = engine_->embed(images_.at(0), &rows_, &dim_); }
  Napi::Value Result(Napi::Env env) override {
    features_.shape = {rows_, dim_};
    return floatArrayToJs(env, std::move(features_));
  }

 private:
  rp::FloatArray features_;
  int64_t rows_ = 0, dim_ = 0;
};

struct StageProgress {
  const char* stage;
  int64_t done, total;
  double value;
};

// Calls the JS progress callback on the JS thread. Plain N-API, nothing thrown: when the call
// fails with no JS exception pending, JS cannot run any more (the worker thread that owns this
// environment is being terminated), so the fit is cancelled and ends at its next cancellation
// point instead of running on for minutes while terminate() waits for it (issue 17).
void deliverProgress(Napi::Env env, Napi::Function cb, const StageProgress& p, const std::weak_ptr<rp::Engine>& engine) {
  napi_value args[4];
  napi_value result;
  bool built = napi_create_string_utf8(env, p.stage, NAPI_AUTO_LENGTH, &args[0]) == napi_ok &&
               napi_create_double(env, static_cast<double>(p.done), &args[1]) == napi_ok &&
               napi_create_double(env, static_cast<double>(p.total), &args[2]) == napi_ok &&
               napi_create_double(env, p.value, &args[3]) == napi_ok;
  napi_value global;
  if (built && napi_get_global(env, &global) == napi_ok && napi_call_function(env, global, cb, 4, args, &result) == napi_ok) return;
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) {
    if (auto e = engine.lock()) e->requestCancel();
  }
}

// fitEnd: progress events cross to JS through a thread-safe function.
class FitEndWorker : public PromiseWorker {
 public:
  FitEndWorker(Napi::Env env, EnginePtr engine, LanePtr lane, Napi::Value onProgress, int64_t leaveOut)
      : PromiseWorker(env, "reconpatch:fitEnd", std::move(lane)), engine_(std::move(engine)), leaveOut_(leaveOut) {
    if (onProgress.IsFunction()) {
      tsfn_ = Napi::ThreadSafeFunction::New(env, onProgress.As<Napi::Function>(), "reconpatch:progress", 0, 1);
      hasProgress_ = true;
    }
  }
  ~FitEndWorker() override {
    if (hasProgress_) tsfn_.Release();
  }
  void Run() override {
    rp::StageProgressFn fn;
    if (hasProgress_) {
      fn = [this](const char* stage, int64_t done, int64_t total, double value) {
        auto* p = new StageProgress{stage, done, total, value};
        // weak: a call still queued when the environment goes away is dropped without being run
        // (node-addon-api then frees neither it nor its captures).
        std::weak_ptr<rp::Engine> engine = engine_;
        napi_status s = tsfn_.NonBlockingCall(p, [engine](Napi::Env env, Napi::Function cb, StageProgress* p) {
          deliverProgress(env, cb, *p, engine);
          delete p;
        });
        if (s == napi_ok) ++queued_;
        else delete p;
      };
    }
    engine_->fitEnd(fn, leaveOut_);
  }
  // How many progress calls were queued: JS waits until it has received them all before it goes
  // on, so that a late one cannot arrive after the fit has moved past its stage.
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(queued_.load())); }

 private:
  EnginePtr engine_;
  int64_t leaveOut_;
  Napi::ThreadSafeFunction tsfn_;
  bool hasProgress_ = false;
  std::atomic<int64_t> queued_{0};
};

// The model as model-file bytes, handed to JS without a copy.
class EncodeWorker : public PromiseWorker {
 public:
  EncodeWorker(Napi::Env env, EnginePtr engine, LanePtr lane)
      : PromiseWorker(env, "reconpatch:encode", std::move(lane)), engine_(std::move(engine)) {}
  void Run() override { bytes_ = std::make_unique<std::string>(engine_->encode()); }
  Napi::Value Result(Napi::Env env) override {
    auto* owned = bytes_.release();
    return Napi::Buffer<char>::New(env, owned->data(), owned->size(), [](Napi::Env, char*, std::string* s) { delete s; }, owned);
  }

 private:
  EnginePtr engine_;
  std::unique_ptr<std::string> bytes_;
};

Napi::Object stagedInfoToJs(Napi::Env env, const rp::StagedShardInfo& info) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("images", static_cast<double>(info.images));
  o.Set("patches", static_cast<double>(info.patches));
  o.Set("rows", static_cast<double>(info.rows));
  o.Set("metadata", info.metadata);
  return o;
}

// A distributed fit's shard: the staged features as bytes, handed to JS without a copy.
class TakeStagedWorker : public PromiseWorker {
 public:
  TakeStagedWorker(Napi::Env env, EnginePtr engine, LanePtr lane, std::string metadata)
      : PromiseWorker(env, "reconpatch:fitTakeStaged", std::move(lane)), engine_(std::move(engine)), metadata_(std::move(metadata)) {}
  void Run() override { bytes_ = std::make_unique<std::string>(engine_->fitTakeStaged(metadata_, &info_)); }
  Napi::Value Result(Napi::Env env) override {
    auto* owned = bytes_.release();
    Napi::Object o = stagedInfoToJs(env, info_);
    o.Set("bytes", Napi::Buffer<char>::New(env, owned->data(), owned->size(), [](Napi::Env, char*, std::string* s) { delete s; }, owned));
    return o;
  }

 private:
  EnginePtr engine_;
  std::string metadata_;
  std::unique_ptr<std::string> bytes_;
  rp::StagedShardInfo info_;
};

// Staged features added in place (the JS buffer is kept alive, not copied).
class AddStagedWorker : public PromiseWorker {
 public:
  AddStagedWorker(Napi::Env env, EnginePtr engine, LanePtr lane, const Napi::Buffer<char>& bytes, std::string label)
      : PromiseWorker(env, "reconpatch:fitAddStaged", std::move(lane)), engine_(std::move(engine)), bytes_(bytes.Data(), bytes.Length()),
        label_(std::move(label)), keepAlive_(Napi::Persistent(bytes.As<Napi::Object>())) {}
  void Run() override { info_ = engine_->fitAddStaged(bytes_, label_); }
  Napi::Value Result(Napi::Env env) override { return stagedInfoToJs(env, info_); }

 private:
  EnginePtr engine_;
  std::string_view bytes_;
  std::string label_;
  Napi::ObjectReference keepAlive_;
  rp::StagedShardInfo info_;
};

Napi::Array arrayArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsArray()) throw makeError(info.Env(), "ERR_INVALID_IMAGE", "expected an array of raw frames");
  return info[i].As<Napi::Array>();
}

std::string stringArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString())
    throw makeError(info.Env(), "ERR_INVALID_OPTION", std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

// The model's content hash (rp::Engine::contentHash): hashes the whole bank, so off the loop.
class ContentHashWorker : public PromiseWorker {
 public:
  ContentHashWorker(Napi::Env env, EnginePtr engine, LanePtr lane)
      : PromiseWorker(env, "reconpatch:contentHash", std::move(lane)), engine_(std::move(engine)) {}
  void Run() override { hash_ = engine_->contentHash(); }
  Napi::Value Result(Napi::Env env) override { return Napi::String::New(env, hash_); }

 private:
  EnginePtr engine_;
  std::string hash_;
};

}  // namespace

Napi::Function EngineWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeEngine",
                     {InstanceMethod<&EngineWrap::Info>("info"), InstanceMethod<&EngineWrap::Options>("options"),
                      InstanceMethod<&EngineWrap::FitBegin>("fitBegin"), InstanceMethod<&EngineWrap::FitAdd>("fitAdd"),
                      InstanceMethod<&EngineWrap::FitTakeStaged>("fitTakeStaged"), InstanceMethod<&EngineWrap::FitAddStaged>("fitAddStaged"),
                      InstanceMethod<&EngineWrap::FitEnd>("fitEnd"), InstanceMethod<&EngineWrap::FitAbort>("fitAbort"),
                      InstanceMethod<&EngineWrap::ScorePending>("scorePending"),
                      InstanceMethod<&EngineWrap::LeaveOut>("leaveOut"),
                      InstanceMethod<&EngineWrap::FitCommit>("fitCommit"),
                      InstanceMethod<&EngineWrap::Cancel>("cancel"), InstanceMethod<&EngineWrap::Score>("score"),
                      InstanceMethod<&EngineWrap::Encode>("encode"), InstanceMethod<&EngineWrap::Embed>("embed"),
                      InstanceMethod<&EngineWrap::Metadata>("metadata"),
                      InstanceMethod<&EngineWrap::Validate>("validate"),
                      InstanceMethod<&EngineWrap::SetMetadata>("setMetadata"),
                      InstanceMethod<&EngineWrap::SetThreads>("setThreads"),
                      InstanceMethod<&EngineWrap::ContentHash>("contentHash"),
                      InstanceMethod<&EngineWrap::Release>("release")});
}

namespace {
struct EngineHandle {
  EnginePtr engine;
  LanePtr lane;
};
}  // namespace

Napi::Object EngineWrap::Wrap(Napi::Env env, std::shared_ptr<rp::Engine> engine, LanePtr lane) {
  auto* holder = new EngineHandle{std::move(engine), std::move(lane)};
  auto external = Napi::External<EngineHandle>::New(env, holder, [](Napi::Env, EngineHandle* p) { delete p; });
  return env.GetInstanceData<Addon>()->engineConstructor.New({external});
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  if (info.Length() < 1 || !info[0].IsExternal())
    throw Napi::TypeError::New(info.Env(), "NativeEngine is created by createEngine() or loadEngine()");
  // Moved out, not copied: the External lives until the GC collects it, and a copy there would
  // keep the engine's memory (and its thread) alive after release().
  auto* handle = info[0].As<Napi::External<EngineHandle>>().Data();
  engine_ = std::move(handle->engine);
  lane_ = std::move(handle->lane);
}

const EnginePtr& EngineWrap::live(const Napi::CallbackInfo& info) const {
  if (!engine_) throw makeError(info.Env(), "ERR_DISPOSED", "this engine was disposed; create or load a new one");
  return engine_;
}

// Drops this wrap's reference to the engine. The JS side calls it only when none of the engine's
// calls is running (they hold references of their own), so the engine's memory is freed here, not
// when the GC gets to the wrap; and handed back to the kernel, since the process keeps freed
// blocks under 32 MiB for reuse (core/memory.h), which a bank of a few MiB is. Returns whether it
// was the last reference; idempotent.
Napi::Value EngineWrap::Release(const Napi::CallbackInfo& info) {
  const bool last = engine_ != nullptr && engine_.use_count() == 1;
  engine_.reset();
  lane_.reset();  // its thread ends once no running call holds it
  if (last) rp::releaseFreedMemory();
  return Napi::Boolean::New(info.Env(), last);
}

Napi::Value EngineWrap::ContentHash(const Napi::CallbackInfo& info) { return (new ContentHashWorker(info.Env(), live(info), lane_))->Start(); }

Napi::Value EngineWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rp::EngineInfo i = live(info)->info();
  Napi::Object o = Napi::Object::New(env);
  o.Set("backboneName", i.backboneName);
  o.Set("backboneSha256", i.backboneSha256);
  o.Set("fitted", i.fitted);
  o.Set("bankRows", static_cast<double>(i.bankRows));
  o.Set("featureDim", static_cast<double>(i.featureDim));
  o.Set("trainImages", static_cast<double>(i.trainImages));
  o.Set("trainPatches", static_cast<double>(i.trainPatches));
  o.Set("updates", static_cast<double>(i.updates));
  o.Set("updateRows", static_cast<double>(i.updateRows));
  o.Set("device", i.device);
  return o;
}

Napi::Value EngineWrap::Options(const Napi::CallbackInfo& info) { return optionsToJs(info.Env(), live(info)->options()); }

// fitBegin(mode?: 'fit' | 'update', maxStagedPatches?: number)
Napi::Value EngineWrap::FitBegin(const Napi::CallbackInfo& info) {
  const bool update = info.Length() > 0 && info[0].IsString() && info[0].As<Napi::String>().Utf8Value() == "update";
  const int64_t budget = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
  return callCore(info.Env(), [&] {
    live(info)->fitBegin(update ? rp::FitMode::Update : rp::FitMode::Fit, budget);
    return info.Env().Undefined();
  });
}

Napi::Value EngineWrap::FitAdd(const Napi::CallbackInfo& info) {
  return (new FitAddWorker(info.Env(), "reconpatch:fitAdd", live(info), lane_, arrayArg(info, 0)))->Start();
}

// fitTakeStaged(metadata: string) -> Promise<{ bytes: Buffer, images, patches, rows, metadata }>
Napi::Value EngineWrap::FitTakeStaged(const Napi::CallbackInfo& info) {
  return (new TakeStagedWorker(info.Env(), live(info), lane_, stringArg(info, 0, "metadata")))->Start();
}

// fitAddStaged(bytes: Buffer, label: string) -> Promise<{ images, patches, rows, metadata }>
Napi::Value EngineWrap::FitAddStaged(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBuffer()) throw makeError(info.Env(), "ERR_INVALID_OPTION", "staged features must be a Buffer");
  return (new AddStagedWorker(info.Env(), live(info), lane_, info[0].As<Napi::Buffer<char>>(), stringArg(info, 1, "label")))->Start();
}

Napi::Value EngineWrap::FitEnd(const Napi::CallbackInfo& info) {
  int64_t leaveOut = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsNumber()) throw makeError(info.Env(), "ERR_INVALID_OPTION", "fitEnd: leaveOut must be a number");
    leaveOut = info[1].As<Napi::Number>().Int64Value();
  }
  return (new FitEndWorker(info.Env(), live(info), lane_, info.Length() > 0 ? info[0] : info.Env().Undefined(), leaveOut))->Start();
}

Napi::Value EngineWrap::LeaveOut(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto results = live(info)->leaveOutResults();
  Napi::Array out = Napi::Array::New(env, results.size());
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("input", static_cast<double>(r.input));
    o.Set("score", r.score);
    o.Set("mapMin", r.mapMin);
    o.Set("mapMax", r.mapMax);
    o.Set("mapMean", r.mapMean);
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

Napi::Value EngineWrap::FitAbort(const Napi::CallbackInfo& info) {
  live(info)->fitAbort();
  return info.Env().Undefined();
}

Napi::Value EngineWrap::Cancel(const Napi::CallbackInfo& info) {
  live(info)->requestCancel();
  return info.Env().Undefined();
}

Napi::Value EngineWrap::Score(const Napi::CallbackInfo& info) {
  return (new ScoreWorker(info.Env(), "reconpatch:score", live(info), lane_, arrayArg(info, 0), false))->Start();
}

Napi::Value EngineWrap::ScorePending(const Napi::CallbackInfo& info) {
  return (new ScoreWorker(info.Env(), "reconpatch:scorePending", live(info), lane_, arrayArg(info, 0), true))->Start();
}

Napi::Value EngineWrap::FitCommit(const Napi::CallbackInfo& info) {
  auto metadata = stringArg(info, 0, "metadata");
  return callCore(info.Env(), [&] {
    live(info)->fitCommit(metadata);
    return info.Env().Undefined();
  });
}

Napi::Value EngineWrap::Encode(const Napi::CallbackInfo& info) { return (new EncodeWorker(info.Env(), live(info), lane_))->Start(); }

Napi::Value EngineWrap::Embed(const Napi::CallbackInfo& info) {
  return (new EmbedWorker(info.Env(), "reconpatch:embed", live(info), lane_, arrayArg(info, 0)))->Start();
}

Napi::Value EngineWrap::Metadata(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), live(info)->metadata()); }

Napi::Value EngineWrap::Validate(const Napi::CallbackInfo& info) {
  auto images = imagesFromJs(arrayArg(info, 0));
  return callCore(info.Env(), [&] {
    live(info)->validate(images);
    return info.Env().Undefined();
  });
}

Napi::Value EngineWrap::SetMetadata(const Napi::CallbackInfo& info) {
  live(info)->setMetadata(stringArg(info, 0, "metadata"));
  return info.Env().Undefined();
}

Napi::Value EngineWrap::SetThreads(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw makeError(info.Env(), "ERR_INVALID_OPTION", "setThreads expects a number");
  live(info)->setThreads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value CreateEngine(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject())
    throw makeError(info.Env(), "ERR_INVALID_OPTION", "createEngine expects an options object");
  return (new CreateWorker(info.Env(), optionsFromJs(info[0].As<Napi::Object>()), std::make_shared<ComputeLane>()))->Start();
}

Napi::Value DecodeModel(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBuffer()) throw makeError(info.Env(), "ERR_INVALID_OPTION", "decodeModel expects a Buffer");
  return (new DecodeWorker(info.Env(), info[0].As<Napi::Buffer<char>>(), stringArg(info, 1, "label"), std::make_shared<ComputeLane>()))->Start();
}

Napi::Value LoadEngine(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) throw makeError(info.Env(), "ERR_INVALID_OPTION", "loadEngine expects a decoded model");
  return (new LoadWorker(info.Env(), *info[0].As<Napi::External<DecodedHandle>>().Data()))->Start();
}

}  // namespace rpn

// The JS-visible native engine: a thin ObjectWrap over rp::Engine. Every computing method returns
// a promise settled by a PromiseWorker; the worker holds the engine and the input buffers alive.
#pragma once
#include <napi.h>

#include <memory>

#include "addon/compute_lane.h"
#include "core/engine.h"

namespace rpn {

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  // Wraps an engine built off-thread (create/load) in a new JS object, with the lane it was built
  // on, where all its work runs (addon/compute_lane.h).
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<rp::Engine> engine, LanePtr lane);
  explicit EngineWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Options(const Napi::CallbackInfo& info);
  Napi::Value FitBegin(const Napi::CallbackInfo& info);
  Napi::Value FitAdd(const Napi::CallbackInfo& info);
  Napi::Value FitTakeStaged(const Napi::CallbackInfo& info);
  Napi::Value FitAddStaged(const Napi::CallbackInfo& info);
  Napi::Value FitEnd(const Napi::CallbackInfo& info);
  Napi::Value FitAbort(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Score(const Napi::CallbackInfo& info);
  Napi::Value ScorePending(const Napi::CallbackInfo& info);
  Napi::Value LeaveOut(const Napi::CallbackInfo& info);
  Napi::Value FitCommit(const Napi::CallbackInfo& info);
  Napi::Value Encode(const Napi::CallbackInfo& info);
  Napi::Value Embed(const Napi::CallbackInfo& info);
  Napi::Value Metadata(const Napi::CallbackInfo& info);
  Napi::Value Validate(const Napi::CallbackInfo& info);
  Napi::Value SetMetadata(const Napi::CallbackInfo& info);
  Napi::Value SetThreads(const Napi::CallbackInfo& info);
  Napi::Value ContentHash(const Napi::CallbackInfo& info);
  Napi::Value Release(const Napi::CallbackInfo& info);
  // The engine, or a JS error ERR_DISPOSED after release().
  const std::shared_ptr<rp::Engine>& live(const Napi::CallbackInfo& info) const;

  std::shared_ptr<rp::Engine> engine_;
  LanePtr lane_;
};

// Module-level functions.
Napi::Value CreateEngine(const Napi::CallbackInfo& info);  // (options) -> Promise<EngineWrap>
Napi::Value DecodeModel(const Napi::CallbackInfo& info);   // (bytes, label) -> Promise<{options, model}>
Napi::Value LoadEngine(const Napi::CallbackInfo& info);    // (model) -> Promise<EngineWrap>

}  // namespace rpn

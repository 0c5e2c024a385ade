// An AsyncWorker that settles a promise. Run() executes off the event loop; rp::Error becomes a
// rejected JS Error carrying the stable `code` (e.g. ERR_MODEL_FILE).
//
// Settling never throws: when the environment is being torn down (worker.terminate() while the
// work ran), JS can no longer run and every N-API call that would touch it fails. There is nobody
// left to tell, so the outcome is dropped; an exception escaping a libuv completion callback would
// std::terminate the whole process instead (issue 17).
#pragma once
#include <napi.h>

#include <string>

#include "addon/compute_lane.h"
#include "addon/convert.h"
#include "addon/crash_handler.h"
#include "core/error.h"

namespace rpn {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  // lane: the engine's thread, where Run() executes while this pool thread waits; none: here.
  PromiseWorker(Napi::Env env, const char* name, LanePtr lane) : Napi::AsyncWorker(env, name), lane_(std::move(lane)) {
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_promise(env, &deferred_, &promise_));
  }

  // Queues the work and returns its promise (call once, in the scope that constructed the worker).
  Napi::Value Start() {
    Queue();
    return Napi::Value(Env(), promise_);
  }

 protected:
  virtual void Run() = 0;  // worker thread: no N-API calls here
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }
  const LanePtr& lane() const { return lane_; }

 private:
  void Execute() override {
    ensureAltSignalStack();  // a crash report even for a stack overflow on this pool thread
    try {
      if (lane_) lane_->run([this] { Run(); });
      else Run();
      return;
    } catch (const rp::Error& e) {
      code_ = rp::errorCodeName(e.code());
      message_ = e.what();
    } catch (const std::exception& e) {
      code_ = "ERR_INTERNAL";
      message_ = e.what();
    }
    SetError(message_.empty() ? "native error" : message_);  // non-empty: routes to OnError
  }
  void OnOK() override {
    napi_value result = nullptr;
    try {
      result = Result(Env());
    } catch (const Napi::Error& e) {
      settle(false, e.Value());
      return;
    } catch (...) {
      return;  // only when JS cannot run any more
    }
    settle(true, result);
  }
  void OnError(const Napi::Error&) override {
    napi_value error = nullptr;
    try {
      error = makeError(Env(), code_, message_).Value();
    } catch (...) {
      return;  // only when JS cannot run any more
    }
    settle(false, error);
  }
  // Plain N-API calls: a failure means the environment is going away, not an error to throw.
  void settle(bool ok, napi_value value) {
    if (value == nullptr) return;
    napi_status s = ok ? napi_resolve_deferred(Env(), deferred_, value) : napi_reject_deferred(Env(), deferred_, value);
    (void)s;
  }

  LanePtr lane_;
  napi_deferred deferred_ = nullptr;
  napi_value promise_ = nullptr;
  std::string code_ = "ERR_INTERNAL";
  std::string message_;
};

}  // namespace rpn

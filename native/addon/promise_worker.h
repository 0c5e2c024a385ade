// An AsyncWorker that settles a promise. Run() executes off the event loop; rp::Error becomes a
// rejected JS Error carrying the stable `code` (e.g. ERR_MODEL_FILE).
#pragma once
#include <napi.h>

#include <string>

#include "addon/convert.h"
#include "addon/crash_handler.h"
#include "core/error.h"

namespace rpn {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

  // Queues the work and returns its promise.
  Napi::Promise Start() {
    Napi::Promise p = deferred_.Promise();
    Queue();
    return p;
  }

 protected:
  virtual void Run() = 0;  // worker thread: no N-API calls here
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }

 private:
  void Execute() override {
    ensureAltSignalStack();  // a crash report even for a stack overflow on this pool thread
    try {
      Run();
    } catch (const rp::Error& e) {
      code_ = rp::errorCodeName(e.code());
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "ERR_INTERNAL";
      SetError(e.what());
    }
  }
  void OnOK() override {
    try {
      deferred_.Resolve(Result(Env()));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(makeError(Env(), code_, e.Message()).Value()); }

  Napi::Promise::Deferred deferred_;
  std::string code_ = "ERR_INTERNAL";
};

}  // namespace rpn

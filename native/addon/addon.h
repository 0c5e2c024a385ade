// Per-environment addon state (context-aware: no statics, works in worker_threads).
#pragma once
#include <napi.h>

namespace rpn {

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports);
  Napi::FunctionReference engineConstructor;
};

}  // namespace rpn

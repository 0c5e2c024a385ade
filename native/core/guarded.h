// The core's one exception boundary: libtorch's errors become typed rp::Errors carrying the
// message only (no C++ backtrace), allocation failures ErrorCode::Internal "out of memory".
// Every entry point of the core (rp::Engine, the probes) runs its body through guarded().
#pragma once
#include <c10/util/Exception.h>

#include <new>

#include "core/error.h"

namespace rp {

template <class Fn>
auto guarded(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::Internal, e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    throw Error(ErrorCode::Internal, "out of memory");
  }
}

}  // namespace rp

// Typed errors for the core. The addon maps ErrorCode to a stable JS `code` string.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace rp {

enum class ErrorCode {
  InvalidOption,   // ERR_INVALID_OPTION
  InvalidImage,    // ERR_INVALID_IMAGE
  NotFitted,       // ERR_NOT_FITTED
  Aborted,         // ERR_ABORTED
  ModelFile,       // ERR_MODEL_FILE
  Backbone,        // ERR_BACKBONE
  EmptyTrainingSet,// ERR_EMPTY_TRAINING_SET
  DeviceUnavailable, // ERR_DEVICE_UNAVAILABLE
  Io,              // ERR_IO
  Internal,        // ERR_INTERNAL
};

const char* errorCodeName(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace rp

// RP_CHECK(cond, Code, "message " << value): throws rp::Error when cond is false.
#define RP_CHECK(cond, code, msg)                                  \
  do {                                                             \
    if (!(cond)) {                                                 \
      std::ostringstream rp_check_oss_;                            \
      rp_check_oss_ << msg;                                        \
      throw ::rp::Error(::rp::ErrorCode::code, rp_check_oss_.str()); \
    }                                                              \
  } while (0)

#define RP_FAIL(code, msg) RP_CHECK(false, code, msg)

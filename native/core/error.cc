#include "core/error.h"

namespace rp {

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidOption: return "ERR_INVALID_OPTION";
    case ErrorCode::InvalidImage: return "ERR_INVALID_IMAGE";
    case ErrorCode::NotFitted: return "ERR_NOT_FITTED";
    case ErrorCode::Aborted: return "ERR_ABORTED";
    case ErrorCode::ModelFile: return "ERR_MODEL_FILE";
    case ErrorCode::Backbone: return "ERR_BACKBONE";
    case ErrorCode::EmptyTrainingSet: return "ERR_EMPTY_TRAINING_SET";
    case ErrorCode::DeviceUnavailable: return "ERR_DEVICE_UNAVAILABLE";
    case ErrorCode::Io: return "ERR_IO";
    case ErrorCode::Internal: return "ERR_INTERNAL";
  }
  return "ERR_INTERNAL";
}

}  // namespace rp

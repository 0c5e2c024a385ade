// unfilterPng(filtered, width, height, channels) -> Promise<Buffer | null>: the PNG row filters
// undone on a pool thread (core/io/png_filters.h), for lib/io/png.ts. null: a filter type the
// format does not have (the caller decodes the file with sharp instead).
#pragma once
#include <napi.h>

namespace rpn {

Napi::Value UnfilterPng(const Napi::CallbackInfo& info);

}  // namespace rpn

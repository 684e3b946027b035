// What cnnx's oneDNN FFI handlers share (onednn_conv.cc, onednn_matmul.cc): one engine, and
// one lock so that one oneDNN call runs at a time in the process.
#ifndef CNNX_BACKENDS_CPU_ONEDNN_FFI_H_
#define CNNX_BACKENDS_CPU_ONEDNN_FFI_H_

#include <mutex>
#include <string>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace cnnx_onednn {

namespace ffi = xla::ffi;

// Inline functions: one instance of each static across the library's translation units.
inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One oneDNN call at a time: XLA may run independent operations (or one program per device)
// on several threads at once, and each thread that enters oneDNN would start its own OpenMP
// team; teams that spin-wait against each other on few cores stall every one of them.
inline std::mutex& ExecutionMutex() {
  static std::mutex mutex;
  return mutex;
}

// Runs `body` under the lock; a oneDNN error becomes an FFI error prefixed with `what`.
template <typename F>
ffi::Error Guarded(const char* what, F&& body) {
  std::lock_guard<std::mutex> lock(ExecutionMutex());
  try {
    body();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string(what) + ": " + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace cnnx_onednn

#endif  // CNNX_BACKENDS_CPU_ONEDNN_FFI_H_
